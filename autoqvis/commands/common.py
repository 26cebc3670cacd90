"""Arguments and steps shared by the commands."""

from __future__ import annotations

import argparse

from autoqvis.config import Config, load_config


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
