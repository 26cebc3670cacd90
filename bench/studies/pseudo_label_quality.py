"""How good are the pseudo-labels? Precision of the demo's selected pseudo-label frames against the generated
world's ground truth (which the method never sees), per round, for quality-guided and confidence-only runs.

Re-creates the demo world with the same seed to recover the unlabeled videos' true tracks
(:func:`autoqvis.demo.truth.unlabeled_truth`), then for every pseudo-label frame marked ``selected`` reports the
IoU with the best-overlapping true object in that frame.

Figures (``--out``, default ``runs/bench/pseudo_label_quality.json``): per run and round the objects, the
selected frames, their mean IoU and the share with IoU >= 0.5.

    python bench/studies/pseudo_label_quality.py runs/demo [--quick] [--seed 0] [--out runs/bench]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from autoqvis import rle
from autoqvis.benchmark import bench_parser, write_results
from autoqvis.demo.pipeline import DemoPlan
from autoqvis.demo.truth import unlabeled_truth
from autoqvis.io.ytvis import load_ytvis
from autoqvis.runs.layout import DemoLayout

RUNS = {
    "quality-guided": lambda demo: demo.selftrain,
    "confidence-only": lambda demo: demo.ablation,
}  # a demo run's self-trainings


def round_precision(path: Path, truth: list[np.ndarray]) -> dict:
    """Objects and selected frames of one round's pseudo-labels, and the IoU of each selected frame's mask
    with the best-overlapping true object of that frame."""
    labels = load_ytvis(path, check_frames=False)
    ious, objects = [], 0
    for v, info in enumerate(labels.videos):
        gt = truth[v]
        for track in labels.tracks[info.id]:
            objects += 1
            selected = track.selected or [True] * len(track.masks)
            for t, (m, sel) in enumerate(zip(track.masks, selected, strict=True)):
                if m is None or not sel:
                    continue
                a = rle.decode(m)
                ious.append(max(((a & g).sum() / max((a | g).sum(), 1) for g in gt[:, t]), default=0.0))
    ious = np.array(ious, float)
    return {
        "objects": objects,
        "selected_frames": len(ious),
        "mean_iou": float(ious.mean()) if len(ious) else 0.0,
        "share_iou_over_half": float((ious >= 0.5).mean()) if len(ious) else 0.0,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("run", type=Path, help="a finished `autoqvis demo` folder")
    parser.add_argument(
        "--quick", action="store_true", help="the run is a --quick demo (when it has no results.json)"
    )
    parser.add_argument("--seed", type=int, help="the world's seed (default: the run's, else 0)")
    args = parser.parse_args()
    plan, seed = DemoPlan.quick() if args.quick else DemoPlan(), 0
    results = DemoLayout(args.run).results
    if results.is_file():  # the run's own plan (sizes, footage) and seed
        saved = json.loads(results.read_text())
        plan, seed = DemoPlan(**saved["plan"]), saved.get("seed", 0)
    truth = unlabeled_truth(plan, seed if args.seed is None else args.seed)
    figures = {}
    for name, run_of in RUNS.items():
        layout, k = run_of(DemoLayout(args.run)), 1
        while layout.pseudo_labels(k).is_file():
            figures[f"{name}, round {k}"] = round_precision(layout.pseudo_labels(k), truth)
            k += 1
    if not figures:
        raise SystemExit(
            f"{args.run}: expected a demo run with pseudo-labels (selftrain/round_1/...), found none"
        )
    write_results(args.out, "pseudo_label_quality", figures)


if __name__ == "__main__":
    main()
