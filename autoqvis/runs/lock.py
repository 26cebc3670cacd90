"""One writer per output: a lock file beside the outputs, held with ``flock`` while a command writes them.

    with output_lock(out / LOCK_NAME, f"--out {out}", "autoqvis train"):
        ...  # a second autoqvis process writing the same outputs stops with OutputInUseError

The lock file holds who writes (pid, host, command, start time), for the message a second writer gets. The
operating system releases an ``flock`` when its process ends, however it ends, so a lock file left by a
process that was killed (SIGKILL, a power cut) is taken over by the next run, with a note naming the
process that left it. The file is removed when the command ends. Where ``fcntl`` is missing (Windows) no
lock is taken.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from autoqvis.errors import OutputInUseError

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "drop_inherited_locks", "output_lock", "read_lock"]

log = logging.getLogger("autoqvis")

LOCK_NAME = ".autoqvis.lock"  # in an output folder; a file output gets ".<name>.lock" beside it

_HELD: dict[int, int] = {}  # descriptor of each lock this process holds -> the pid that took it


@contextmanager
def output_lock(path: str | Path, what: str, command: str) -> Iterator[Path]:
    """Hold the lock file ``path`` for ``what`` (e.g. ``"--out runs/a"``, for messages) while the block runs;
    :class:`~autoqvis.errors.OutputInUseError` when another live process holds it. ``command`` names the
    writer in the lock file (e.g. ``"autoqvis train"``)."""
    path = Path(path)
    if fcntl is None:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path = _within_name_limit(path)
    fd = _acquire(path, what, command)
    _HELD[fd] = os.getpid()
    try:
        yield path
    finally:
        _HELD.pop(fd, None)
        _release(path, fd)


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
    """The holder a lock file names (``{}`` when it is empty or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _acquire(path: Path, what: str, command: str) -> int:
    for _ in range(10):  # the holder may remove the file between our open and our flock: open it again
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
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


def _release(path: Path, fd: int) -> None:
    try:
        if _same_file(fd, path):
            path.unlink()  # still holding the flock: nobody else can have taken it
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
