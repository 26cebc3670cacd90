"""Run the main job on a generated example and write a report.

Until the model and self-training stages are in place this is the evaluation demo: generated videos with
known tracks, three simulated predictors, YouTube-VIS AP/AR, DAVIS J&F and the quality analysis, written to
``--out`` (``metrics.json``, ``report.html``, ``config.yaml``, the example dataset).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autoqvis.commands.common import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller example (under a minute)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the generated example")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.demo.evaluation import run_evaluation_demo

    start = time.perf_counter()
    run_evaluation_demo(args.out, quick=args.quick, seed=args.seed, cfg=config_from_args(args))
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open {args.out / 'report.html'}")
    return 0
