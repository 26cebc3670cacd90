"""Command line: ``autoqvis <command> ...``. Each command lives in ``autoqvis/commands/<name>.py`` and is
a thin layer: parse arguments, load the configuration, call one library function.

Every command that uses configuration takes ``--config FILE`` (repeatable YAML deltas) and
``--set section.key=value`` (repeatable).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from autoqvis import __version__
from autoqvis.errors import AutoqvisError

# (command name, module under autoqvis.commands, one-line help), in the order `--help` lists them
COMMANDS: list[tuple[str, str, str]] = [
    ("config", "config", "print the resolved configuration"),
    ("demo", "demo", "the whole method on a generated world (or your videos), with a report"),
    ("discover", "discover", "MaskCut pseudo-masks for a folder of images or videos"),
    ("synthesize", "synthesize", "ImageCut2Video clips from images + pseudo-masks, with previews"),
    ("weights", "weights", "import offline DINOv2 weights; inspect a checkpoint"),
    ("train", "train", "train the VIS model (synthetic clips and/or video datasets), resumable, DDP"),
    ("selftrain", "selftrain", "quality-guided self-training on your own unlabeled videos"),
    ("predict", "predict", "segment and track every object in videos"),
    ("evaluate", "evaluate", "YouTube-VIS AP/AR or DAVIS J&F of predictions"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoqvis",
        description="Unsupervised video instance segmentation with quality-guided self-training.",
    )
    parser.add_argument("--version", action="version", version=f"autoqvis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(f"autoqvis.commands.{module_name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__)
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    setup_logging(level)
    try:
        return int(args._run(args) or 0)
    except AutoqvisError as err:
        logging.getLogger("autoqvis").debug("error details", exc_info=True)
        print(f"autoqvis {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoqvis {args.command}: interrupted", file=sys.stderr)
        return 130


def setup_logging(level: int) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    logging.getLogger("autoqvis").setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
