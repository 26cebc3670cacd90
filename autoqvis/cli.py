"""Command line: ``autoqvis <command> ...``. Each command lives in ``autoqvis/commands/<name>.py`` and is
a thin layer: parse arguments, load the configuration, call one library function.

Every command that uses configuration takes ``--config FILE`` (repeatable YAML deltas) and
``--set section.key=value`` (repeatable).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from pathlib import Path

from autoqvis import __version__
from autoqvis.config import set_command_line
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


class Parser(argparse.ArgumentParser):
    """An argument parser that takes a flag only as written: no abbreviations (``--win 8`` is not taken for
    ``--window 8``, nor ``--pred-m`` for ``--pred-masks``). Sub-command parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    """Run one command; returns the exit code: 0 done, 2 bad input or a problem of the environment (one line
    on stderr saying what to do), 1 an internal error (a bug), 130 interrupted (Ctrl-C), 143 terminated
    (SIGTERM; ends like Ctrl-C: one line, finished work kept). ``AUTOQVIS_DEBUG=1`` also prints the
    traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    missing = missing_working_folder()
    if missing:  # before torch is imported: it fails there with a cryptic oneMKL message
        print(f"autoqvis: error: {missing}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    problem = argument_problem(parser, args, argv)
    if problem:  # before anything runs: argparse took these, the command would read them otherwise
        print(f"autoqvis {args.command}: error: {problem}", file=sys.stderr)
        return 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    setup_logging(level)
    set_command_line(argv)
    prefix = f"autoqvis {args.command}: error:"
    _TERMINATING.clear()
    previous = _on_sigterm(_terminate)
    try:
        return int(args._run(args) or 0)
    except AutoqvisError as err:
        _debug_traceback()
        print(f"{prefix} {err}", file=sys.stderr)
        return 2
    except OSError as err:
        _debug_traceback()
        print(f"{prefix} {os_error_message(err)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"autoqvis {args.command}: terminated (SIGTERM); {KEPT}", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"autoqvis {args.command}: interrupted; {KEPT}", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: say so in one line; the traceback with AUTOQVIS_DEBUG=1
        _debug_traceback()
        if _TERMINATING.is_set() or worker_terminated(err):  # an error in the wake of our SIGTERM
            print(f"autoqvis {args.command}: terminated (SIGTERM); {KEPT}", file=sys.stderr)
            return 128 + signal.SIGTERM
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(
            f"autoqvis {args.command}: internal error: {type(err).__name__}: {first}. This is a bug in autoqvis "
            "(finished outputs are kept); rerun with AUTOQVIS_DEBUG=1 to see the traceback and report it",
            file=sys.stderr,
        )
        return 1
    finally:
        _on_sigterm(previous)
        set_command_line(None)


KEPT = "finished work is kept: rerun the same command to continue where it stopped"


def argument_problem(
    parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]
) -> str | None:
    """What is wrong with arguments argparse accepted but the command would take otherwise than written (one
    line), None when nothing is: an empty value (an empty path is the current folder; ``--set key=`` too), and
    a flag that takes one value given more than once (the last would silently win)."""
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if (flag and "=" in arg and not value.strip()) or (not flag and not arg.strip()):
            before = argv[i - 1] if i and argv[i - 1].startswith("-") else ""
            named = flag or before or "a positional argument"
            return (
                f"{named} was given an empty value ({arg!r}); an empty path or value is never meant (a path would be "
                "the current folder): pass the value, or leave the argument out"
            )
    for setting in getattr(args, "overrides", None) or []:
        key, equals, value = setting.partition("=")
        if equals and key.strip() and not value.strip():
            return (
                f"--set {setting} gives {key.strip()} an empty value; an empty path or value is never meant: pass the "
                f"value, or {key.strip()}=null to unset a path"
            )
    for sub in _parsers_of(parser, args):
        for action in sub._actions:
            if type(action) is not argparse._StoreAction or not action.option_strings:
                continue
            given = [
                a for a in argv if a in action.option_strings or a.partition("=")[0] in action.option_strings
            ]
            if len(given) > 1:
                return (
                    f"{action.option_strings[0]} was given {len(given)} times; it takes one value and only the last "
                    f"would count: pass it once"
                )
    return None


def _parsers_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[argparse.ArgumentParser]:
    """The parser of the command that ran and of its sub-command (``weights inspect``), if any."""
    chain, current = [], parser
    while True:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return chain
        name = getattr(args, subs[0].dest, None)
        if name not in subs[0].choices:
            return chain
        current = subs[0].choices[name]
        chain.append(current)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, ``docker stop``): raised where the command is, like Ctrl-C, so that
    it ends the same way: files being written are dropped (atomic writes), finished units and the last
    checkpoint are kept, locks are released."""


_TERMINATING = threading.Event()  # set by SIGTERM: what goes wrong while the command unwinds is part of it


def _terminate(signum, frame) -> None:
    _TERMINATING.set()
    raise Terminated()


def worker_terminated(err: BaseException) -> bool:
    """A data-loader worker killed by SIGTERM (``kill`` of the process group reaches the workers too, and
    PyTorch reports their end as an error of its own): the SIGTERM path, not a bug."""
    text = str(err)
    return "DataLoader worker" in text and ("signal: Terminated" in text or "exit code 143" in text)


def missing_working_folder() -> str | None:
    """The message for a working folder that was deleted (or cannot be entered) under a running shell; None
    when it is there. Relative paths would name nothing, and libraries fail on it with cryptic messages."""
    try:
        os.getcwd()
    except OSError as err:
        shell = os.environ.get("PWD", "")
        where = f" ({shell})" if shell else ""
        return (
            f"the working folder{where} no longer exists ({err.strerror}): it was deleted or moved while this "
            "shell was in it; cd into an existing folder (e.g. cd ~) and rerun"
        )
    return None


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (in the main thread only; elsewhere signals cannot be handled) and
    return the one it replaces."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def os_error_message(err: OSError) -> str:
    """One line for an operating-system error: what failed, on which path, and what to do."""
    path = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    what = err.strerror or str(err) or type(err).__name__
    hint = {
        errno.ENOSPC: "the disk is full; free some space and rerun: finished work is kept and resumed",
        errno.EDQUOT: "the disk quota is exceeded; free some space and rerun: finished work is kept and resumed",
        errno.EACCES: "permission denied; choose a folder you can write to (--out) or fix the permissions",
        errno.EPERM: "operation not permitted; choose a folder you can write to (--out) or fix the permissions",
        errno.EROFS: "the file system is read-only; choose a writable folder (--out)",
        errno.ENOTDIR: "a file stands where a folder is needed; pass a folder path, or move the file away",
        errno.EEXIST: "a file stands where a folder is needed; pass a folder path, or move the file away",
        errno.EISDIR: "a folder stands where a file is needed; pass a file path",
        errno.ENOENT: "it does not exist; check the path",
        errno.ENAMETOOLONG: "the path is too long; use a shorter one",
    }.get(err.errno or 0, "check the path and the disk, then rerun")
    if err.errno in (errno.EACCES, errno.EPERM) and _unreadable(err.filename):
        hint = "permission denied: it cannot be read; fix its permissions (chmod u+r) or pass a copy you can read"
    return f"{what}{': ' + path if path else ''} ({hint})"


def _unreadable(path) -> bool:
    """An existing file or folder this process cannot read (or a folder it cannot list), or a path behind a
    folder it cannot enter: the error was about an input, not about where outputs go."""
    if path is None:
        return False
    if os.path.lexists(path):
        return not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0))
    parent = next((p for p in Path(path).absolute().parents if os.path.lexists(p)), None)
    return parent is not None and not os.access(parent, os.X_OK)


def _debug_traceback() -> None:
    verbose = logging.getLogger("autoqvis").isEnabledFor(logging.DEBUG)
    if verbose or os.environ.get("AUTOQVIS_DEBUG", "") not in ("", "0"):
        traceback.print_exc(file=sys.stderr)


def setup_logging(level: int) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    logging.getLogger("autoqvis").setLevel(level)


if __name__ == "__main__":
    raise SystemExit(main())
