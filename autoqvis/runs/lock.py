"""One writer per output: a lock file beside the outputs, held with ``flock`` while a command writes them.

    with output_lock(out / LOCK_NAME, f"--out {out}", "autoqvis train"):
        ...  # a second autoqvis process writing the same outputs stops with OutputInUseError

The lock file holds who writes (pid, host, command, start time), for the message a second writer gets. The
operating system releases an ``flock`` when its process ends, however it ends, so a lock file left by a
process that was killed (SIGKILL, a power cut) is taken over by the next run, with a note naming the
process that left it. The file is removed when the command ends. Where ``fcntl`` is missing (Windows) no
lock is taken.

An output folder's lock is held on the folder itself (``flock`` on its descriptor) as well as on the lock
file: deleting a running command's lock file does not let a second writer in. (An output file's lock,
``.<name>.lock`` beside it, shares its folder with other outputs, so it is held on the lock file alone; a
holder that finds its lock file gone says so when it ends.) The lock file is opened without following links
and must be a regular file: a symbolic link there (to a user's file) or a FIFO is refused, never written
through or blocked on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from autoqvis.errors import DataError, OutputInUseError
from autoqvis.runs.paths import output_problem

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "drop_inherited_locks", "output_lock", "read_lock"]

log = logging.getLogger("autoqvis")

LOCK_NAME = ".autoqvis.lock"  # in an output folder; a file output gets ".<name>.lock" beside it

_HELD: dict[int, int] = {}  # descriptor of each lock this process holds -> the pid that took it


@contextmanager
def output_lock(path: str | Path, what: str, command: str, folder: bool = False) -> Iterator[Path]:
    """Hold the lock file ``path`` for ``what`` (e.g. ``"--out runs/a"``, for messages) while the block runs;
    :class:`~autoqvis.errors.OutputInUseError` when another live process holds it. ``command`` names the
    writer in the lock file (e.g. ``"autoqvis train"``). With ``folder`` the lock is also held on the folder
    of ``path`` (an output folder, which the command owns whole)."""
    path = Path(path)
    if fcntl is None:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path = _within_name_limit(path)
    _check_lock_file(path, what)
    folder_fd = _lock_folder(path, what) if folder else None
    if folder_fd is not None:
        _HELD[folder_fd] = os.getpid()
    try:
        fd = _acquire(path, what, command)
        _HELD[fd] = os.getpid()
        try:
            yield path
        finally:
            _HELD.pop(fd, None)
            _release(path, fd, "" if folder else what)  # a folder lock kept the folder ours
    finally:
        if folder_fd is not None:
            _HELD.pop(folder_fd, None)
            os.close(folder_fd)


def drop_inherited_locks() -> None:
    """In a forked child (a data-loader worker): close the lock descriptors inherited from the parent. An
    ``flock`` lasts while any process holds a descriptor of it, so a child left running after its parent was
    killed would otherwise keep the outputs locked; closing the copy leaves the parent's lock as it is."""
    for fd, pid in list(_HELD.items()):
        if pid != os.getpid():
            _HELD.pop(fd)
            with suppress(OSError):
                os.close(fd)


def _within_name_limit(path: Path) -> Path:
    """``path``, or where its name is longer than the file system allows (a lock beside an output file whose
    own name is legal but near the limit), a shorter name that stays unique to that output."""
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    name = path.name.encode()
    if len(name) <= limit:
        return path
    digest = hashlib.sha1(name).hexdigest()[:12]
    keep = name[: max(1, limit - len(digest) - 7)].decode(errors="ignore")
    return path.with_name(f"{keep}~{digest}.lock")


def read_lock(path: str | Path) -> dict:
    """The holder a lock file names (``{}`` when it is empty, unreadable, or not a regular file)."""
    if output_problem(path) is not None:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, encoding="utf-8") as f:
            data = json.loads(f.read() or "{}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_lock_file(path: Path, what: str) -> None:
    problem = output_problem(path)
    if problem is not None:
        raise DataError(
            f"{what}: the lock file {path} {problem.split(';')[0]}; autoqvis writes its lock there and will not "
            "write through it: remove it (it is not autoqvis's) or pass another --out"
        )


def _lock_folder(path: Path, what: str) -> int:
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputInUseError(_busy_message(path, what, read_lock(path))) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _acquire(path: Path, what: str, command: str) -> int:
    for _ in range(10):  # the holder may remove the file between our open and our flock: open it again
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as err:  # a link or a FIFO put there since the check
            _check_lock_file(path, what)
            raise DataError(f"{what}: cannot open the lock file {path}: {err.strerror or err}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DataError(
                    f"{what}: the lock file {path} is not a regular file; remove it or pass another --out"
                )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_lock(path)
            os.close(fd)
            raise OutputInUseError(_busy_message(path, what, holder)) from None
        except BaseException:
            os.close(fd)
            raise
        if not _same_file(fd, path):
            os.close(fd)
            continue
        previous = read_lock(path)
        if previous:
            log.warning(
                "%s: took over the lock %s left by %s, which ended without releasing it (killed or crashed); "
                "what it finished is kept and resumed",
                what,
                path,
                _describe(previous),
            )
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        os.fsync(fd)
        return fd
    raise OutputInUseError(f"{what}: could not take the lock {path} (other processes keep taking it); retry")


def _release(path: Path, fd: int, what: str = "") -> None:
    try:
        if _same_file(fd, path):
            path.unlink()  # still holding the flock: nobody else can have taken it
        elif what:
            log.warning(
                "%s: the lock file %s was removed (or replaced) while this command held it; another process may "
                "have written the same outputs meanwhile: check them, or rerun with --no-resume",
                what,
                path,
            )
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that has not written its name yet"
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ('{holder.get('command', 'autoqvis')}' "
        f"started {holder.get('started', '?')})"
    )


def _busy_message(path: Path, what: str, holder: dict) -> str:
    return (
        f"{what} is being written by another autoqvis process: {_describe(holder)}. Two writers would mix "
        f"their files: wait for it to finish (or stop it; what it finished is kept), or pass another --out. The "
        f"lock {path} is released when that process ends"
    )
