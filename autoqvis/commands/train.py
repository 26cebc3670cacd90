"""Train the VIS model on synthetic clips and/or video datasets; resumable; one or many processes.

    autoqvis train --out RUN --masks pseudo.json                  # ImageCut2Video clips from discovery
    autoqvis train --out RUN --world 200                          # demo-world clips (no data needed)
    autoqvis train --out RUN --videos train.json --frames-root DIR  # YouTube-VIS ground truth or pseudo-labels
    torchrun --nproc-per-node 2 -m autoqvis train --out RUN ...      # DistributedDataParallel

With synthetic and video sources, batches are drawn from the video datasets as in a self-training round
(``rounds.mix_prob``, scaled by their frames / ``rounds.mix_frames`` when that is set) and from the synthetic
ones otherwise. ``--init`` gives the initial weights (official .pth or a model folder).
A rerun of the same command resumes from ``RUN/last.pt`` (a finished model is kept); a rerun with other
settings, sources or initial weights stops and names what changed (``RUN/fingerprint.json``);
``--no-resume`` starts over.
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
from autoqvis.runs.outputs import claim_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--masks", type=Path, help="pseudo-mask JSON (autoqvis discover): ImageCut2Video clips"
    )
    parser.add_argument("--images", type=Path, help="images root of --masks (default: recorded in the JSON)")
    parser.add_argument(
        "--world", type=integer(0), default=0, metavar="N", help="N procedural demo-world clips"
    )
    parser.add_argument("--videos", type=Path, action="append", default=[], help="YouTube-VIS dataset JSON")
    parser.add_argument(
        "--frames-root", type=Path, action="append", default=[], help="frames root of each --videos"
    )
    parser.add_argument("--init", type=Path, help="initial weights (model folder, .pth or .safetensors)")
    add_device_argument(parser)
    add_no_resume(parser, "the training run")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.io.world import world_source
    from autoqvis.train import dist
    from autoqvis.train.run import train_stage
    from autoqvis.train.sources import mixing_probs, synthetic_source, video_sources

    if args.images and not args.masks:
        raise DataError(
            f"--images {args.images} is the images root of --masks (ImageCut2Video); without --masks it would be "
            "ignored: pass --masks pseudo.json too, or drop --images"
        )
    device, cfg = device_from_args(args, config_from_args(args), amp=("training",))
    output_folder(args.out)
    dist.init_from_env(device)
    synthetic = [world_source(args.world, cfg.synthesis.num_frames)] if args.world else []
    if args.masks:
        synthetic.append(synthetic_source(args.masks, args.images, cfg))
    real = video_sources(args.videos, args.frames_root, cfg)
    if not synthetic and not real:
        raise DataError(
            "nothing to train on: pass --masks pseudo.json (ImageCut2Video), --world N and/or "
            "--videos DATASET.json --frames-root DIR"
        )
    sources = synthetic + real
    frames = [sum(v.length for v in source.dataset.videos) for source in real]
    probs = mixing_probs(len(synthetic), frames, cfg.rounds)
    reads = [("--init", args.init), ("--masks", args.masks), ("--images", args.images)]
    reads += [("--videos", p) for p in args.videos] + [("--frames-root", p) for p in args.frames_root]
    with claim_output(args.out, "train", reads):
        folder = train_stage(cfg, sources, probs, args.out, init=args.init, resume=not args.no_resume)
    if dist.is_main():
        print(f"model: {folder}")
    dist.shutdown()
    return 0
