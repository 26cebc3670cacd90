"""Synthesize training clips from images and pseudo-masks (ImageCut2Video) and write them to look at.

    autoqvis synthesize --masks pseudo.json [--images DIR] --out DIR --num N [--seed S] [--preview K]

Writes ``OUT/synthetic.json`` (YouTube-VIS, with the frames under ``OUT/frames``) and ``OUT/preview_NN.gif``
(the first K clips with their tracks coloured), so you can see what the model trains on. ``--images``
defaults to the frames root recorded in the pseudo-mask JSON. Rerunning continues where it stopped; a rerun
with other settings (``synthesis.*``, ``--num``, ``--seed``, another pseudo-mask file) stops and names what
changed (``OUT/fingerprint.json``; ``--no-resume`` writes the clips again).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_no_resume,
    config_from_args,
    integer,
    output_folder,
)
from autoqvis.config import config_to_dict, save_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--masks", type=Path, required=True, help="pseudo-mask JSON (autoqvis discover)")
    parser.add_argument("--images", type=Path, help="images root (default: the one recorded in the JSON)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--num", type=integer(1), default=100, help="clips to write")
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=0)
    parser.add_argument(
        "--preview", type=integer(0), default=4, metavar="K", help="animated GIFs of the first K clips"
    )
    add_no_resume(parser, "the clips")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.runs.fingerprint import Unit, check_start_over, open_unit
    from autoqvis.runs.outputs import claim_output
    from autoqvis.runs.step import step
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
    from autoqvis.synth.write import write_clips, write_previews

    cfg = config_from_args(args)
    output_folder(args.out)
    source = ImageCut2Video(PseudoMaskImages(args.masks, args.images), cfg.synthesis)
    indices = [i % len(source) for i in range(args.num)]
    unit = Unit(
        "the synthesized clips",
        args.out / "fingerprint.json",
        (args.out / "synthetic.json", args.out / "frames", *sorted(args.out.glob("preview_*.gif"))),
    )

    def fingerprint() -> dict:
        return {
            "synthesis": config_to_dict(cfg.synthesis),
            **source.images.identity(),  # the pseudo-masks' and the images' names and contents
            "num": args.num,
            "seed": args.seed,
        }

    wanted = fingerprint()
    resume = not args.no_resume
    if resume:  # a rerun with other settings stops here, before anything (config.yaml included) is written
        open_unit(unit, wanted, write=False)
    reads = [("--masks", args.masks), ("--images", source.images.root)]
    with claim_output(args.out, "synthesize", reads):
        if not resume:
            check_start_over(unit)  # before config.yaml is written
        save_config(cfg, args.out)
        # every clip is checked against its own record (a damaged frame is written again); an image replaced
        # while the clips are made leaves them unmarked
        with step(unit, wanted, resume, recheck=fingerprint):
            dataset = write_clips(source, indices, args.seed, args.out)
            previews = write_previews(source, indices[: args.preview], args.seed, args.out)
    print(
        f"{len(dataset)} clips, {dataset.num_tracks()} tracks -> {args.out / 'synthetic.json'}; previews: {len(previews)}"
    )
    return 0
