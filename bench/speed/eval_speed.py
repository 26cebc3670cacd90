"""YouTube-VIS evaluation speed on a YouTube-VIS-sized set.

Generates 300 videos of 36 frames at 720x1280 (5 ground-truth tracks and 10 predictions per video, moving
ellipses as compressed RLE), writes the two JSON files, and times:

- ``autoqvis evaluate`` end to end (read + validate both files, IoUs, matching, summary);
- the evaluation alone on tracks in memory;
- the official evaluator's IoU rule (two RLE merges per pair and frame, in Python loops) on a subset of the
  videos, extrapolated to the whole set, to give the speed-up ratio.

Figures (``runs/bench/eval_speed.json``): the set's size, the three times in seconds and the speed-up.

    python bench/speed/eval_speed.py [--videos 300] [--frames 36] [--baseline-videos 30] [--out runs/bench]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.evaluate.ytvis import evaluate_files, evaluate_tracks, format_table
from autoqvis.io.ytvis import load_predictions, load_ytvis
from autoqvis.runs.atomic import atomic_write_json


def ellipse(cx, cy, rx, ry, n=48):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1).ravel().tolist()


def rle_of(poly, h, w):
    r = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
    return {"size": [h, w], "counts": r["counts"].decode("ascii")}


def generate(num_videos, frames, h, w, gts, preds, seed=0):
    rng = np.random.default_rng(seed)
    videos, annotations, results = [], [], []
    for v in range(1, num_videos + 1):
        videos.append(
            {
                "id": v,
                "width": w,
                "height": h,
                "length": frames,
                "file_names": [f"{v}/{t:05d}.jpg" for t in range(frames)],
            }
        )
        objects = []
        for _ in range(gts):
            start = rng.uniform([100, 100], [w - 100, h - 100])
            speed = rng.uniform(-8, 8, 2)
            radii = rng.uniform(20, 200, 2)
            first, last = sorted(rng.integers(0, frames, 2))
            objects.append((start, speed, radii, first, max(last, first + 3)))
        for start, speed, radii, first, last in objects:
            segs = [
                rle_of(ellipse(*(start + speed * t), *radii), h, w) if first <= t <= last else None
                for t in range(frames)
            ]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": v,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentations": segs,
                }
            )
        for k in range(preds):
            start, speed, radii, first, last = objects[k % gts]
            jitter = rng.normal(0, 6 + 10 * (k // gts), 2)
            scale = rng.uniform(0.8, 1.2, 2)
            segs = [
                rle_of(ellipse(*(start + speed * t + jitter), *(radii * scale)), h, w)
                if first <= t <= last
                else rle_of([0, 0, 0, 0, 0, 0], h, w)
                for t in range(frames)
            ]
            results.append(
                {"video_id": v, "score": float(rng.random()), "category_id": 1, "segmentations": segs}
            )
    gt = {"videos": videos, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    return gt, results


def official_rule_ious(gt_tracks, pred_tracks):
    """The official evaluator's video IoU: per pair, per frame, RLE merges in Python."""

    def enc(m):
        return None if m is None else {"size": m["size"], "counts": m["counts"].encode("ascii")}

    out = np.zeros((len(pred_tracks), len(gt_tracks)))
    for i, d in enumerate(pred_tracks):
        for j, g in enumerate(gt_tracks):
            inter = union = 0.0
            for dm, gm in zip(map(enc, d.masks), map(enc, g.masks), strict=True):
                if dm and gm:
                    inter += mask_utils.area(mask_utils.merge([dm, gm], True))
                    union += mask_utils.area(mask_utils.merge([dm, gm], False))
                elif gm:
                    union += mask_utils.area(gm)
                elif dm:
                    union += mask_utils.area(dm)
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--frames", type=int, default=36)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--gt-per-video", type=int, default=5)
    parser.add_argument("--preds-per-video", type=int, default=10)
    parser.add_argument("--baseline-videos", type=int, default=30)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt, results = generate(
        args.videos, args.frames, args.height, args.width, args.gt_per_video, args.preds_per_video
    )
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        atomic_write_json(gt_path, gt)
        atomic_write_json(pred_path, results)
        print(
            f"generated {args.videos} videos x {args.frames} frames at {args.height}x{args.width}: "
            f"{len(gt['annotations'])} GT tracks, {len(results)} predictions in {time.perf_counter() - t0:.1f} s"
        )

        t0 = time.perf_counter()
        result = evaluate_files(gt_path, pred_path)
        end_to_end = time.perf_counter() - t0

        dataset = load_ytvis(gt_path)
        predictions = load_predictions(pred_path, dataset)
    t0 = time.perf_counter()
    evaluate_tracks(dataset.tracks, predictions)
    core = time.perf_counter() - t0

    subset = sorted(dataset.tracks)[: args.baseline_videos]
    t0 = time.perf_counter()
    for v in subset:
        official_rule_ious(dataset.tracks[v], predictions.get(v, []))
    baseline = (time.perf_counter() - t0) * len(dataset.tracks) / max(len(subset), 1)

    print(format_table(result, title="metrics (class-agnostic)"))
    figures = {
        "set": {
            "videos": args.videos,
            "frames": args.frames,
            "size": [args.height, args.width],
            "gt_tracks": len(gt["annotations"]),
            "predictions": len(results),
        },
        "end_to_end_s": end_to_end,  # read + validate + evaluate
        "in_memory_s": core,  # the evaluation of tracks in memory
        "official_iou_rule_s": baseline,  # extrapolated from baseline_videos
        "baseline_videos": len(subset),
        "official_rule_over_ours": baseline / core,
    }
    write_results(args.out, "eval_speed", figures)


if __name__ == "__main__":
    main()
