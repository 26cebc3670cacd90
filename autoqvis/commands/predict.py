"""Segment and track every object in videos: YouTube-VIS results JSON, DAVIS palette PNGs, overlay videos.

    autoqvis predict INPUT --weights W --out DIR [--window 36 --overlap 4] [--device cuda]

INPUT: a video file, a frame folder, a folder of them, or a DAVIS root. W: a folder written by autoqvis
(model.safetensors + model.json), or an official VideoCutLER / AutoQ-VIS ``.pth`` (with ``--preset``).
``--window 0`` (default) runs each video as one clip like the reference; a window bounds memory for long
videos. A rerun skips videos finished with the same weights and settings, and stops on ones made with other
ones (``--no-resume`` predicts the given videos again). Predicting some videos into a folder that holds
others adds them: ``OUT/predictions.json`` lists every video of the folder predicted with these settings, and
a video keeps its ``video_id`` across calls (``OUT/video_ids.json``). ``--window/--overlap/--short-side/--top-k`` are written
into ``OUT/config.yaml`` as the ``inference`` values they set.

A model folder written by autoqvis predicts with its own inference settings (its ``inference.json``: those it was
trained and scored with) unless a ``--config``, ``--set`` or flag changes them; then the output says which differ.
An official checkpoint carries none: the ``inference`` defaults.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_no_resume,
    config_from_args,
    device_from_args,
    integer,
    model_weights,
    output_folder,
    with_flags,
)
from autoqvis.config import save_config
from autoqvis.errors import DataError
from autoqvis.runs.outputs import claim_output

log = logging.getLogger("autoqvis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file, frame folder, folder of them, or DAVIS root")
    parser.add_argument(
        "--weights",
        type=Path,
        required=True,
        help="model folder, official .pth/.safetensors, or a self-training run folder (the model its best.json "
        "names)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="architecture of a weights file (default: model.*); a model folder records its own, and a "
        "different --preset or model.* setting is refused",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--window", type=integer(0), help="frames per window, 0: whole video (inference.window)"
    )
    parser.add_argument(
        "--overlap",
        type=integer(0),
        help="frames shared by consecutive windows, < --window (inference.overlap)",
    )
    parser.add_argument("--short-side", type=integer(32), help="input short side (inference.short_side, 360)")
    parser.add_argument("--top-k", type=integer(1), help="tracks kept per window (inference.top_k, 10)")
    add_device_argument(parser)
    parser.add_argument("--no-overlay", action="store_true", help="skip the overlay videos")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable videos, report them at the end"
    )
    add_no_resume(parser, "every video's predictions")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.config import Config, ModelConfig
    from autoqvis.io.video import find_videos
    from autoqvis.model import load_model
    from autoqvis.model.build import read_inference
    from autoqvis.predict.predict import PredictionRun, check_track_score, differs_from_model
    from autoqvis.runs.fingerprint import weights_identity
    from autoqvis.train import dist

    args.weights = model_weights(args.weights)
    # a model folder's own inference settings (inference.json) are the base; a config file, --set or a flag wins
    own = read_inference(args.weights)
    cfg = with_flags(
        config_from_args(args, base=None if own is None else Config(inference=own)),
        "inference",
        window=args.window,
        overlap=args.overlap,
        short_side=args.short_side,
        top_k=args.top_k,
    )
    if args.overlap is not None and cfg.inference.window == 0:
        raise DataError(
            f"--overlap {args.overlap} is the frames shared by consecutive windows, but there are no windows "
            "(inference.window is 0: each video is one clip), so it would be ignored: pass --window N too, or drop "
            "--overlap"
        )
    output_folder(args.out)
    differs = differs_from_model(own, cfg.inference)  # before the device resolves amp=auto
    if own is not None and not differs:
        log.info("inference settings: the model's own (%s)", args.weights)
    device, cfg = device_from_args(args, cfg, amp=("inference",))
    videos = find_videos(args.input)
    dist.init_from_env(device)
    # the architecture asked for: --preset, or model.* when the configuration changes it from the defaults
    expected = args.preset or (cfg.model if cfg.model != ModelConfig() else None)
    model = load_model(args.weights, model=expected, device=device)
    check_track_score(model, cfg.inference.track_score, args.weights)
    settings = {"weights": weights_identity(args.weights), "architecture": model.spec.to_json()}
    rank, world = dist.rank(), dist.world_size()
    job = PredictionRun(
        videos,
        args.out,
        cfg.inference,
        settings,
        resume=not args.no_resume,
        skip_bad=args.skip_bad,
        max_png_tracks=cfg.evaluation.davis_max_proposals,
    )
    with claim_output(args.out, "predict", [("INPUT", args.input), ("--weights", args.weights)]):
        job.check()  # before anything is written: a rerun with other settings stops here
        if rank == 0:
            save_config(cfg, args.out)
        results = job.run(model, overlays=not args.no_overlay, rank=rank, world_size=world)
        if world > 1:
            dist.barrier()
            if rank == 0:
                results = job.gather()  # what all ranks wrote
    if rank == 0:
        if differs:
            print(differs)
        done = len(job.names) - len(job.report.skipped)
        videos = len({r["video_name"] for r in results})
        print(
            f"{done} video(s) predicted; {args.out / 'predictions.json'}: {len(results)} tracks of {videos} video(s)"
        )
        if job.other_settings:
            print(
                f"left out of predictions.json (predicted earlier with other settings, kept on disk): "
                f"{', '.join(job.other_settings)}"
            )
        if job.report:
            print(job.report.summary())
    dist.shutdown()
    return 0
