"""A command's claim on its output folder, taken once its arguments are checked and before it writes.

    with claim_output(args.out, "train", reads=[("--init", args.init), ("--masks", args.masks)]):
        ...  # write the outputs

What a claim does:

- **one command per folder**: a folder holding another command's outputs is refused (:func:`folder_owner`
  tells whose they are from the files there), since each command writes its own ``config.yaml`` (and
  ``train`` / ``synthesize`` their ``fingerprint.json``) and would overwrite the other's; so is a folder
  holding another kind of output or an input: a model folder, a dataset (a DAVIS root, video frames), a
  discovery JSON (a later ``--no-resume`` in that folder would delete them without a word);
- **no writing through links**: the lock file and an output file must not be symbolic links, FIFOs,
  devices or sockets (:func:`autoqvis.runs.paths.check_output`);
- **one writer at a time**: the folder's lock (:mod:`autoqvis.runs.lock`) is held while the command runs, so a
  second process writing into it stops with a message naming the first;
- **inputs are never removed**: the paths the command reads (``reads``: flag and path) are protected from
  ``--no-resume`` (:func:`autoqvis.runs.fingerprint.reading`);
- **nothing left on failure**: folders the claim created are removed again when the command fails while
  they are still empty.

In a distributed run (``torchrun``) the process of rank 0 takes the claim for all.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from autoqvis.errors import DataError, OutputInUseError
from autoqvis.runs.fingerprint import reading
from autoqvis.runs.layout import (
    BEST,
    MODEL_DIR,
    MODEL_FILE,
    STAGE0,
    SUMMARY,
    TRAIN_METRICS,
    VIDEOS,
    VIDEOS_FINGERPRINT,
)
from autoqvis.runs.lock import LOCK_NAME, output_lock
from autoqvis.runs.paths import check_output

__all__ = ["claim_output", "folder_owner", "refuse_inputs_inside"]

# the files that show which command made an output folder, checked in this order (a self-training round's
# folder also holds metrics.json: its training run is found first)
_SIGNATURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("demo", ("results.json", "data/fingerprint.json", "synthetic_previews", "ablation_confidence")),
    ("selftrain", (BEST, SUMMARY, VIDEOS_FINGERPRINT, VIDEOS, STAGE0)),
    ("predict", ("predictions.json", "fingerprints", "video_ids.json")),
    ("synthesize", ("synthetic.json",)),
    ("train", ("last.pt", TRAIN_METRICS, f"{MODEL_DIR}/{MODEL_FILE}")),
    ("evaluate", ("metrics.json",)),
)
# fingerprint.json's "unit" -> the command that wrote it
_UNITS = {"the training run": "train", "the synthesized clips": "synthesize", "the generated world": "demo"}
COMMANDS = ("train", "synthesize", "predict", "evaluate", "selftrain", "demo", "discover")
# what a folder holds that no command writes into its --out itself (an input, or another kind of output):
# (what it is, the file or folder that shows it)
_NOT_OUTPUTS: tuple[tuple[str, str], ...] = (
    ("a model folder", MODEL_FILE),
    ("a model folder", "model.safetensors"),
    ("a DAVIS dataset", "JPEGImages"),
    ("a DAVIS dataset", "Annotations"),
)
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def folder_owner(folder: Path) -> tuple[str, Path] | None:
    """The command whose outputs ``folder`` holds and a file that shows it, or None (empty, missing, or only
    files autoqvis did not write)."""
    if not folder.is_dir():
        return None
    for command, names in _SIGNATURES:
        for name in names:
            if (folder / name).exists():
                return command, folder / name
    fingerprint = folder / "fingerprint.json"
    if fingerprint.is_file():
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            unit = json.loads(fingerprint.read_text(encoding="utf-8")).get("unit")
            if unit in _UNITS:
                return _UNITS[unit], fingerprint
    config = folder / "config.yaml"
    if config.is_file():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in config.read_text(encoding="utf-8").splitlines()[:5]:
                words = line.split()
                if line.startswith("# command: autoqvis") and len(words) > 3 and words[3] in COMMANDS:
                    return words[3], config
    return other_content(folder)


def other_content(folder: Path) -> tuple[str, Path] | None:
    """What ``folder`` holds that is not a command's ``--out`` (a model folder, a dataset, video frames, a
    discovery JSON) and a path that shows it, or None."""
    for what, name in _NOT_OUTPUTS:
        if (folder / name).exists():
            return what, folder / name
    with contextlib.suppress(OSError):
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.name.endswith(".fingerprint.json") and _unit_of(entry) == "the discovery run":
                return "a discovery output (autoqvis discover's JSON)", entry
            if entry.suffix.lower() in _IMAGE_SUFFIXES and entry.is_file():
                return "video frames or images (an input)", entry
    return None


def _unit_of(fingerprint: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        return json.loads(fingerprint.read_text(encoding="utf-8")).get("unit")
    return None


def _check_owner(out: Path, command: str) -> None:
    owner = folder_owner(out)
    if owner is None or owner[0] == command:
        return
    other, evidence = owner
    if other not in COMMANDS:
        raise OutputInUseError(
            f"--out {out} holds {other} ({evidence} is there), not the outputs of 'autoqvis {command}'; writing "
            f"into it would mix them, and a later --no-resume there could delete them. Pass another --out, e.g. "
            f"{out / command}"
        )
    writes = "config.yaml and fingerprint.json" if command in ("train", "synthesize") else "config.yaml"
    raise OutputInUseError(
        f"--out {out} holds the outputs of 'autoqvis {other}' ({evidence} is there); 'autoqvis {command}' "
        f"writes its own {writes} into --out and would overwrite that command's. Pass another --out, e.g. "
        f"{out / command}"
    )


def refuse_inputs_inside(out: Path, reads: Sequence[tuple[str, Path | None]]) -> None:
    """For a command whose ``--no-resume`` starts its whole folder over (``selftrain``, ``demo``): refuse an
    input (flag, path) that lies inside it, before anything is removed."""
    root = Path(os.path.abspath(out))
    for flag, path in reads:
        if path is None:
            continue
        absolute = Path(os.path.abspath(path))
        if absolute == root or root in absolute.parents:
            raise DataError(
                f"{flag} {path} is inside --out {out}, which --no-resume starts over and could delete it: copy "
                f"it out of {out} and pass the copy, or pass another --out"
            )


@contextlib.contextmanager
def claim_output(
    out: Path, command: str, reads: Sequence[tuple[str, Path | None]] = (), file: bool = False
) -> Iterator[Path]:
    """Claim ``out`` (a folder; with ``file`` an output file, locked by ``.<name>.lock`` beside it) for
    ``command`` while the block runs; see the module docstring."""
    out = Path(out)
    folder = out.parent if file else out
    reads = [(flag, path) for flag, path in reads if path is not None]
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 holds the claim
        with reading(reads):
            yield out
        return
    if file:
        check_output(out, "--out")
    else:
        _check_owner(out, command)
    created = _first_missing(folder)
    lock = folder / (f".{out.name}.lock" if file else LOCK_NAME)
    try:
        with output_lock(lock, f"--out {out}", f"autoqvis {command}", folder=not file), reading(reads):
            yield out
    except BaseException:
        if created is not None:
            _remove_empty(folder, created)
        raise


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what a claim creates), or None."""
    missing = None
    for path in (folder, *folder.absolute().parents):
        if path.exists():
            break
        missing = path
    return missing


def _remove_empty(folder: Path, outermost: Path) -> None:
    path = folder.absolute()
    outermost = outermost.absolute()
    while True:
        try:
            path.rmdir()
        except OSError:  # not empty (or gone): something was written, keep it
            return
        if path == outermost:
            return
        path = path.parent
