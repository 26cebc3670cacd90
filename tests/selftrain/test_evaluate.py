"""Picking the selected model of a self-training run, and the validation-set evaluator's quality samples."""

import numpy as np
import pytest

from autoqvis.io import rle
from autoqvis.selftrain.evaluate import _quality_samples, metric_value, pick_best
from autoqvis.structures import Track


def _row(ap50=None, jf=None):
    return {"model": "m", "metrics": None if ap50 is None else {"ytvis": {"AP50": ap50, "AP": 1.0}, "jf": jf}}


def test_pick_best_by_metric_first_on_ties_and_last_without_scores():
    assert pick_best([_row(30.0), _row(38.5), _row(32.0)], "AP50") == 1
    assert pick_best([_row(40.0), _row(40.0), _row(39.0)], "AP50") == 0  # M0 kept on a tie
    assert pick_best([_row(1.0, jf=50.0), _row(2.0, jf=40.0)], "JF") == 0
    assert pick_best([_row(), _row(), _row()], "AP50") == 2  # nothing scored: the last round
    assert metric_value(None, "AP") is None
    with pytest.raises(ValueError, match="AP50"):
        metric_value({"ytvis": {}}, "mAP")


def test_quality_samples_pair_each_predicted_mask_with_its_matched_ground_truth():
    hw = (4, 4)
    a = np.zeros(hw, bool)
    a[:2] = True  # 8 px
    b = np.zeros(hw, bool)
    b[:, :2] = True  # 8 px, 4 shared with a
    truth = [Track(masks=[rle.encode(a), rle.encode(a)]), Track(masks=[rle.encode(b), None])]
    tracks = [
        Track(masks=[rle.encode(a), rle.encode(b)], score=0.5, predicted_iou=[0.8, 0.4]),
        Track(masks=[rle.encode(b), rle.encode(np.zeros(hw, bool))], score=0.25, predicted_iou=[0.9, 0.9]),
    ]
    samples = {"quality": [], "confidence": [], "true_iou": [], "area": []}
    _quality_samples(truth, tracks, hw, samples)
    # track 0 matches truth 0 (IoU 1, then 4/12); track 1 matches truth 1 (IoU 1; its empty frame is skipped)
    assert samples["true_iou"] == pytest.approx([1.0, 4 / 12, 1.0])
    assert samples["quality"] == pytest.approx([0.4, 0.2, 0.225])
    assert samples["confidence"] == [0.5, 0.5, 0.25]
    assert samples["area"] == [8.0, 8.0, 8.0]
