"""Synthesize training clips from images and pseudo-masks (ImageCut2Video) and write them to look at.

    autoqvis synthesize --masks pseudo.json [--images DIR] --out DIR --num N [--seed S] [--preview K]

Writes ``OUT/synthetic.json`` (YouTube-VIS, with the frames under ``OUT/frames``) and ``OUT/preview_NN.gif``
(the first K clips with their tracks coloured), so you can see what the model trains on. ``--images``
defaults to the frames root recorded in the pseudo-mask JSON. Rerunning continues where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoqvis.commands.common import add_config_arguments, config_from_args
from autoqvis.config import save_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--masks", type=Path, required=True, help="pseudo-mask JSON (autoqvis discover)")
    parser.add_argument("--images", type=Path, help="images root (default: the one recorded in the JSON)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num", type=int, default=100, help="clips to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--preview", type=int, default=4, metavar="K", help="animated GIFs of the first K clips"
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
    from autoqvis.synth.write import write_clips, write_previews

    cfg = config_from_args(args)
    source = ImageCut2Video(PseudoMaskImages(args.masks, args.images), cfg.synthesis)
    indices = [i % len(source) for i in range(args.num)]
    save_config(cfg, args.out)
    dataset = write_clips(source, indices, args.seed, args.out)
    previews = write_previews(source, indices[: args.preview], args.seed, args.out)
    print(
        f"{len(dataset)} clips, {dataset.num_tracks()} tracks -> {args.out / 'synthetic.json'}; previews: {len(previews)}"
    )
    return 0
