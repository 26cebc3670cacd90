"""Normalised-cut building blocks: hand cases for the graph, the corner/seed rule, the seed component and
the rejection rules; the fast eigen-solver against the dense one on a larger graph; the CRF import error."""

import sys

import numpy as np
import pytest
import torch

from autoqvis.discover.crf import densecrf
from autoqvis.discover.maskcut import maskcut_forward, resize_mask
from autoqvis.discover.ncut import (
    affinity_matrix,
    count_foreground_corners,
    foreground_and_seed,
    mask_iou,
    second_smallest_eigenvector,
    seed_component,
)
from autoqvis.errors import AutoqvisError


def _blob_features(grid, boxes, dim=16, noise=0.3, seed=0):
    """(D, N) features: one random direction per box (later boxes win), another for the rest."""
    rng = np.random.default_rng(seed)
    h, w = grid
    labels = np.zeros(grid, int)
    for i, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = i
    centres = rng.standard_normal((len(boxes) + 1, dim)) * 3
    feats = centres[labels.reshape(-1)] + noise * rng.standard_normal((h * w, dim))
    return torch.from_numpy(feats.T.astype(np.float32)), labels


def test_affinity_is_binarised_with_eps():
    feats = torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.1, 1.0]])  # columns: two close vectors and one apart
    A = affinity_matrix(feats, tau=0.5, eps=1e-5)
    assert A.dtype == np.float64
    np.testing.assert_array_equal(A, [[1, 1, 1e-5], [1, 1, 1e-5], [1e-5, 1e-5, 1]])
    painted = feats.double() * torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)  # a zeroed patch
    assert affinity_matrix(painted, tau=0.5)[2].tolist() == [1e-5] * 3


def test_corner_and_seed_rule():
    grid = (4, 4)
    vec = np.zeros(16)
    vec[[0, 3, 12]] = 1.0  # three corners high
    vec[5] = 5.0  # the seed (largest |vec|) is high too
    fg, seed = foreground_and_seed(vec, grid)
    assert count_foreground_corners(vec > vec.mean(), grid) == 3
    assert not fg[5] and fg.sum() == 12  # >= 3 corners: reversed although the seed was foreground
    assert seed == int(np.argmax(-vec))
    vec2 = np.zeros(16)
    vec2[5], vec2[10] = -5.0, -1.0  # seed low: reverse so that it becomes foreground
    fg2, seed2 = foreground_and_seed(vec2, grid)
    assert fg2[5] and fg2[10] and seed2 == 5
    fg3, seed3 = foreground_and_seed(-vec2, grid)  # seed high: kept
    assert fg3[5] and seed3 == 5 and fg3.sum() == 2


def test_seed_component_is_4_connected():
    part = np.zeros((5, 5), bool)
    part[1, 1] = part[2, 2] = True  # diagonal neighbours are separate components
    part[2, 3] = True
    comp = seed_component(part.reshape(-1), 2 * 5 + 2, (5, 5))
    assert comp.sum() == 2 and comp[2, 2] and comp[2, 3] and not comp[1, 1]


def test_mask_iou_follows_tokencut():
    a = np.zeros((4, 4))
    assert np.isnan(mask_iou(a, a))
    b = a.copy()
    b[0, :2] = 1
    c = a.copy()
    c[0, 1:3] = 1
    assert mask_iou(b, c) == pytest.approx(1 / 3)


def test_solvers_agree_on_a_larger_graph():
    grid = (36, 36)  # above the dense/arpack switch of 'auto'
    feats, _ = _blob_features(grid, [(4, 20, 6, 22), (22, 33, 20, 34)], noise=1.5)
    A = affinity_matrix(feats, tau=0.2)
    dense = second_smallest_eigenvector(A, "dense")
    fast = second_smallest_eigenvector(A, "arpack")
    sign = np.sign(dense @ fast)
    np.testing.assert_allclose(sign * fast, dense, atol=1e-8 * np.abs(dense).max())
    d = A.sum(1)
    assert float(fast @ (d * fast)) == pytest.approx(1.0)  # same D-normalisation as LAPACK
    np.testing.assert_array_equal(second_smallest_eigenvector(A, "auto"), fast)
    with pytest.raises(ValueError, match="eigen-solver"):
        second_smallest_eigenvector(A, "qr")


def test_cuts_follow_the_official_repaint_and_reject_loop():
    """Golden case of an official quirk: once a box is painted out, its zeroed patches are cut again;
    that repeat is rejected (IoU > 0.5 with the previous cut), so the third cut compares against an empty
    mask, repeats the first cut and is kept on the grid, and only the pixel masking empties it."""
    grid = (16, 16)
    feats, labels = _blob_features(grid, [(2, 8, 2, 8), (9, 15, 8, 15)], noise=0.2)
    cuts, bipartitions, _ = maskcut_forward(feats, grid, (64, 64), tau=0.2, num_masks=3)
    np.testing.assert_array_equal(cuts[0].mask, labels == 2)
    assert cuts[1].rejected and not cuts[1].mask.any()
    assert not cuts[2].rejected
    np.testing.assert_array_equal(cuts[2].mask, cuts[0].mask)
    assert bipartitions[0].sum() == (labels == 2).sum() * 16 and not bipartitions[1:].any()
    for cut in cuts:
        assert cut.mask.dtype == bool and cut.eigenvector.shape == (256,)


def test_resize_mask_thresholds_like_cutler():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    big = resize_mask(mask, (32, 40))
    expected = np.zeros((32, 40), bool)
    expected[8:24, 10:30] = True  # the square scaled by 4 x 5 ...
    expected[[8, 8, 23, 23], [10, 29, 10, 29]] = False  # ... its corner pixels below half after bicubic
    np.testing.assert_array_equal(big, expected)
    assert not resize_mask(np.zeros((8, 8), bool), (5, 5)).any()
    assert resize_mask(np.ones((8, 8), bool), (5, 7)).all()


def test_missing_pydensecrf_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(AutoqvisError, match="pip install pydensecrf2"):
        densecrf(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)))
