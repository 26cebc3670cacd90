"""How good are the pseudo-labels? Precision of the demo's selected pseudo-label frames against the generated
world's ground truth (which the method never sees), per round, for quality-guided and confidence-only runs.

Re-creates the demo world with the same seed to recover the unlabeled videos' true tracks, then for every
pseudo-label frame marked ``selected`` reports the IoU with the best-overlapping true object in that frame.

    python bench/pseudo_label_quality.py runs/demo [--quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from autoqvis import rle
from autoqvis.demo.pipeline import DemoPlan
from autoqvis.demo.world import render_image, render_video
from autoqvis.io.ytvis import load_ytvis


def true_masks(plan: DemoPlan, seed: int) -> list[np.ndarray]:
    """(N, T, H, W) true masks of each unlabeled video, generated exactly as the demo does."""
    rng = np.random.default_rng(seed)
    world = plan.world()
    for _ in range(plan.stills):
        render_image(rng, world)
    return [render_video(rng, world).masks for _ in range(plan.unlabeled_videos)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, help="the world's seed (default: the run's, else 0)")
    args = parser.parse_args()
    plan, seed = DemoPlan.quick() if args.quick else DemoPlan(), 0
    results = args.run / "results.json"
    if results.is_file():  # the run's own plan (sizes, footage) and seed
        saved = json.loads(results.read_text())
        plan, seed = DemoPlan(**saved["plan"]), saved.get("seed", 0)
    truth = true_masks(plan, seed if args.seed is None else args.seed)
    print(f"{'run':34s} {'objects':>8s} {'sel. frames':>11s} {'mean IoU':>9s} {'IoU>=0.5':>9s}")
    for name, folder in (("quality-guided", "selftrain"), ("confidence-only", "ablation_confidence")):
        for k in (1, 2):
            path = args.run / folder / f"round_{k}" / "pseudo_labels.json"
            if not path.is_file():
                continue
            labels = load_ytvis(path, check_frames=False)
            ious, objects = [], 0
            for v, info in enumerate(labels.videos):
                gt = truth[v]
                for track in labels.tracks[info.id]:
                    objects += 1
                    for t, (m, sel) in enumerate(
                        zip(track.masks, track.selected or [True] * len(track.masks), strict=True)
                    ):
                        if m is None or not sel:
                            continue
                        a = rle.decode(m)
                        best = max(((a & g).sum() / max((a | g).sum(), 1) for g in gt[:, t]), default=0.0)
                        ious.append(best)
            ious = np.array(ious)
            print(
                f"{name + ', round ' + str(k):34s} {objects:8d} {len(ious):11d} {ious.mean() if len(ious) else 0:9.3f} {(ious >= 0.5).mean() if len(ious) else 0:9.3f}"
            )


if __name__ == "__main__":
    main()
