"""Why an input path cannot be read, in words: not found, a folder where a file is expected, a FIFO, a device,
a socket, a dangling symbolic link, permission denied.

Readers call :func:`require_file` before handing a path to a library whose own error would mislead (PIL calls
an unreadable image "corrupt or truncated", safetensors calls it "No such file or directory") or that would
block (opening a FIFO waits for a writer forever). What a path is gets checked with ``stat`` first: nothing
here opens a FIFO, a device or a socket.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from autoqvis.errors import AutoqvisError, DataError

__all__ = ["PERMISSION_HINT", "file_problem", "kind_problem", "require_file"]

PERMISSION_HINT = "fix its permissions (chmod u+r) or pass a copy you can read"


def kind_problem(path: str | Path, kind: str = "file") -> str | None:
    """Why ``path`` is not a ``kind`` (``"file"``: a regular file; ``"dir"``: a folder; ``"any"``: either)
    judged by ``stat`` alone (nothing is opened): a phrase following the path, or None."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist; fix or remove the link"
        return "not found"
    except PermissionError:
        return f"cannot be reached: permission denied; {PERMISSION_HINT}"
    except OSError as err:
        return f"cannot be opened: {err.strerror or err}"
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return None if kind in ("dir", "any") else "is a folder; pass a file"
    if stat.S_ISREG(mode):
        return None if kind in ("file", "any") else "is a file, not a folder; pass a folder"
    return (
        f"is {special_kind(mode)}, not a {'folder' if kind == 'dir' else 'file'}; "
        "autoqvis reads regular files only: pass one"
    )


def special_kind(mode: int) -> str:
    """What a file of ``mode`` (``st_mode``) that is neither a regular file nor a folder is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened for reading as a file (a phrase following the path), None if it can."""
    path = Path(path)
    problem = kind_problem(path, "file")
    if problem is not None:
        return problem
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
