"""Why an input path cannot be read, in words: not found, a folder where a file is expected, permission denied.

Readers call :func:`require_file` before handing a path to a library whose own error would mislead (PIL calls
an unreadable image "corrupt or truncated", safetensors calls it "No such file or directory").
"""

from __future__ import annotations

from pathlib import Path

from autoqvis.errors import AutoqvisError, DataError

__all__ = ["PERMISSION_HINT", "file_problem", "require_file"]

PERMISSION_HINT = "fix its permissions (chmod u+r) or pass a copy you can read"


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened for reading as a file (a phrase following the path), None if it can."""
    path = Path(path)
    try:
        with open(path, "rb"):
            return None
    except IsADirectoryError:
        return "is a folder; pass a file"
    except FileNotFoundError:
        return "not found"
    except PermissionError:
        return f"cannot be read: permission denied; {PERMISSION_HINT}"
    except OSError as err:
        return f"cannot be opened: {err.strerror or err}"


def require_file(
    path: str | Path, label: str = "", not_found: str = "", error: type[AutoqvisError] = DataError
) -> Path:
    """``path`` if it is a file that can be read; else ``error`` naming ``label`` + path and the problem
    (``not_found`` is appended to "not found": what to do)."""
    path = Path(path)
    problem = file_problem(path)
    if problem is None:
        return path
    prefix = f"{label} " if label else ""
    if problem == "not found":
        raise error(f"{prefix}{path} not found{not_found}")
    raise error(f"{prefix}{path} {problem}")
