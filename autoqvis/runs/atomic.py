"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A reader (or a crash, or SIGKILL mid-write) sees either the old file or the complete new one, never a
half-written file. A write that fails (a full disk, a name too long) leaves the old file as it was and raises an
OSError naming the file being written, never the temporary one (``.aq<random><suffix>``: short, so that any
target name the file system allows can be written).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from autoqvis.errors import AutoqvisError

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Use it for writers that want a file name (``torch.save``, ``safetensors``, ``Image.save``)::

        with atomic_path(out / "model.safetensors") as tmp:
            save_file(tensors, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a short name: a target whose own name is legal never fails for the temporary's
        fd, tmp_name = tempfile.mkstemp(prefix=".aq", suffix=suffix or ".tmp", dir=path.parent)
    except OSError as err:
        if err.errno is None:
            raise
        raise _os_error(err.errno, path) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:  # the temporary file is ours: errors name the file being written
        if err.filename not in (None, str(tmp), tmp) or err.errno is None:
            raise
        raise _os_error(err.errno, path) from err
    except Exception as err:
        code = None if isinstance(err, AutoqvisError) else _os_error_code(err)  # (ours say what to do)
        if code is None:
            raise
        raise _os_error(code, path) from err  # a writer's own error type for a failed write (safetensors)
    finally:
        if tmp.exists():
            tmp.unlink()


def _os_error(code: int, path: Path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def _os_error_code(err: BaseException) -> int | None:
    """The errno of a write that failed inside a library that reports it in its own error type, None for
    other errors: safetensors' Rust code says "... (os error 28)"; ``torch.save`` into a Python file replaces
    the file's OSError by a RuntimeError of its own ("unexpected pos ...") raised while closing the archive,
    with the OSError as its context."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno is not None:
            return err.errno
        match = re.search(r"\(os error (\d+)\)", str(err))
        if match:
            return int(match.group(1))
        err = err.__cause__ or err.__context__
    return None


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data), mode="wb")


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    return _atomic_write(path, lambda f: json.dump(obj, f, indent=indent), mode="w")


def _atomic_write(path: str | Path, write: Callable[[IO], Any], mode: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
    return path


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on some platforms
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
