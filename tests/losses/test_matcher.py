"""The Hungarian matcher against brute-force twins: per-pair costs from a plain loop, and the assignment
against enumeration of every injective assignment."""

from __future__ import annotations

import itertools

import pytest
import torch

from autoqvis.losses.matcher import VideoHungarianMatcher
from autoqvis.losses.point_sampling import make_rand, point_sample
from autoqvis.structures import RoundOutput


def _random_video(gen: torch.Generator, Q: int, N: int, T: int = 2) -> tuple[dict, dict]:
    logits = torch.randn(Q, 2, generator=gen) * 2  # (Q, K=2)
    masks = torch.randn(Q, T, 6, 8, generator=gen) * 3  # (Q, T, h, w)
    target_masks = (torch.rand(N, T, 12, 16, generator=gen) > 0.6).to(torch.uint8)  # (N, T, H, W)
    labels = torch.zeros(N, dtype=torch.int64)
    return {"logits": logits, "masks": masks}, {"labels": labels, "masks": target_masks}


def _loop_cost(matcher, pred: dict, target: dict, q: int, n: int, coords: torch.Tensor) -> float:
    """One entry of the cost matrix, written out per point in float64 (independent of the vectorised path)."""
    prob = pred["logits"][q].double().softmax(-1)[target["labels"][n]]
    x = point_sample(pred["masks"][q : q + 1].double(), coords.double())[0].flatten()  # (T*P,)
    y = point_sample(target["masks"][n : n + 1].double(), coords.double())[0].flatten()
    bce = torch.mean(-(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x))))
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    return float(matcher.cost_class * -prob + matcher.cost_mask * bce + matcher.cost_dice * dice)


def test_cost_matrix_matches_a_per_pair_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    pred, target = _random_video(gen, Q=5, N=3)
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=40)
    coords = torch.rand(1, 40, 2, generator=torch.Generator().manual_seed(1))
    cost = matcher.cost_matrix(
        pred["logits"], pred["masks"], target["labels"], target["masks"], rand=lambda *s, **k: coords
    )
    assert cost.shape == (5, 3)
    for q, n in itertools.product(range(5), range(3)):
        assert float(cost[q, n]) == pytest.approx(_loop_cost(matcher, pred, target, q, n, coords), rel=1e-5)


def _brute_force_min(cost: torch.Tensor) -> float:
    Q, N = cost.shape
    if Q >= N:
        return min(
            sum(float(cost[q, n]) for n, q in enumerate(qs)) for qs in itertools.permutations(range(Q), N)
        )
    return min(sum(float(cost[q, n]) for q, n in enumerate(ns)) for ns in itertools.permutations(range(N), Q))


@pytest.mark.parametrize(
    ("Q", "N", "seed"), [(5, 3, 0), (6, 4, 1), (4, 4, 2), (3, 5, 3), (7, 1, 4), (6, 2, 5)]
)
def test_assignment_is_optimal_by_enumeration(Q: int, N: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    pred, target = _random_video(gen, Q, N)
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=32)
    coords = torch.rand(1, 32, 2, generator=gen)
    fixed = lambda *shape, **kw: coords  # noqa: E731 - the same draw for cost_matrix and forward
    cost = matcher.cost_matrix(pred["logits"], pred["masks"], target["labels"], target["masks"], rand=fixed)
    outputs = RoundOutput(pred["logits"][None], pred["masks"][None], None)
    [(rows, cols)] = matcher(outputs, [target], rand=fixed)
    assert len(rows) == len(cols) == min(Q, N)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    assert rows.tolist() == sorted(rows.tolist())
    assert float(cost[rows, cols].sum()) == pytest.approx(_brute_force_min(cost), abs=1e-5)


def test_one_shared_draw_per_video_and_empty_targets() -> None:
    gen = torch.Generator().manual_seed(3)
    videos = [_random_video(gen, Q=4, N=n) for n in (2, 0, 3)]
    outputs = RoundOutput(
        torch.stack([p["logits"] for p, _ in videos]), torch.stack([p["masks"] for p, _ in videos]), None
    )
    targets = [t for _, t in videos]
    calls = []

    def rand(*shape, device=None, dtype=None):
        calls.append(shape)
        return torch.rand(*shape, generator=gen, device=device, dtype=dtype)

    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16)
    indices = matcher(outputs, targets, rand=rand)
    assert calls == [(1, 16, 2)] * 3
    assert [len(src) for src, _ in indices] == [2, 0, 3]
    assert all(src.dtype == tgt.dtype == torch.int64 for src, tgt in indices)


def test_matching_follows_a_query_permutation() -> None:
    """Permuting the queries permutes the matched query indices (the points are pinned)."""
    gen = torch.Generator().manual_seed(9)
    pred, target = _random_video(gen, Q=6, N=3)
    perm = torch.randperm(6, generator=gen)
    matcher = VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    rand = make_rand(torch.Generator().manual_seed(4))
    outputs = RoundOutput(pred["logits"][None], pred["masks"][None], None)
    [(rows, cols)] = matcher(outputs, [target], rand=make_rand(torch.Generator().manual_seed(4)))
    permuted = RoundOutput(pred["logits"][perm][None], pred["masks"][perm][None], None)
    [(prow, pcol)] = matcher(permuted, [target], rand=rand)
    assert dict(zip(perm[prow].tolist(), pcol.tolist())) == dict(zip(rows.tolist(), cols.tolist()))


def test_rejects_all_zero_costs() -> None:
    with pytest.raises(ValueError, match="non-zero cost"):
        VideoHungarianMatcher(cost_class=0, cost_mask=0, cost_dice=0, num_points=4)
