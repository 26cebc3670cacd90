"""DAVIS J&F: hand-made cases with known values, an independent boundary measure, real DAVIS-2016 footage."""

import math

import numpy as np
import pytest
from scipy import ndimage

from autoqvis.cli import main
from autoqvis.errors import DataError
from autoqvis.evaluate.davis import (
    boundary_map,
    db_statistics,
    evaluate_davis_folders,
    evaluate_sequence_2016,
    evaluate_sequence_unsupervised,
    f_measure,
    jaccard,
)
from autoqvis.io.davis import read_id_masks, write_sequence_masks
from tests.conftest import shared_data


def _square(h, w, y, x, s):
    m = np.zeros((h, w), bool)
    m[y : y + s, x : x + s] = True
    return m


def test_jaccard_hand_cases():
    a = _square(50, 60, 10, 10, 20)
    b = np.roll(a, 1, axis=1)
    assert jaccard(a, a) == 1.0
    assert jaccard(a, b) == pytest.approx(19 / 21)
    assert jaccard(a, ~a) == 0.0
    empty = np.zeros_like(a)
    assert jaccard(empty, empty) == 1.0  # both empty: perfect, as the toolkit
    void = np.zeros_like(a)
    void[:, 30] = True  # the only column where a and b disagree on the right edge
    assert jaccard(a, b, void) == pytest.approx(19 / 20)


def test_f_measure_hand_cases():
    h, w = 120, 160  # diagonal 200 -> radius ceil(1.6) = 2 px
    a = _square(h, w, 30, 30, 40)
    assert f_measure(a, a) == 1.0
    assert f_measure(a, np.roll(a, 2, axis=1)) == 1.0  # within the tolerance everywhere
    assert f_measure(a, np.roll(a, 60, axis=1)) == 0.0  # boundaries far apart
    empty = np.zeros_like(a)
    assert f_measure(empty, empty) == 1.0
    assert f_measure(a, empty) == 0.0 and f_measure(empty, a) == 0.0
    assert f_measure(a, np.roll(a, 3, axis=1), bound_th=3) == 1.0  # radius in pixels when >= 1


def _independent_f(gt, pred, radius):
    """Boundary F from Euclidean distance transforms (a pixel matches if the other boundary is within radius)."""
    gb, pb = boundary_map(gt), boundary_map(pred)
    d_to_g = ndimage.distance_transform_edt(~gb)
    d_to_p = ndimage.distance_transform_edt(~pb)
    precision = np.mean(d_to_g[pb] <= radius)
    recall = np.mean(d_to_p[gb] <= radius)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_f_measure_agrees_with_a_distance_transform_on_random_shapes():
    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = ndimage.gaussian_filter(rng.random((90, 120)), 4) > 0.5
        pred = np.roll(gt, rng.integers(-6, 7), axis=0)
        pred = (
            ndimage.binary_dilation(pred, iterations=int(rng.integers(1, 3))) if rng.random() < 0.5 else pred
        )
        radius = math.ceil(0.008 * math.hypot(90, 120))
        assert f_measure(gt, pred) == pytest.approx(_independent_f(gt, pred, radius))


def test_boundary_map_of_a_square():
    b = boundary_map(_square(10, 10, 2, 2, 4))  # rows and columns 2..5
    # seg2bmap compares each pixel with its right, lower and lower-right neighbours: the outside row and
    # column before the square and the square's own last row and column
    expected = np.zeros((10, 10), bool)
    expected[1, 1:6] = expected[1:6, 1] = True
    expected[5, 2:6] = expected[2:6, 5] = True
    np.testing.assert_array_equal(b, expected)


def test_db_statistics_mean_recall_decay():
    values = np.array([1.0, 1.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.2])
    mean, recall, decay = db_statistics(values)
    assert mean == pytest.approx(0.6) and recall == pytest.approx(0.5)
    assert decay == pytest.approx(0.8)  # first quarter 1.0, last quarter 0.2


def test_2016_protocol_leaves_out_first_and_last_frame():
    gt = np.stack([_square(40, 40, 5, 5, 10)] * 4)
    pred = gt.copy()
    pred[0] = False
    pred[-1] = False
    assert evaluate_sequence_2016("s", gt, pred).stats()["J-Mean"] == 1.0
    kept = evaluate_sequence_2016("s", gt, pred, keep_first_last=True).stats()
    assert kept["J-Mean"] == pytest.approx(0.5) and kept["F-Mean"] == pytest.approx(0.5)
    with pytest.raises(DataError, match="at least 3"):
        evaluate_sequence_2016("s", gt[:2], pred[:2])


def test_unsupervised_hungarian_matching_and_padding():
    h, w = 60, 80
    gt = np.zeros((3, h, w), np.uint8)
    gt[:, 5:25, 5:25] = 1
    gt[:, 30:50, 40:70] = 2
    gt[:, 0, :] = 255  # void row
    proposals = np.zeros_like(gt)
    proposals[:, 30:50, 40:70] = 1  # object 2 found by proposal 1
    proposals[:, 5:25, 5:15] = 3  # half of object 1 by proposal 3
    objects = evaluate_sequence_unsupervised("seq", gt, proposals)
    assert [(o.object_id, o.proposal) for o in objects] == [(1, 3), (2, 1)]
    assert objects[1].stats()["J-Mean"] == 1.0
    assert objects[0].stats()["J-Mean"] == pytest.approx(0.5)
    # no proposals at all: both objects matched to empty pads, J = F = 0
    none = evaluate_sequence_unsupervised("seq", gt, np.zeros_like(gt))
    assert [o.stats()["J-Mean"] for o in none] == [0.0, 0.0]
    too_many = np.zeros_like(gt)
    too_many[0, 0, :21] = np.arange(1, 22)
    with pytest.raises(DataError, match="at most 20"):
        evaluate_sequence_unsupervised("seq", gt, too_many)


@pytest.fixture(scope="module")
def davis_root():
    return shared_data("davis2016-dev")


def test_real_davis_gt_against_itself_and_shifted(davis_root, tmp_path):
    ann = davis_root / "Annotations" / "480p"
    perfect, shifted = tmp_path / "perfect", tmp_path / "shifted"
    expected_j, expected_f = [], []
    for seq in ("blackswan", "car-shadow"):
        gt, frames = read_id_masks(ann / seq)
        write_sequence_masks(perfect, seq, frames, gt)
        moved = np.roll(gt, 20, axis=2)
        moved[:, :, :20] = 0
        write_sequence_masks(shifted, seq, frames, moved)
        fg, mv = gt[1:-1] > 0, moved[1:-1] > 0
        expected_j.append(np.mean([(a & b).sum() / (a | b).sum() for a, b in zip(fg, mv)]))
        radius = math.ceil(0.008 * math.hypot(*fg.shape[1:]))
        expected_f.append(np.mean([_independent_f(a, b, radius) for a, b in zip(fg, mv)]))
    seqs = ["blackswan", "car-shadow"]
    same = evaluate_davis_folders(davis_root, perfect, sequences=seqs).summary()
    assert same["J&F-Mean"] == 1.0 and same["J-Mean"] == 1.0 and same["F-Mean"] == 1.0
    moved = evaluate_davis_folders(davis_root, shifted, sequences=seqs)
    summary = moved.summary()
    assert summary["J-Mean"] == pytest.approx(np.mean(expected_j))
    assert summary["F-Mean"] == pytest.approx(np.mean(expected_f))
    assert summary["J&F-Mean"] == pytest.approx((np.mean(expected_j) + np.mean(expected_f)) / 2)


def test_cli_davis_and_missing_predictions(davis_root, tmp_path, capsys):
    pred = tmp_path / "pred"
    gt, frames = read_id_masks(davis_root / "Annotations" / "480p" / "dog")
    write_sequence_masks(pred, "dog", frames[:-1], gt[:-1])  # last frame missing
    code = main(["evaluate", "--davis", str(davis_root), "--pred-masks", str(pred)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no predictions for 4 of 5 sequences" in err
    with pytest.raises(DataError, match="mask frames missing"):
        evaluate_davis_folders(davis_root, pred, sequences=["dog"])
