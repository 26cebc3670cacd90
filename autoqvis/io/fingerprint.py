"""Fingerprints of resumable outputs: what determines a unit of output, stored beside it.

Every resumable unit (a training run, one predicted video, a discovery log, synthesized clips, a
self-training round's predictions and selection, an evaluation cache, a frame cache) is described by a
JSON-able fingerprint: the config subset that determines it, the identity of its inputs and of the weights
used. Before a unit is (re)made, :func:`open_unit` compares it with the one stored beside the outputs:

- nothing there yet: the fingerprint is written, the unit starts fresh;
- the same fingerprint: the unit resumes (its finished parts are reused);
- another fingerprint (or outputs without one): :class:`~autoqvis.errors.StaleOutputError` naming the keys
  that changed (old -> new) and the two ways on: a new output folder, or ``--no-resume``;
- ``resume=False`` (``--no-resume``): the unit's own outputs are removed and it starts fresh.

    unit = Unit("the training run", run / "fingerprint.json", (run / "last.pt", run / "model"))
    if open_unit(unit, {"training": ..., "inputs": [...], "weights": file_identity(init)}, resume):
        ...  # same settings: continue from what is there
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoqvis.errors import StaleOutputError
from autoqvis.io.atomic import atomic_write_json

__all__ = [
    "Unit",
    "content_identity",
    "describe_changes",
    "hash_json",
    "input_identities",
    "open_unit",
    "stat_identity",
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
    wanted = _normalise(fingerprint)
    existing = [p for p in unit.outputs if p.exists()]
    started = (str(unit.fingerprint_file.absolute()), hash_json(wanted))
    if not resume and started in _STARTED_OVER:
        resume = True  # started over earlier in this process: what is there now was made with these settings
    if not resume:
        if write:
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


def _read(path: Path) -> tuple[dict | None, str]:
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["fingerprint"], ""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        return None, f"{path.name} is damaged ({type(err).__name__}: {err})"


def _write(unit: Unit, fingerprint: dict) -> None:
    atomic_write_json(unit.fingerprint_file, {"unit": unit.what, "fingerprint": fingerprint}, indent=1)


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


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def content_identity(path: str | Path) -> dict[str, Any]:
    """A file by its content: ``{"name", "size", "sha256"}`` (cached per path, size and mtime); a folder by
    its files' contents. Moving or copying the file keeps it."""
    path = Path(path)
    if path.is_dir():
        files = _files(path)
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(path).as_posix()}\0{_sha256(f)}\n".encode())
        return {"name": path.name, "files": len(files), "sha256": h.hexdigest()}
    return {"name": path.name, "size": path.stat().st_size, "sha256": _sha256(path)}


def stat_identity(path: str | Path) -> dict[str, Any]:
    """A file or folder by name, size and modification time (cheap, for videos and image folders: a changed
    or replaced file changes it)."""
    path = Path(path)
    if path.is_dir():
        files = _files(path)
        stats = [f.stat() for f in files]
        return {
            "name": path.name,
            "files": len(files),
            "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        }
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


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


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def input_identities(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """:func:`stat_identity` of each path, in order."""
    return [stat_identity(p) for p in paths]
