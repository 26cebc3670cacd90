"""Arguments and steps shared by the commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from autoqvis.config import Config, ConfigError, load_config
from autoqvis.errors import DataError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("autoqvis")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config FILE`` (repeatable) and ``--set section.key=value`` (repeatable)."""
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help="YAML file of config differences"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set selection.quality_min=0.5",
    )


def add_no_resume(parser: argparse.ArgumentParser, what: str) -> None:
    """``--no-resume``: start over instead of continuing (or refusing) where outputs of an earlier run are."""
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help=f"start {what} over: remove its earlier outputs instead of continuing them (a rerun with the same "
        "settings continues; with other settings it stops and says what changed)",
    )


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    return load_config(args.config, args.overrides, base=base)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default: the config's ``device``, itself ``auto`` by default)."""
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N; auto (the default, from the config's device) takes the GPU when CUDA is "
        "usable and the CPU otherwise; under torchrun each process uses cuda:LOCAL_RANK",
    )


def device_from_args(
    args: argparse.Namespace, cfg: Config, amp: tuple[str, ...] = ()
) -> tuple[torch.device, Config]:
    """The device to compute on (``--device``, else the config's ``device``) and ``cfg`` with ``device`` set
    to it: chosen once, every stage the command runs reads it from ``cfg``, and the ``config.yaml`` the
    command writes records what ran.

    ``amp`` names the precision settings this command uses (``"training"``, ``"inference"``): each is checked
    against the device now, so that a setting the device cannot run fails before any work starts, and
    ``auto`` is replaced by the precision it gives on this device (logged, and recorded in ``config.yaml`` and
    the fingerprints: a run resumed on a machine that would choose another precision says so)."""
    from autoqvis.device import (  # torch: only when a command runs
        DeviceError,
        autocast_dtype,
        describe_amp,
        resolve_amp,
        resolve_device,
    )

    given = getattr(args, "device", None)
    device = resolve_device(
        given if given is not None else cfg.device,
        "--device" if given is not None else "device",
    )
    cfg = dataclasses.replace(cfg, device=str(device))
    for section in amp:
        values = getattr(cfg, section)
        try:
            autocast_dtype(values.amp, device)
        except DeviceError as err:
            raise DeviceError(f"{section}.{err}") from None
        log.info("%s precision on %s: %s", section, device, describe_amp(values.amp, device))
        values = dataclasses.replace(values, amp=resolve_amp(values.amp, device))
        cfg = dataclasses.replace(cfg, **{section: values})
    return device, cfg


def with_flags(cfg: Config, section: str, **values) -> Config:
    """``cfg`` with the command-line numbers that set ``section`` fields folded in (None: not given), so that
    the saved config shows what ran; a value out of range, or breaking a rule between fields, names the key."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return cfg
    try:
        return dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **given)})
    except ConfigError as err:
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in given.items())
        raise ConfigError(f"{flags}: {err}", key=err.key) from None


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi]``; the error names the value and the range (argparse
    adds the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            allowed = (
                f"in [{lo}, {hi}]"
                if lo is not None and hi is not None
                else f">= {lo}"
                if lo is not None
                else f"<= {hi}"
            )
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def output_folder(path: Path, flag: str = "--out") -> Path:
    """Check an output folder before anything is written: not a file, writable if it exists."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{flag} {path} is a file, not a folder; pass a folder (it is created if missing)")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise DataError(f"{flag} {path} is not writable (permission denied); pass a folder you can write to")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if not path.exists() and parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK)):
        raise DataError(f"{flag} {path} cannot be created: {parent} is not a writable folder")
    return path


def output_file(path: Path, flag: str = "--out", suffix: str | None = None) -> Path:
    """Check an output file before anything is written: not a folder, its folder writable."""
    from autoqvis.runs.paths import check_output

    if suffix is not None and path.suffix != suffix:
        raise DataError(f"{flag} must name a {suffix} file, got {path}")
    if path.is_dir():
        raise DataError(f"{flag} {path} is a folder; pass a file name ({suffix or 'a file'})")
    check_output(path, flag)  # not a link (the write would go where it points), not a FIFO or a device
    output_folder(path.parent, f"the folder of {flag}")
    return path


def model_weights(path: Path, flag: str = "--weights") -> Path:
    """A model folder or weights file as given; a self-training run folder (``best.json``, no ``model.json``)
    stands for the model its ``best.json`` names: a path relative to the run (what autoqvis writes) is taken
    inside this run folder, wherever it was copied or moved; an absolute one (older runs) is looked for inside
    this run first, by its last two parts (``round_2/model``), and as given only when the run does not hold it
    (an M0 given from elsewhere)."""
    from autoqvis.model.build import check_not_preset
    from autoqvis.runs.layout import MODEL_FILE, SelfTrainLayout

    check_not_preset(path)
    layout = SelfTrainLayout(path)
    best = layout.best
    if not path.is_dir() or (path / MODEL_FILE).exists() or not best.is_file():
        return path
    try:
        named = Path(json.loads(best.read_text())["path"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{flag} {path} is a self-training run but its best.json cannot be read ({err}); pass a model folder "
            f"such as {layout.model(0)}"
        ) from err
    candidates = [path / named.parent.name / named.name, named] if named.is_absolute() else [path / named]
    for candidate in candidates:
        if (candidate / MODEL_FILE).is_file() or candidate.is_file():
            log.info("%s: the model best.json names, %s", flag, candidate)
            return candidate
    raise DataError(
        f"{flag} {path}: best.json names {named}, which holds no model; pass a model folder of the run "
        f"such as {layout.model(0)}"
    )
