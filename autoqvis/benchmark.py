"""What the benchmark scripts in ``bench/`` share: one results format and one way of printing it.

Every script writes ``<out>/<name>.json`` through :func:`write_results`::

    {"benchmark": name, "command": "python bench/... --args", "commit": "8bcd55f" | null,
     "hardware": "cpu: ... | torch 2.13.0+cpu | 2 threads", "time": "2026-12-08T01:20:00Z",
     "figures": {...}}

and prints the same record with :func:`print_results` (``python -m autoqvis.benchmark FILE...`` prints files
written earlier). ``figures`` is a JSON object whose shape is the script's own (documented in its docstring).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoqvis.device import cpu_capabilities
from autoqvis.runs.atomic import atomic_write_json

__all__ = [
    "DEFAULT_OUT",
    "bench_parser",
    "commit",
    "flat_items",
    "hardware_line",
    "paired_difference",
    "print_results",
    "standard_error",
    "write_results",
]

DEFAULT_OUT = Path("runs/bench")  # where a speed benchmark writes its record unless --out says otherwise


def bench_parser(doc: str | None, out_default: Path | None = DEFAULT_OUT) -> argparse.ArgumentParser:
    """A script's argument parser: its docstring as the help text and ``--out`` (the folder its record goes
    to; ``out_default=None`` leaves ``--out`` to the script, for the studies whose ``--out`` is a run folder)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if out_default is not None:
        parser.add_argument(
            "--out",
            type=Path,
            default=out_default,
            help=f"folder of the results file (default {out_default})",
        )
    return parser


def standard_error(values) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)); nan for fewer than two values."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def paired_difference(a, b) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` paired by position (by seed)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), standard_error(d)


def hardware_line() -> str:
    """The machine a figure was measured on: device, CPU capabilities, cores, threads, torch build."""
    device = f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return f"{device} | {cpu_capabilities()}"


def commit() -> str | None:
    """The repository's commit (with ``+dirty`` when the work tree differs), or None outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_results(out: str | Path, name: str, figures: dict[str, Any], argv: list[str] | None = None) -> Path:
    """Write one benchmark's record to ``out/<name>.json`` (atomically) and print it; returns the path."""
    argv = sys.argv if argv is None else argv
    record = {
        "benchmark": name,
        "command": " ".join(["python", *argv]),
        "commit": commit(),
        "hardware": hardware_line(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": figures,
    }
    path = Path(out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
    print_results(record)
    return path


def print_results(record: dict[str, Any]) -> None:
    """Print a record: its header lines, then the figures, one ``key: value`` a line (nested keys dotted)."""
    print(f"# {record['benchmark']}: {record['command']}")
    print(f"# commit {record.get('commit') or 'unknown'} | {record['hardware']} | {record.get('time', '')}")
    for key, value in flat_items(record["figures"]):
        print(f"{key}: {_format(value)}")


def flat_items(value: Any, prefix: str = ""):
    """``(dotted key, value)`` of every leaf of nested dicts (``{"a": {"b": 1}}`` -> ``("a.b", 1)``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flat_items(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    return json.dumps(value) if not isinstance(value, str) else value


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m autoqvis.benchmark RESULTS.json [...]", file=sys.stderr)
        return 2
    for p in paths:
        print_results(json.loads(Path(p).read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
