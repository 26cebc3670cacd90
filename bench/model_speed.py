"""Model speed and memory: eval forward + post-processing, and training iterations.

Eval: the ``paper_r50`` preset (random weights) on a 5-frame 360x640 clip, 2 threads, median of several runs
after a warm-up, each mode in its own process so that its peak RSS is its own:

- ``ours``: the default path (per-point contiguous deformable attention, only the kept top-k queries upsampled
  and scored by the quality head);
- ``official-style``: the same weights run the way the official code does (stack-multiply-reduce deformable
  attention, every query scored by the quality head and upsampled before top-k).

Outputs are compared (scores, kept queries, IoUs, masks) so the speed-up is for identical results. The official
implementation measured on this machine kind: 11.7 s and 2.2 GB for this clip.

Training: one iteration (forward, loss, backward, optimiser step) at batch 1 with 3x240x320 clips, for the
``tiny`` and ``paper_r50`` presets, in the quality-head stage (head trained on all queries) and in the
self-training stage (head frozen, DropLoss). The reference needs 58 s and 24 s per paper-preset iteration here.

    python bench/model_speed.py [--frames 5] [--height 360] [--width 640] [--runs 3] [--skip-train]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from autoqvis.config import TrainingConfig
from autoqvis.model import PRESETS, VideoMaskFormer, build_model, msdeform
from autoqvis.structures import Clip


def official_style_inference(model: VideoMaskFormer, frames: torch.Tensor, top_k: int = 10):
    """Post-processing as the official code does it: score and upsample every query, then take the top-k."""
    images, sizes = model.preprocess([frames])
    _, mask_features, multi_scale = model.features(images)
    out = model.predictor(multi_scale, mask_features, num_videos=1, score_quality="last")
    masks = F.interpolate(out.masks[0], size=images.shape[-2:], mode="bilinear", align_corners=False)
    scores = F.softmax(out.logits[0], -1)[:, :-1]
    top_scores, top_idx = scores.flatten().topk(top_k, sorted=True)
    kept = masks[top_idx][:, :, : sizes[0][0], : sizes[0][1]]
    kept = F.interpolate(kept, size=sizes[0], mode="bilinear", align_corners=False)
    return top_scores, top_idx, kept > 0, out.quality[0][top_idx][..., 0].clamp(0, 1)


def eval_worker(mode: str, frames: int, height: int, width: int, runs: int, masks_path: str) -> dict:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model("paper_r50").eval()
    clip = torch.randint(
        0, 256, (frames, 3, height, width), generator=torch.Generator().manual_seed(1), dtype=torch.uint8
    )
    if mode == "official-style":
        msdeform.ms_deform_attn_core = msdeform.ms_deform_attn_stacked

        def run():
            return official_style_inference(model, clip)
    else:

        def run():
            out = model.inference(clip)
            return out.scores, out.query_index, out.masks, out.ious

    times = []
    with torch.no_grad():
        result = run()  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
    scores, index, masks, ious = result
    np.save(masks_path, np.packbits(masks.numpy()))
    return {
        "median_s": statistics.median(times),
        "times_s": times,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "scores": scores.tolist(),
        "index": index.tolist(),
        "ious": ious.tolist(),
        "mask_pixels": int(masks.sum()),
    }


def train_iteration_seconds(preset: str, stage: str, runs: int = 2) -> float:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    spec = PRESETS[preset]
    frozen = stage == "self-training"
    training = TrainingConfig(droploss=frozen, freeze_quality_head=frozen)
    model = build_model(spec, training).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (spec.num_frames, 3, 240, 320), generator=g, dtype=torch.uint8)
    masks = torch.zeros(2, spec.num_frames, 240, 320, dtype=torch.bool)
    masks[0, :, 40:120, 60:160] = True
    masks[1, :, 130:220, 180:300] = True
    clip = Clip(frames=frames, masks=masks, ids=torch.tensor([[0] * spec.num_frames, [1] * spec.num_frames]))
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        images, _ = model.preprocess([clip.frames])
        targets = model.prepare_targets([clip], images.shape[-2:])
        loss = sum(model.criterion(model(images, num_videos=1), targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--worker", choices=("ours", "official-style"), help=argparse.SUPPRESS)
    parser.add_argument("--masks-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(
                eval_worker(args.worker, args.frames, args.height, args.width, args.runs, args.masks_path)
            )
        )
        return

    results = {}
    tmp = Path(tempfile.mkdtemp())
    for mode in ("official-style", "ours"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--frames",
            str(args.frames),
            "--height",
            str(args.height),
            "--width",
            str(args.width),
            "--runs",
            str(args.runs),
            "--masks-path",
            str(tmp / f"{mode}.npy"),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    ref, ours = results["official-style"], results["ours"]
    same = ref["index"] == ours["index"]
    differing = int(np.unpackbits(np.load(tmp / "official-style.npy") ^ np.load(tmp / "ours.npy")).sum())
    shutil.rmtree(tmp)
    max_score = max(abs(a - b) for a, b in zip(ref["scores"], ours["scores"], strict=True))
    max_iou = max(
        abs(a - b)
        for ra, oa in zip(ref["ious"], ours["ious"], strict=True)
        for a, b in zip(ra, oa, strict=True)
    )
    print(
        f"paper_r50 eval, {args.frames} frames at {args.height}x{args.width}, 2 threads, median of {args.runs}:"
    )
    for mode, r in results.items():
        print(
            f"  {mode:15s} {r['median_s']:6.2f} s  ({r['median_s'] / args.frames:.2f} s/frame)  peak RSS {r['peak_rss_gb']:.2f} GB"
        )
    print(
        f"  speed-up over the official-style path: {ref['median_s'] / ours['median_s']:.2f}x; over the official code's 11.7 s: {11.7 / ours['median_s']:.2f}x"
    )
    print(
        f"  outputs: same kept queries: {same}; {differing} of {ref['mask_pixels']} foreground mask pixels differ; "
        f"max |score diff| {max_score:.2e}, max |IoU diff| {max_iou:.2e}"
    )
    if args.skip_train:
        return
    print("training iteration, batch 1, 3x240x320 (median of 2 after a warm-up):")
    for preset in ("tiny", "paper_r50"):
        for stage in ("quality-head", "self-training"):
            print(f"  {preset:10s} {stage:14s} {train_iteration_seconds(preset, stage):6.2f} s")
    print("  reference (official, paper preset): 58 s (quality-head stage), 24 s (self-training stage)")


if __name__ == "__main__":
    main()
