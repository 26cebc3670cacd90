"""Every path a command opens is checked for what it is before it is opened; one function lists a folder's files.

- :func:`check_input`: an input path is the kind expected (a regular file, a folder) and can be read; a FIFO,
  a device, a socket, a dangling symbolic link or an unreadable path is a one-line
  :class:`~autoqvis.errors.DataError`, never a read that blocks;
- :func:`check_output`: a file the program is about to write is not a symbolic link (which would send the
  write to the file it points to) and not a FIFO, device, socket or folder;
- :func:`list_files`: the files of an input folder as the readers see them. The reader of an input and its
  identity (:mod:`autoqvis.runs.fingerprint`) take their file list from here, so that they never see two
  different sets of files: hidden files and folders are left out for both; a subfolder that cannot be read
  is an error, and a symbolically linked subfolder is not followed and said so (a warning naming it).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from autoqvis.errors import DataError
from autoqvis.runs.access import PERMISSION_HINT, file_problem, kind_problem, special_kind

__all__ = ["check_input", "check_output", "list_files", "output_problem"]

log = logging.getLogger("autoqvis")


def check_input(path: str | Path, kind: str = "file", label: str = "") -> Path:
    """``path`` if it is a ``kind`` (``"file"``, ``"dir"`` or ``"any"``) that can be read; else a DataError
    naming ``label`` + path and what it is instead."""
    path = Path(path)
    problem = kind_problem(path, kind)
    if problem is None and kind == "file":
        problem = file_problem(path)
    elif problem is None and path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        problem = f"cannot be read: permission denied; {PERMISSION_HINT}"
    if problem is None:
        return path
    raise DataError(f"{label + ' ' if label else ''}{path} {problem}")


def output_problem(path: str | Path) -> str | None:
    """Why autoqvis must not write the file ``path`` (a phrase following the path), None when it may (missing,
    or a regular file). Links are not followed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot be checked: {err.strerror or err}"
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return (
            f"is a symbolic link (to {os.readlink(path)}); autoqvis would write through it into the file it "
            "points to: remove the link or pass another --out"
        )
    if stat.S_ISREG(mode):
        return None
    what = "a folder" if stat.S_ISDIR(mode) else special_kind(mode)
    return f"is {what} where autoqvis writes a file; remove it or pass another --out"


def check_output(path: str | Path, label: str = "") -> Path:
    """``path`` if autoqvis may write the file there (see :func:`output_problem`); else a DataError."""
    path = Path(path)
    problem = output_problem(path)
    if problem is None:
        return path
    raise DataError(f"{label + ' ' if label else ''}{path} {problem}")


def list_files(
    folder: str | Path, suffixes: Sequence[str] | None = None, recursive: bool = False
) -> list[str]:
    """The files of ``folder`` (with ``recursive`` its subfolders' too) as sorted POSIX names relative to it:
    hidden files and folders aside, and with ``suffixes`` only the files with one of them (any case).
    Entries that are not regular files (a FIFO named ``x.jpg``) are listed, so that their reader refuses
    them by name; a subfolder that cannot be read is a DataError; a symbolically linked subfolder is not
    followed and a warning names it."""
    folder = Path(folder)
    wanted = None if suffixes is None else {x.lower() for x in suffixes}
    names: list[str] = []
    pending = [Path()]
    while pending:
        inside = pending.pop()
        here = folder / inside
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except PermissionError:
            raise DataError(
                f"folder {here} cannot be read: permission denied; {PERMISSION_HINT}, or move it out of {folder}"
            ) from None
        except OSError as err:
            raise DataError(f"folder {here} cannot be read: {err.strerror or err}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(inside / entry.name)
                continue
            if entry.is_symlink() and entry.is_dir():
                if recursive:
                    log.warning(
                        "%s is a symbolic link to a folder: not followed (pass its target, or copy it in)",
                        here / entry.name,
                    )
                continue
            if wanted is None or Path(entry.name).suffix.lower() in wanted:
                names.append((inside / entry.name).as_posix())
    return sorted(names)
