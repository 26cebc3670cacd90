"""Point sampling: bilinear sampling vs a hand-written loop, and importance sampling's choice of points."""

from __future__ import annotations

import math

import pytest
import torch

from autoqvis.losses.point_sampling import (
    importance_sample_points,
    make_rand,
    point_sample,
    point_uncertainty,
)


def _bilinear_loop(grid: torch.Tensor, x: float, y: float) -> float:
    """Sample a (H, W) grid at normalised (x, y): pixel centres at (i + 0.5) / W, zeros outside."""
    H, W = grid.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    value = 0.0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        xi, yi = x0 + dx, y0 + dy
        weight = (1 - abs(px - xi)) * (1 - abs(py - yi))
        if 0 <= xi < W and 0 <= yi < H:
            value += weight * float(grid[yi, xi])
    return value


def test_point_sample_matches_a_bilinear_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(3, 2, 5, 7, generator=gen, dtype=torch.float64)  # (R, C, H, W)
    coords = torch.rand(3, 20, 2, generator=gen, dtype=torch.float64)  # (R, P, 2), includes border zones
    out = point_sample(features, coords)
    assert out.shape == (3, 2, 20)
    for r in range(3):
        for c in range(2):
            for p in range(20):
                x, y = coords[r, p].tolist()
                assert float(out[r, c, p]) == pytest.approx(_bilinear_loop(features[r, c], x, y), abs=1e-12)


def test_point_sample_rejects_bad_coords() -> None:
    with pytest.raises(ValueError, match=r"\(R, P, 2\)"):
        point_sample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 5, 3))


def test_importance_sampling_keeps_the_most_uncertain_candidates() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 8, 8, generator=gen) * 4  # (R, 1, H, W)
    draws = [torch.rand(4, 60, 2, generator=gen), torch.rand(4, 5, 2, generator=gen)]
    calls = []

    def rand(*shape, device=None, dtype=None):
        calls.append(shape)
        return draws[len(calls) - 1]

    coords = importance_sample_points(
        logits, num_points=20, oversample_ratio=3.0, importance_sample_ratio=0.75, rand=rand
    )
    assert calls == [(4, 60, 2), (4, 5, 2)]  # P*ratio candidates, then P - int(0.75 P) fresh points
    assert coords.shape == (4, 20, 2)
    assert torch.equal(coords[:, 15:], draws[1])
    uncertainty = point_uncertainty(point_sample(logits, draws[0]))[:, 0]  # (R, 60)
    for r in range(4):
        chosen = point_uncertainty(point_sample(logits[r : r + 1], coords[r : r + 1, :15]))[0, 0]
        threshold = uncertainty[r].sort(descending=True).values[14]
        assert bool((chosen >= threshold).all())  # the 15 kept candidates are the 15 most uncertain
        kept_rows = {tuple(c) for c in coords[r, :15].tolist()}
        assert kept_rows <= {tuple(c) for c in draws[0][r].tolist()}


def test_importance_sampling_without_random_part_draws_once() -> None:
    calls = []

    def rand(*shape, device=None, dtype=None):
        calls.append(shape)
        return torch.rand(*shape, device=device, dtype=dtype)

    coords = importance_sample_points(torch.zeros(2, 1, 4, 4), 8, 2.0, 1.0, rand=rand)
    assert coords.shape == (2, 8, 2) and calls == [(2, 16, 2)]


def test_make_rand_with_generator_is_reproducible() -> None:
    a = make_rand(torch.Generator().manual_seed(5))(3, 2)
    b = make_rand(torch.Generator().manual_seed(5))(3, 2)
    assert torch.equal(a, b) and make_rand() is torch.rand


@pytest.mark.parametrize(("ratio", "importance"), [(0.5, 0.75), (3.0, 1.5)])
def test_importance_sampling_rejects_bad_ratios(ratio: float, importance: float) -> None:
    with pytest.raises(ValueError):
        importance_sample_points(torch.zeros(1, 1, 4, 4), 8, ratio, importance)
