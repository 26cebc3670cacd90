"""Label-free criteria for choosing among M0 and the rounds, on hand-made predictions."""

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.config import SelectionConfig
from autoqvis.selftrain.pick import label_free_scores, pick_label_free
from autoqvis.structures import Track

H, W = 8, 8


def mask(x0, x1):
    m = np.zeros((H, W), bool)
    m[2:6, x0:x1] = True
    return rle.encode(m)


def track(spans, score=0.9, q=0.8):
    return Track(masks=[mask(*s) for s in spans], score=score, predicted_iou=[q] * len(spans))


def test_each_criterion_on_a_toy_run():
    steady = [track([(0, 4), (0, 4), (0, 4)], q=0.8)]  # the same mask in every frame
    jumpy = [track([(0, 4), (4, 8), (0, 4)], q=0.9)]  # jumps: consecutive IoU 0, but a higher Q
    like_steady = [track([(0, 4), (0, 4), (1, 4)], q=0.5)]
    scores = label_free_scores([{1: steady}, {1: jumpy}, {1: like_steady}], SelectionConfig())
    assert scores[0]["quality"] == pytest.approx(0.9 * 0.8) and scores[1]["quality"] == pytest.approx(0.81)
    assert scores[0]["stability"] == 1.0 and scores[1]["stability"] == 0.0
    assert scores[2]["stability"] == pytest.approx((1.0 + 0.75) / 2)
    # agreement: mean over the other models of the best video IoU
    assert scores[0]["agreement"] == pytest.approx((8 / 16 + 11 / 12) / 2)
    assert pick_label_free(scores, "quality") == 1
    assert pick_label_free(scores, "stability") == 0
    assert pick_label_free(scores, "agreement") == 0
    assert pick_label_free(scores, "last") == 2


def test_low_scores_and_duplicates_are_not_objects_and_ties_keep_the_earlier_model():
    weak = [track([(0, 4), (0, 4)], score=0.1, q=1.0)]  # below selection.score_min: no objects at all
    scores = label_free_scores([{1: weak}, {1: weak}], SelectionConfig())
    assert scores[0] == {"quality": None, "stability": None, "agreement": None}
    assert pick_label_free(scores, "quality") == 1  # nothing scored: the last
    same = [track([(0, 4), (0, 4)]), track([(0, 4), (0, 4)], score=0.8)]  # the second is an NMS duplicate
    scores = label_free_scores([{1: same}, {1: same[:1]}], SelectionConfig())
    assert scores[0] == scores[1]
    assert pick_label_free(scores, "quality") == 0
    with pytest.raises(ValueError, match="label-free criterion"):
        pick_label_free(scores, "best")
