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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoqvis.errors import DataError
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.fingerprint import Unit, as_stored, describe_changes, file_digest, open_unit, remove_paths

__all__ = ["Step", "check_unchanged", "is_done", "manifest", "manifest_problem", "record_done", "step"]

log = logging.getLogger("autoqvis")


@dataclass
class Step:
    """An opened unit: ``resumed`` (same settings as what is there), ``done`` (finished and intact: skip it)."""

    unit: Unit
    resumed: bool
    done: bool


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
    """Open ``unit``, yield a :class:`Step`, and when the block ends without an error (and the unit was not
    already done) check the inputs again (``recheck``) and record the unit as done with its manifest. See the
    module docstring."""
    resumed = open_unit(unit, fingerprint, resume, write=write)
    done = resumed and is_done(unit, finished)
    current = Step(unit, resumed, done)
    yield current
    if current.done or not write:
        return
    if recheck is not None:
        check_unchanged(unit, fingerprint, recheck())
    record_done(unit)


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


def manifest_problem(unit: Unit) -> str | None:
    """What differs between the recorded manifest and the outputs on disk (a phrase), None when they match;
    ``"not finished"`` when no manifest is recorded."""
    data = _load(unit.fingerprint_file)
    recorded = None if data is None else data.get("done")
    if not isinstance(recorded, dict):
        return "not finished"
    base = unit.fingerprint_file.parent
    for name, entry in recorded.items():
        path = base / name
        if not path.is_file():
            return f"{path} is missing"
        try:
            size, digest = entry
        except (TypeError, ValueError):
            return f"the record of {path} is damaged"
        if path.stat().st_size != size or file_digest(path) != digest:
            return f"{path} changed since it was written"
    return None


def is_done(unit: Unit, finished: Callable[[], bool] | None = None) -> bool:
    """Whether ``unit`` was finished and its outputs are as it left them (see the module docstring); a changed
    output is said (a warning naming it)."""
    problem = manifest_problem(unit)
    if problem is None:
        return True
    if problem == "not finished":  # interrupted, or finished by an older autoqvis without a manifest
        return finished is not None and finished()
    log.warning("%s: %s; making it again", unit.what, problem)
    return False


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and "fingerprint" in data else None


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path.absolute())
