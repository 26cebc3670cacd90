"""The generated world's truth for the unlabeled videos of a demo run, which the method never sees: the
benchmarks' studies (``bench/studies/pseudo_label_quality.py``, ``oracle_round.py``) measure against it."""

from __future__ import annotations

import numpy as np

from autoqvis.demo.pipeline import DemoPlan
from autoqvis.io.world import render_image, render_video

__all__ = ["unlabeled_truth"]


def unlabeled_truth(plan: DemoPlan, seed: int) -> list[np.ndarray]:
    """(N, T, H, W) true masks of each unlabeled video of the demo world made with ``plan`` and ``seed``,
    generated in the order :func:`autoqvis.demo.pipeline.make_world` draws them (stills first)."""
    rng = np.random.default_rng(seed)
    world = plan.world()
    for _ in range(plan.stills):
        render_image(rng, world)
    return [render_video(rng, world).masks for _ in range(plan.unlabeled_videos)]
