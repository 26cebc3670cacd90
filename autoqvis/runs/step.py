"""One resumable step: the ceremony every stage used to repeat, in one place.

    with step(unit, fingerprint, resume, recheck=lambda: fingerprint_of(inputs)) as s:
        if not s.done:
            ...  # make the unit's outputs (s.resumed: earlier parts made with these settings may be reused)

What it guarantees:

- **settings and inputs**: the unit is opened with :func:`~autoqvis.runs.fingerprint.open_unit` (a rerun with
  other settings or inputs stops naming what changed; ``resume=False`` starts it over);
- **done means intact**: a finished unit records a manifest of its outputs (each file's size and content
  digest) in its fingerprint file. ``s.done`` is True only when that manifest still matches what is on disk:
  a deleted or damaged output of a finished unit (a video's masks, a clip's frame) is said, and the unit is
  made again. A unit finished by an older autoqvis (no manifest) counts as done when ``finished()`` says so;
- **inputs read as they were**: with ``recheck`` (a function computing the fingerprint again) the inputs'
  identity is taken again when the unit ends; when it changed while the unit ran (a frame replaced during
  ``predict``), the unit is not recorded as done: its outputs are removed and a
  :class:`~autoqvis.errors.DataError` says which input changed, so that a rerun makes it from the input as it
  is then.

``write=False``: the other processes of a distributed run (rank 0 records).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoqvis.errors import DataError
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.fingerprint import Unit, as_stored, describe_changes, file_digest, open_unit, remove_paths

__all__ = [
    "Step",
    "check_unchanged",
    "folder_record",
    "is_done",
    "manifest",
    "manifest_changes",
    "open_step",
    "record_changes",
    "record_done",
    "step",
]

log = logging.getLogger("autoqvis")


@dataclass
class Step:
    """An opened unit: ``resumed`` (same settings as what is there), ``done`` (finished and intact: skip it).
    :meth:`finish` records it as done (the context manager :func:`step` calls it)."""

    unit: Unit
    fingerprint: dict[str, Any]
    resumed: bool
    done: bool
    recheck: Callable[[], dict[str, Any]] | None = None
    write: bool = True

    def finish(self) -> None:
        """The unit's outputs are complete: check its inputs again (``recheck``) and record it as done with
        the manifest of its outputs (nothing in a process that does not write)."""
        if not self.write:
            return
        if self.recheck is not None:
            check_unchanged(self.unit, self.fingerprint, self.recheck())
        record_done(self.unit)
        self.done = True


def open_step(
    unit: Unit,
    fingerprint: dict[str, Any],
    resume: bool = True,
    *,
    recheck: Callable[[], dict[str, Any]] | None = None,
    finished: Callable[[], bool] | None = None,
    write: bool = True,
) -> Step:
    """Open ``unit`` (:func:`~autoqvis.runs.fingerprint.open_unit`) and tell whether it is done and intact;
    outputs recorded by a finished unit that were deleted or changed since are said and removed, so that the
    unit makes them again. Call :meth:`Step.finish` when the outputs are complete (or use :func:`step`)."""
    resumed = open_unit(unit, fingerprint, resume, write=write)
    done = resumed and is_done(unit, finished, remove=write)
    return Step(unit, fingerprint, resumed, done, recheck, write)


@contextmanager
def step(
    unit: Unit,
    fingerprint: dict[str, Any],
    resume: bool = True,
    *,
    recheck: Callable[[], dict[str, Any]] | None = None,
    finished: Callable[[], bool] | None = None,
    write: bool = True,
) -> Iterator[Step]:
    """:func:`open_step`, then :meth:`Step.finish` when the block ends without an error. See the module
    docstring."""
    opened = open_step(unit, fingerprint, resume, recheck=recheck, finished=finished, write=write)
    yield opened
    if not opened.done:
        opened.finish()


def check_unchanged(unit: Unit, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Raise DataError (after removing ``unit``'s outputs and fingerprint) when ``after`` differs from
    ``before``: an input changed while the unit was made from it."""
    old, new = as_stored(before), as_stored(after)
    if old == new:
        return
    remove_paths([unit.fingerprint_file, *(p for p in unit.outputs if p.exists() or p.is_symlink())])
    raise DataError(
        f"an input of {unit.what} changed while it was being made ({describe_changes(old, new)}); its outputs "
        "mixed old and new content, so they were removed and it is not marked done: rerun to make it from the "
        "input as it is now (and leave the inputs alone while a command reads them)"
    )


def manifest(unit: Unit) -> dict[str, list]:
    """Every file of the unit's outputs, relative to the fingerprint file's folder: ``[size, digest]``."""
    base = unit.fingerprint_file.parent
    files: dict[str, list] = {}
    for output in unit.outputs:
        paths = [output] if output.is_file() else sorted(output.rglob("*")) if output.is_dir() else []
        for path in paths:
            if path.is_file() and not path.is_symlink():
                files[_relative(path, base)] = [path.stat().st_size, file_digest(path)]
    return files


def record_done(unit: Unit) -> None:
    """Record ``unit`` as finished, with the manifest of its outputs, in its fingerprint file."""
    data = _load(unit.fingerprint_file)
    if data is None:
        return  # no fingerprint (a unit opened without writing): nothing to record against
    data["done"] = manifest(unit)
    atomic_write_json(unit.fingerprint_file, data, indent=1)


def manifest_changes(unit: Unit) -> list[Path] | None:
    """The recorded outputs of a finished unit that are missing or differ from the record (size, digest);
    None when no manifest is recorded (not finished, or finished by an older autoqvis)."""
    data = _load(unit.fingerprint_file)
    recorded = None if data is None else data.get("done")
    if not isinstance(recorded, dict):
        return None
    base = unit.fingerprint_file.parent
    changed = []
    for name, entry in recorded.items():
        path = base / name
        try:
            size, digest = entry
            same = path.is_file() and path.stat().st_size == size and file_digest(path) == digest
        except (TypeError, ValueError, OSError):
            same = False
        if not same:
            changed.append(path)
    return changed


def is_done(unit: Unit, finished: Callable[[], bool] | None = None, remove: bool = False) -> bool:
    """Whether ``unit`` was finished and its outputs are as it left them (see the module docstring). With
    ``remove`` the outputs that were deleted or changed since are said (a warning naming them) and removed."""
    changed = manifest_changes(unit)
    if changed is None:  # interrupted, or finished by an older autoqvis without a manifest
        return finished is not None and finished()
    if not changed:
        return True
    if remove:
        shown = ", ".join(str(p) for p in changed[:3]) + (
            f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        )
        log.warning("%s: %s deleted or changed since it was made; making it again", unit.what, shown)
        remove_paths([p for p in changed if p.exists() or p.is_symlink()])
    return False


def folder_record(folder: Path, skip: tuple[str, ...] = (".done",)) -> dict[str, list]:
    """The files directly in ``folder`` (``skip`` aside): name -> ``[size, digest]``; a finished part's record
    (a clip, a cached video), kept in its marker."""
    return {
        p.name: [p.stat().st_size, file_digest(p)]
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.is_symlink() and p.name not in skip
    }


def record_changes(folder: Path, recorded: dict, skip: tuple[str, ...] = (".done",)) -> list[str]:
    """The names whose size or content differs from ``recorded`` (missing, added or changed files)."""
    now = folder_record(folder, skip) if folder.is_dir() else {}
    return [name for name in sorted(set(recorded) | set(now)) if recorded.get(name) != now.get(name)]


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "fingerprint" in data else None


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` (``../results/a.json``): a copied or moved run folder keeps its record."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(base))).as_posix()
