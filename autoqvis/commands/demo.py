"""The main job: the whole AutoQ-VIS method on a generated world, with a report.

Discovery (MaskCut with the offline DINOv2-S features) on still photos, ImageCut2Video, the initial stage with
the quality head, two self-training rounds on unlabeled videos and the confidence-only ablation, each model
scored on held-out videos (YouTube-VIS AP/AR, DAVIS J&F, quality correlation); writes ``OUT/report.html``.
Default about 12 minutes on 2 CPU cores, ``--quick`` about 1. A rerun continues where it stopped; with other
settings it stops at the first stage they change and names what changed (``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_no_resume,
    device_from_args,
    integer,
    output_folder,
)
from autoqvis.runs.outputs import claim_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smaller world and shorter training (about 1 min)"
    )
    parser.add_argument(
        "--seed", type=integer(0, 2**32 - 1), default=0, help="random seed of the generated world"
    )
    parser.add_argument(
        "--footage",
        choices=("real", "clean"),
        default=None,
        help="how the generated videos are captured: 'real' (exposure, white balance, motion blur and "
        "compression differ from the stills, as real footage differs from a photo collection; default) or "
        "'clean' (the videos look like the stills)",
    )
    parser.add_argument("--videos", type=Path, help="run on your own videos instead of the generated world")
    parser.add_argument(
        "--gt", type=Path, help="with --videos: YouTube-VIS ground truth of held-out videos to score"
    )
    parser.add_argument("--gt-frames", type=Path, help="frames root of --gt")
    parser.add_argument(
        "--every",
        type=integer(1),
        default=None,
        help="with --videos: discovery on every k-th frame (default 5)",
    )
    add_device_argument(parser)
    add_no_resume(parser, "every stage of the demo")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.demo.pipeline import NOISE_NOTE, DemoPlan, demo_config, run_demo
    from autoqvis.errors import DataError

    start = time.perf_counter()
    out = args.out if args.out != Path("runs/demo") or not args.quick else Path("runs/demo-quick")
    if bool(args.gt) != bool(args.gt_frames):
        raise DataError(
            "--gt and --gt-frames go together (the ground-truth JSON and the folder its file names are in)"
        )
    _check_flags_apply(args)
    output_folder(out)
    plan = DemoPlan.for_run(args.quick, args.footage, own_videos=args.videos is not None)
    device, cfg = device_from_args(
        args, demo_config(plan, args.overrides, args.config), amp=("training", "inference")
    )
    # the precision `auto` gave on this device, as every other command records it
    # and the device resolved once, which every stage reads from the configuration
    overrides = [
        *args.overrides,
        f"training.amp={cfg.training.amp}",
        f"inference.amp={cfg.inference.amp}",
        f"device={device}",
    ]
    reads = [("--videos", args.videos), ("--gt", args.gt), ("--gt-frames", args.gt_frames)]
    _check_inputs(args, out, reads)
    print(f"autoqvis demo ({'quick' if args.quick else 'default'}): {plan.describe()}")
    with claim_output(out, "demo", reads):
        result = run_demo(
            out,
            plan=plan,
            seed=args.seed,
            overrides=overrides,
            config_files=args.config,
            videos=args.videos,
            gt=args.gt,
            gt_frames=args.gt_frames,
            every=args.every or 5,
            on_stage=lambda title: print(f"== {title}", flush=True),
            resume=not args.no_resume,
        )
    print(result.table())
    print(NOISE_NOTE)
    if result.scored:
        print(result.quality_line() or "quality predictor: no correlation (too few scored masks)")
    else:
        print("no ground truth given: models are not scored (pass --gt and --gt-frames to score them)")
    print(f"report: {result.report}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open {out / 'report.html'}")
    return 0


def _check_flags_apply(args: argparse.Namespace) -> None:
    """Flags for your own videos without --videos, and the generated world's capture with them, would be
    ignored: refused, naming why."""
    from autoqvis.errors import DataError

    if args.videos is None:
        for flag, value in (("--gt", args.gt), ("--every", args.every)):
            if value is not None:
                raise DataError(
                    f"{flag} {value} applies with --videos (your own videos); the generated world brings its own "
                    f"test videos and frames: pass --videos DIR, or drop {flag}"
                )
    elif args.footage is not None:
        raise DataError(
            f"--footage {args.footage} sets how the generated world's videos are captured; with --videos (your own "
            "videos) no world is generated: drop --footage"
        )


def _check_inputs(args: argparse.Namespace, out: Path, reads) -> None:
    """The user's videos, ground truth and the offline ViT weights, before anything is written."""
    from autoqvis.demo.pipeline import ensure_dinov2_weights
    from autoqvis.io.video import find_videos
    from autoqvis.io.ytvis import load_ytvis
    from autoqvis.runs.outputs import refuse_inputs_inside

    if args.no_resume:
        refuse_inputs_inside(out, reads)
    if args.videos:
        find_videos(args.videos)
    if args.gt:
        load_ytvis(args.gt, frames_root=args.gt_frames)
    ensure_dinov2_weights()
