"""Fingerprints of resumable outputs: what determines a unit of output, stored beside it.

Every resumable unit (a training run, one predicted video, a discovery log, synthesized clips, a
self-training round's predictions and selection, an evaluation cache, a frame cache) is described by a
JSON-able fingerprint: the config subset that determines it, the identity of its inputs and of the weights
used. Before a unit is (re)made, :func:`open_unit` compares it with the one stored beside the outputs:

- nothing there yet: the fingerprint is written, the unit starts fresh;
- the same fingerprint: the unit resumes (its finished parts are reused);
- another fingerprint (or outputs without one): :class:`~autoqvis.errors.StaleOutputError` naming the keys
  that changed (old -> new) and the two ways on: a new output folder, or ``--no-resume``;
- ``resume=False`` (``--no-resume``): the unit's own outputs are removed and it starts fresh, unless they
  hold an input of the command (:func:`reading`): then :class:`~autoqvis.errors.DataError`, nothing removed.

Inputs are identified by what they are made of, not where they lie or when they were written
(:func:`tree_identity`: names relative to the input and content digests). A folder's files are the ones
:func:`autoqvis.runs.paths.list_files` lists, the list its reader reads.

Large files (above :data:`SAMPLE_ABOVE`, 64 MiB: long videos) are identified by their size and a sample of
their content, so that a video of several GB is not read whole on every rerun: one block at every keyframe
(for a video PyAV can demux) and evenly spaced blocks, together at least 1% of the file (and at least
:data:`SAMPLE_BLOCKS` blocks, the first and the last included). What remains possible: a change that keeps
the file's size and lies entirely between the sampled blocks (inside a GOP, past the start of its keyframe)
is not seen, and the rerun reuses outputs made from the old content. To identify every byte, set
``AUTOQVIS_FULL_DIGEST=1`` in the environment (each large input is then read whole, once per process).

    unit = Unit("the training run", run / "fingerprint.json", (run / "last.pt", run / "model"))
    if open_unit(unit, {"training": ..., "inputs": [...], "weights": file_identity(init)}, resume):
        ...  # same settings: continue from what is there
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoqvis.errors import DataError, StaleOutputError
from autoqvis.runs.access import PERMISSION_HINT, kind_problem
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.paths import list_files, output_problem

__all__ = [
    "Unit",
    "as_stored",
    "check_outputs",
    "check_start_over",
    "content_identity",
    "damaged_message",
    "describe_changes",
    "file_digest",
    "files_identity",
    "hash_json",
    "input_identities",
    "open_unit",
    "reading",
    "remove_paths",
    "sample_offsets",
    "stored_fingerprint",
    "tree_identity",
    "weights_identity",
]

log = logging.getLogger("autoqvis")

MAX_CHANGES = 6  # changed keys listed in a message

# units started over (--no-resume) in this process, with their fingerprint: a second opening with the same
# fingerprint resumes what this process made (e.g. a model scored by two self-training runs)
_STARTED_OVER: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Unit:
    """One resumable unit: a name for messages, where its fingerprint lives, and what it writes (removed when
    it starts over; files or folders)."""

    what: str  # e.g. "the training run", "the predictions of video clip_a"
    fingerprint_file: Path
    outputs: tuple[Path, ...]


def open_unit(unit: Unit, fingerprint: dict[str, Any], resume: bool = True, write: bool = True) -> bool:
    """True: the unit resumes (same fingerprint; what is there may be reused). False: it starts fresh (no
    earlier outputs, or they were removed because ``resume`` is False); the fingerprint is then stored.
    Raises :class:`StaleOutputError` when ``resume`` and earlier outputs were made with another fingerprint.

    ``write=False`` only checks (the other processes of a distributed run; rank 0 writes)."""
    check_outputs(unit)
    wanted = _normalise(fingerprint)
    existing = [p for p in unit.outputs if p.exists()]
    started = (str(unit.fingerprint_file.absolute()), hash_json(wanted))
    if not resume and started in _STARTED_OVER:
        resume = True  # started over earlier in this process: what is there now was made with these settings
    if not resume:
        if write:
            check_start_over(unit)
            _remove([unit.fingerprint_file, *existing])
            if existing:
                log.info(
                    "%s: starting over (--no-resume); removed %s", unit.what, ", ".join(map(str, existing))
                )
            _write(unit, wanted)
            _STARTED_OVER.add(started)
        return False
    stored, problem = _read(unit.fingerprint_file)
    if stored == wanted:
        return True
    if existing:
        raise StaleOutputError(_stale_message(unit, existing, stored, wanted, problem))
    if write:
        _write(unit, wanted)  # a fingerprint without any output: nothing was made with it
    return False


def check_outputs(unit: Unit) -> None:
    """Refuse (DataError) an output path of ``unit`` that is a symbolic link (a write would go where it points)
    or a FIFO, socket or device (a write would block or go nowhere); files and folders pass."""
    for path in (unit.fingerprint_file, *unit.outputs):
        if path.is_dir() and not path.is_symlink():
            continue
        problem = output_problem(path)
        if problem is not None:
            raise DataError(f"{path} ({unit.what}) {problem}")


# the inputs of the command this process runs, with the flag that gave each: starting a unit over never
# removes them
_READING: list[tuple[str, Path]] = []


@contextmanager
def reading(paths: Iterable[tuple[str, str | Path]]) -> Iterator[None]:
    """While the block runs, the inputs ``paths`` (``[("--init", path), ...]``) are protected: a unit started
    over (``--no-resume``) whose outputs hold one of them is refused (:func:`check_start_over`)."""
    added = [(flag, Path(os.path.abspath(p))) for flag, p in paths]
    _READING.extend(added)
    try:
        yield
    finally:
        for item in added:
            _READING.remove(item)


def check_start_over(unit: Unit) -> None:
    """Raise :class:`~autoqvis.errors.DataError` if starting ``unit`` over would remove an input of this
    command (an output that is, or holds, a path given to :func:`reading`) or another command's output folder
    (one holding a ``config.yaml`` that a command wrote into its ``--out``); removes nothing."""
    for output in unit.outputs:
        if not (output.exists() or output.is_symlink()):
            continue
        other = _command_folder(output)
        if other is not None:
            raise DataError(
                f"{other.parent} holds the outputs of another command ({other} is there), inside {output}, part of "
                f"{unit.what}, which --no-resume would remove; move them out of {output.parent} or pass another --out"
            )
        target = Path(os.path.abspath(output))
        for flag, path in _READING:
            if path == target or target in path.parents:
                where = "is" if path == target else "lies inside"
                raise DataError(
                    f"{flag} {path} {where} {output}, part of {unit.what}, which --no-resume would remove; copy "
                    "it elsewhere and pass the copy, or pass another --out"
                )


def _command_folder(output: Path) -> Path | None:
    """A ``config.yaml`` written by an autoqvis command at or below the output folder ``output``, or None."""
    if not output.is_dir() or output.is_symlink():
        return None
    for config in sorted(output.rglob("config.yaml")):
        try:
            with open(config, encoding="utf-8") as f:
                head = f.read(400)
        except (OSError, UnicodeDecodeError):
            continue
        if "# command: autoqvis" in head:
            return config
    return None


def stored_fingerprint(path: str | Path) -> dict | None:
    """The fingerprint stored in ``path`` (a unit's fingerprint file); None when missing or damaged."""
    return _read(Path(path))[0]


def as_stored(fingerprint: dict[str, Any]) -> dict:
    """``fingerprint`` as :func:`stored_fingerprint` reads it back (JSON types), to compare the two."""
    return _normalise(fingerprint)


def _read(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["fingerprint"], ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        return None, f"{path.name} is damaged ({type(err).__name__}: {err})"


def damaged_message(path: str | Path, what: str, outputs: str) -> str | None:
    """None when the fingerprint file ``path`` is missing or readable; else one line naming it as damaged and
    what to do (``outputs``: the files it describes, removed to redo ``what``)."""
    path = Path(path)
    if not path.is_file():
        return None
    stored, problem = _read(path)
    if stored is not None:
        return None
    return (
        f"the fingerprint file {path} is damaged ({problem.split('(', 1)[-1].rstrip(')')}), so the settings that "
        f"made {what} are unknown: delete it and {outputs} to redo {what}, or rerun with --no-resume"
    )


def _write(unit: Unit, fingerprint: dict) -> None:
    atomic_write_json(unit.fingerprint_file, {"unit": unit.what, "fingerprint": fingerprint}, indent=1)


def remove_paths(paths: Iterable[Path]) -> None:
    """Remove files and folders (a link itself, never what it points to)."""
    _remove(paths)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _stale_message(unit: Unit, existing: list[Path], stored: dict | None, wanted: dict, problem: str) -> str:
    ways = (
        "To keep what is there, rerun with the earlier settings and inputs; to keep both, pass a new --out; "
        "to redo it with the new ones, add --no-resume"
    )
    if stored is None and problem.endswith(")"):  # the file is there but cannot be read
        return (
            f"the fingerprint file {unit.fingerprint_file} of {unit.what} is damaged ({problem.split('(', 1)[1]}, "
            f"so the settings that made {existing[0]} are unknown: delete {unit.fingerprint_file.name} and "
            f"{existing[0]} to redo it, or add --no-resume to redo it"
        )
    if stored is None:
        return (
            f"{existing[0]} ({unit.what}) exists but {problem}, so the settings that made it are unknown "
            "(written by an older autoqvis, or interrupted while starting over). Pass a new --out to keep it, or "
            "add --no-resume to redo it"
        )
    changes = describe_changes(stored, wanted)
    return f"{existing[0]} ({unit.what}) was made with other settings or inputs: {changes}. {ways}."


def describe_changes(old: dict, new: dict) -> str:
    """``"training.lr 0.0001 -> 0.001; inputs[1].size 10 -> 12"``: the dotted keys that differ, old -> new."""
    a, b = _flatten(old), _flatten(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, _MISSING) != b.get(k, _MISSING)]
    parts = [f"{k} {_show(a.get(k, _MISSING))} -> {_show(b.get(k, _MISSING))}" for k in keys[:MAX_CHANGES]]
    if len(keys) > MAX_CHANGES:
        parts.append(f"and {len(keys) - MAX_CHANGES} more")
    return "; ".join(parts) or "(no difference)"


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list) and value and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, v in enumerate(value):
            out |= _flatten(v, f"{prefix}[{i}]")
        return out
    return {prefix: value}


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(none)"
    if isinstance(value, str) and len(value) >= 40 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _normalise(fingerprint: dict[str, Any]) -> dict:
    """The stored form: JSON types only (tuples become lists, keys strings)."""
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------------
# identities


def hash_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (for inputs held in memory: datasets, predictions)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


_DIGEST_CACHE: dict[tuple, str] = {}

# files above this size are identified by their size and a sample of their content (SAMPLE_BLOCKS blocks of
# SAMPLE_BYTES, evenly spaced, the first and the last included): a video of a few GB costs ~4 MB of reading
SAMPLE_ABOVE = 64 << 20
SAMPLE_BLOCKS = 16
SAMPLE_BYTES = 256 << 10


def content_identity(path: str | Path) -> dict[str, Any]:
    """A file by name and content: ``{"name", "size", "sha256"}``; a folder by name and its files' names and
    contents (:func:`tree_identity`). Moving or copying it keeps it."""
    path = Path(path)
    if path.is_dir():
        return {"name": path.name, **tree_identity(path)}
    return {"name": path.name, "size": path.stat().st_size, "sha256": _sha256(path)}


def tree_identity(path: str | Path, suffixes: Sequence[str] | None = None) -> dict[str, Any]:
    """What an input is made of, wherever it lies: a file by its size and content digest, a folder by its
    files' names relative to it, sizes and content digests (hidden files aside; with ``suffixes`` only the
    files with one of them, e.g. a frame folder's images). Neither the path, the folder's own name nor any
    modification time counts, so renaming, swapping or replacing a file changes it, and a copy elsewhere
    (new mtimes, another root) is the same input. Files above :data:`SAMPLE_ABOVE` bytes are read in part
    (:func:`file_digest`)."""
    path = Path(path)
    if not path.is_dir():
        return {"bytes": path.stat().st_size, "sha256": file_digest(path)}
    return files_identity(path, list_files(path, suffixes, recursive=True))


def files_identity(root: str | Path, names: Sequence[str]) -> dict[str, Any]:
    """The files ``names`` (relative to ``root``, e.g. a dataset's frames) by name, size and content digest,
    in the given order: ``{"files", "bytes", "sha256"}``."""
    root = Path(root)
    h = hashlib.sha256()
    total = 0
    for name in names:
        f = root / name
        problem = kind_problem(f, "file")  # a dangling link, a FIFO: said by name, never opened
        if problem is not None:
            raise (
                DataError(f"{f} {problem}")
                if problem != "not found"
                else FileNotFoundError(2, problem, str(f))
            )
        st = f.stat()
        total += st.st_size
        h.update(f"{name}\0{_digest(f, st)}\n".encode())
    return {"files": len(names), "bytes": total, "sha256": h.hexdigest()}


def input_identities(
    paths: Sequence[str | Path], names: Sequence[str] | None = None, suffixes: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Each input's ``{"name", **tree_identity}`` in order; ``names``: what the command calls each (e.g. the
    video names its outputs are filed under; default each path's name)."""
    names = [Path(p).name for p in paths] if names is None else names
    return [{"name": n, **tree_identity(p, suffixes)} for p, n in zip(paths, names, strict=True)]


def file_digest(path: str | Path) -> str:
    """sha256 of a file's content; above :data:`SAMPLE_ABOVE` bytes, of its size and
    :data:`SAMPLE_BLOCKS` evenly spaced blocks of :data:`SAMPLE_BYTES` (``"sampled:"`` + digest). Cached per
    path, size, change times and inode for the life of the process."""
    path = Path(path)
    return _digest(path, path.stat())


def _digest(path: Path, st: os.stat_result) -> str:
    key = ("digest", os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, _full())
    if key not in _DIGEST_CACHE:
        problem = kind_problem(path, "file")  # a FIFO would block the read: refuse it by name
        if problem is not None:
            raise DataError(f"{path} {problem}")
        try:
            sampled = st.st_size > SAMPLE_ABOVE and not _full()
            digest = _sampled(path, st.st_size) if sampled else _sha256_file(path)
        except PermissionError:  # an input read for its identity says what a reader would say
            raise DataError(f"{path} cannot be read: permission denied; {PERMISSION_HINT}") from None
        _DIGEST_CACHE[key] = digest
    return _DIGEST_CACHE[key]


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _full() -> bool:
    """``AUTOQVIS_FULL_DIGEST=1``: every file is read whole for its identity, whatever its size."""
    return os.environ.get("AUTOQVIS_FULL_DIGEST", "").strip().lower() in ("1", "true", "yes", "on")


def sample_offsets(size: int, keyframes: Sequence[int] = ()) -> tuple[list[int], int]:
    """Where a file of ``size`` bytes is sampled and the block length: one block at each keyframe offset and
    evenly spaced ones (the first and the last byte included), together at least 1% of the file and at least
    :data:`SAMPLE_BLOCKS` blocks of :data:`SAMPLE_BYTES`."""
    keys = sorted({k for k in keyframes if 0 <= k < size})
    even = max(SAMPLE_BLOCKS, -(-size // 100 // SAMPLE_BYTES))
    target = max(-(-size // 100), SAMPLE_BLOCKS * SAMPLE_BYTES)
    length = min(size, max(4096, -(-target // (len(keys) + even))))
    step = (size - length) / (even - 1)
    offsets = sorted({*keys, *(round(i * step) for i in range(even))})
    return offsets, length


def _keyframe_offsets(path: Path) -> list[int]:
    """The byte offsets of a video's keyframes (PyAV demuxing, no decoding); [] for a file PyAV cannot read."""
    try:
        import av

        with av.open(str(path)) as container:
            if not container.streams.video:
                return []
            stream = container.streams.video[0]
            return [
                int(p.pos)
                for p in container.demux(stream)
                if p.is_keyframe and p.pos is not None and p.pos >= 0
            ]
    except Exception:  # not a video, or one PyAV cannot demux: the evenly spaced blocks alone
        return []


def _sampled(path: Path, size: int) -> str:
    offsets, length = sample_offsets(size, _keyframe_offsets(path))
    h = hashlib.sha256(f"{size}\n{length}\n".encode())
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            h.update(f.read(length))
    return "sampled:" + h.hexdigest()


def weights_identity(weights: str | Path | None) -> dict[str, Any] | None:
    """Model weights by content: a folder written by autoqvis (``model.safetensors`` + ``model.json``), a
    weights file, or a preset name (random weights); None for none."""
    if weights is None:
        return None
    path = Path(weights)
    if path.is_dir():
        parts = [p for p in (path / "model.safetensors", path / "model.json") if p.is_file()]
        return {p.name: _sha256(p) for p in parts} or {"folder": path.name}
    if path.is_file():
        return {"sha256": _sha256(path)}
    return {"preset": str(weights)}


def _sha256(path: Path) -> str:
    """The full sha256 of a file whatever its size (weights), cached like :func:`file_digest`."""
    st = path.stat()
    key = ("sha256", os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _DIGEST_CACHE:
        problem = kind_problem(path, "file")
        if problem is not None:
            raise DataError(f"{path} {problem}")
        _DIGEST_CACHE[key] = _sha256_file(path)
    return _DIGEST_CACHE[key]
