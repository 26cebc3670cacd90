"""Print the resolved configuration: defaults + --config files + --set overrides, as YAML."""

from __future__ import annotations

import argparse

import yaml

from autoqvis.commands.common import add_config_arguments, config_from_args
from autoqvis.config import config_to_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0
