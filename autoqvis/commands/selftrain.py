"""Quality-guided self-training (AutoQ-VIS) on your own unlabeled videos; no annotation needed anywhere.

    autoqvis discover --videos DIR --every 10 --out RUN/pseudo_masks.json --config offline_dinov2s
    autoqvis selftrain --videos DIR --synthetic-masks RUN/pseudo_masks.json --out RUN [--init videocutler.pth]
    autoqvis selftrain --videos DIR --synthetic-images PHOTOS --out RUN --config offline_dinov2s

DIR: video files or frame folders. Synthetic clips for the initial stage and for mixing: ImageCut2Video clips
from ``--synthetic-masks`` (MaskCut pseudo-masks of your frames or images) and/or ``--world N`` (procedural
demo-world clips). ``--val GT.json --val-frames DIR`` scores every model. ``--init`` starts the initial stage from a checkpoint (VideoCutLER or AutoQ-VIS);
``--skip-initial`` uses ``--init`` as M0 directly. With ``--val`` every model is scored (YouTube-VIS AP/AR,
DAVIS-2017 unsupervised J&F, quality-vs-true-IoU correlation) and the best by ``selftrain.select_metric`` is the
selected model (``RUN/best.json``; without ``--val``: the last round). Each round writes ``RUN/round_k/``
(predictions, pseudo-labels, selection counts, model); ``RUN/report.html`` shows it all. Rerunning the same
command continues where it stopped; a rerun with other settings or inputs continues the stages they do not
change and stops at the first one they do, naming what changed (``--no-resume`` starts every stage over).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_no_resume,
    config_from_args,
    device_from_args,
    integer,
    output_folder,
)
from autoqvis.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=Path, required=True, help="unlabeled videos: files or frame folders")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--synthetic-masks",
        "--pseudo-masks",
        type=Path,
        help="pseudo-mask JSON (autoqvis discover) for ImageCut2Video",
    )
    parser.add_argument(
        "--synthetic-images",
        type=Path,
        help="images for ImageCut2Video: the images root of --synthetic-masks, or alone: MaskCut runs on them "
        "first (RUN/discovery/pseudo_masks.json, resumable; ViT weights from discovery.weights or the cache)",
    )
    parser.add_argument(
        "--world", type=integer(0), default=0, metavar="N", help="N procedural synthetic clips"
    )
    parser.add_argument("--init", type=Path, help="initial weights (model folder or official checkpoint)")
    parser.add_argument("--skip-initial", action="store_true", help="use --init as M0 (no initial stage)")
    parser.add_argument("--val", type=Path, help="YouTube-VIS ground truth to score every model")
    parser.add_argument("--val-frames", type=Path, help="frames root of --val")
    add_device_argument(parser)
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable videos and report them")
    add_no_resume(parser, "every stage of the run")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.config import saved_config
    from autoqvis.evaluate.models import SUMMARY, ModelEvaluator, ModelScores
    from autoqvis.io.video import find_videos
    from autoqvis.io.world import world_source
    from autoqvis.report.run import write_run_report
    from autoqvis.runs.layout import SelfTrainLayout
    from autoqvis.runs.outputs import claim_output, refuse_inputs_inside
    from autoqvis.selftrain.run import self_train
    from autoqvis.train import dist
    from autoqvis.train.sources import synthetic_source

    cfg = config_from_args(args)
    if not args.world and not args.synthetic_masks and not args.synthetic_images:
        raise DataError(
            "self-training mixes in synthetic clips: pass --synthetic-images DIR (MaskCut runs on them), "
            "--synthetic-masks pseudo.json (from autoqvis discover on your images or video frames) and/or "
            "--world N (procedural clips)"
        )
    if args.skip_initial and not args.init:
        raise DataError("--skip-initial needs --init (the M0 model to start from)")
    if bool(args.val) != bool(args.val_frames):
        raise DataError("--val and --val-frames go together")
    output_folder(args.out)
    resume = not args.no_resume
    device, cfg = device_from_args(args, cfg, amp=("training", "inference"))
    reads = [
        ("--videos", args.videos),
        ("--synthetic-masks", args.synthetic_masks),
        ("--synthetic-images", args.synthetic_images),
        ("--init", args.init),
        ("--val", args.val),
        ("--val-frames", args.val_frames),
    ]
    if not resume:  # every stage starts over: nothing the run reads may lie inside it
        refuse_inputs_inside(args.out, reads)
    # every input is checked before anything is written (the long work starts with the frame cache)
    paths = find_videos(args.videos)
    synthetic = [world_source(args.world, cfg.synthesis.num_frames)] if args.world else []
    if args.synthetic_masks:
        synthetic.append(synthetic_source(args.synthetic_masks, args.synthetic_images, cfg))
        synthetic[-1].identity()  # every image the pseudo-masks name is there (the digests are reused)
    elif args.synthetic_images:
        _check_discovery_inputs(args.synthetic_images, cfg)
    evaluator = ModelEvaluator(args.val, args.val_frames, cfg) if args.val else None
    if args.init:
        _check_init(args.init, cfg, args.skip_initial)
    dist.init_from_env(device)
    with claim_output(args.out, "selftrain", reads):
        with saved_config(cfg, args.out, enabled=dist.is_main()):
            if not args.synthetic_masks and args.synthetic_images:
                masks = _discover_images(
                    args.synthetic_images, SelfTrainLayout(args.out).discovery, cfg, resume
                )
                synthetic.append(synthetic_source(masks, args.synthetic_images, cfg))
            done = self_train(
                cfg,
                args.out,
                paths,
                synthetic,
                evaluator=evaluator,
                init=args.init,
                m0=args.init if args.skip_initial else None,
                resume=resume,
                skip_bad=args.skip_bad,
                hint=" (pass --skip-bad to skip unreadable videos and use the others)",
            )
        if dist.is_main():
            models, chosen = done.models, done.selected_model
            print(
                ModelScores.table(
                    [(m.name, m.scores) for m in models],
                    SUMMARY,
                    {
                        "pseudo-labels": [m.pseudo_labels for m in models],
                        "selected": ["yes" if m is chosen else "" for m in models],
                    },
                )
            )
            print("per-round details: summary.json and round_k/selection.json in the run folder")
            print(f"selected model: {chosen.name} ({done.result.rule}): {chosen.path}")
            page = write_run_report(
                args.out / "report.html",
                models,
                cfg,
                done.run,
                f"autoqvis selftrain: {args.videos.name}",
                notes=[
                    f"{len(done.videos.videos)} unlabeled videos from {args.videos}",
                    "scored on " + (str(args.val) if args.val else "nothing (no --val given)"),
                ],
                selected=chosen.name,
            )
            print(f"report: {page}")
            if done.skipped:
                print(done.skipped.summary())
    dist.shutdown()
    return 0


def _check_discovery_inputs(images: Path, cfg) -> None:
    """MaskCut will run on ``images``: the folder holds images and the ViT weights are there."""
    from autoqvis.discover.run import image_items
    from autoqvis.model.vit import resolve_weights

    image_items(images)
    resolve_weights(cfg.discovery.arch, cfg.discovery.weights)


def _check_init(init: Path, cfg, skip_initial: bool) -> None:
    """``--init`` loads into the configured model (as M0 itself with ``--skip-initial``)."""
    from autoqvis.model import build_model, load_model, load_weights

    if skip_initial:
        load_model(init, model=cfg.model, device="cpu")
    else:
        load_weights(build_model(cfg.model, pretrained_backbone=False), init)


def _discover_images(images: Path, out: Path, cfg, resume: bool = True) -> Path:
    """MaskCut pseudo-masks of ``images`` on ``cfg.device`` (rank 0; the others wait); a finished run of the
    same settings and images is reused."""
    from autoqvis.discover.run import discover_images
    from autoqvis.train import dist

    path = out / "pseudo_masks.json"
    if dist.is_main():
        discover_images(images, path, cfg.discovery, cfg.device, resume=resume)
    dist.barrier()
    return path
