"""MaskCut speed at the official setting (480 x 480, patch 8 -> 3600 patches, N = 3) with random weights.

Times, per image: the ViT forward, one normalised cut with each eigen-solver (the dense LAPACK path the
official code uses, and ARPACK), the dense CRF, and the whole ``maskcut`` call with the default solver.
Random weights give meaningless masks; only the timings matter.

Figures (``runs/bench/maskcut_speed.json``): seconds per image of each part, and of the whole call.

    python bench/speed/maskcut_speed.py [--arch dino_vitb8] [--size 480] [--images 2] [--device cpu]
        [--out runs/bench]
"""

from __future__ import annotations

import time

import numpy as np
import torch

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import DiscoveryConfig
from autoqvis.discover.crf import densecrf
from autoqvis.discover.maskcut import maskcut_batch, preprocess
from autoqvis.discover.ncut import affinity_matrix, second_smallest_eigenvector
from autoqvis.model.vit import build_vit


def timed(fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--arch", default="dino_vitb8")
    parser.add_argument("--size", type=int, default=480)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    vit = build_vit(args.arch).eval().to(args.device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(args.images)]
    small, x = preprocess(images[0], args.size, vit.patch_size)
    with torch.no_grad():
        out, t_vit = timed(lambda: vit.extract(x[None].to(args.device)))
    feats = out.k[0].T
    figures: dict = {
        "arch": args.arch,
        "size": args.size,
        "patches": [int(out.grid[0]), int(out.grid[1])],
        "device": args.device,
        "vit_forward_s_per_image": t_vit,
    }
    A = affinity_matrix(feats, tau=0.15)
    for solver in ("arpack", "dense"):
        _, figures[f"one_cut_{solver}_s"] = timed(lambda s=solver: second_smallest_eigenvector(A, s))
    mask = np.zeros(small.shape[:2])
    mask[100:300, 150:350] = 1  # (at a small --size, the slice keeps what lies inside)
    _, figures["dense_crf_s_per_mask"] = timed(lambda: densecrf(small, mask))
    cfg = DiscoveryConfig(fixed_size=args.size, batch_size=args.images)
    _, t_all = timed(lambda: maskcut_batch(images, vit, cfg))
    figures["maskcut_s_per_image"] = t_all / len(images)  # the default (auto) solver, num_masks cuts + CRF
    figures["cuts_per_image"] = cfg.num_masks
    write_results(args.out, "maskcut_speed", figures)


if __name__ == "__main__":
    main()
