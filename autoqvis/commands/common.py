"""Arguments and steps shared by the commands."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from autoqvis.config import Config, load_config

if TYPE_CHECKING:
    import torch


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


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    return load_config(args.config, args.overrides, base=base)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default: ``inference.device``, itself ``auto`` by default)."""
    parser.add_argument(
        "--device",
        default=None,
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N; auto (the default, from inference.device) takes the GPU when CUDA is "
        "usable and the CPU otherwise; under torchrun each process uses cuda:LOCAL_RANK",
    )


def device_from_args(
    args: argparse.Namespace, cfg: Config, amp: tuple[str, ...] = ()
) -> tuple[torch.device, Config]:
    """The device to compute on (``--device``, else ``inference.device``) and ``cfg`` with
    ``inference.device`` set to it, so that the ``config.yaml`` a command writes records what ran.

    ``amp`` names the precision settings this command uses (``"training"``, ``"inference"``): each is checked
    against the device now, so that a setting the device cannot run fails before any work starts."""
    from autoqvis.device import DeviceError, autocast_dtype, resolve_device  # torch: only when a command runs

    given = getattr(args, "device", None)
    device = resolve_device(
        given if given is not None else cfg.inference.device,
        "--device" if given is not None else "inference.device",
    )
    for section in amp:
        try:
            autocast_dtype(getattr(cfg, section).amp, device)
        except DeviceError as err:
            raise DeviceError(f"{section}.{err}") from None
    return device, dataclasses.replace(cfg, inference=dataclasses.replace(cfg.inference, device=str(device)))
