"""The track filters of the selection (consistency, persistence, agreement with the teacher), by hand."""

import pytest

from autoqvis.config import SelectionConfig
from autoqvis.selftrain.pseudo_label import select_video
from autoqvis.selftrain.select import (
    consistency,
    drop_disagreeing,
    drop_inconsistent,
    drop_transient,
    persistence,
    teacher_iou,
)
from tests.selftrain.toy import mask, track


def test_consistency_and_persistence_by_hand():
    steady = track([(0, 4)] * 4)
    jumpy = track([(0, 4), (4, 8), (0, 4), (4, 8)])
    gappy = track([(0, 4), None, (0, 4), (1, 4)])
    assert consistency(steady) == 1.0 and consistency(jumpy) == 0.0
    assert consistency(gappy) == pytest.approx(0.75)  # only the pair (2, 3) has both masks
    assert consistency(track([(0, 4), None])) == 1.0  # no pair: nothing contradicts it
    assert persistence(steady) == 1.0 and persistence(gappy) == 0.75
    assert drop_inconsistent([steady, jumpy, gappy], 0.8) == [steady]
    assert drop_inconsistent([steady, jumpy], 0.0) == [steady, jumpy]  # off
    assert drop_transient([steady, gappy], 0.9) == [steady]
    assert drop_transient([steady, gappy], 0.0) == [steady, gappy]


def test_teacher_iou_by_hand():
    t = track([(0, 4), (0, 4), None])
    assert teacher_iou(t, {0: [mask(4, 8), mask(0, 4)]}) == 1.0  # the best-matching cut
    assert teacher_iou(t, {0: [mask(0, 2)], 1: []}) == pytest.approx((0.5 + 0.0) / 2)
    assert teacher_iou(t, {2: [mask(0, 4)]}) is None  # the track has no mask in the teacher's frames


def test_the_filters_are_switches_of_the_selection_and_off_by_default():
    steady = track([(0, 2)] * 4)
    jumpy = track([(4, 6), (6, 8), (4, 6), (6, 8)], score=0.8)  # consecutive IoU 0
    short = track([(2, 4), (2, 4), None, None], score=0.7)  # in half the frames
    default = select_video([steady, jumpy, short], SelectionConfig(quality_min=0.5))
    assert len(default) == 3
    kept = select_video([steady, jumpy, short], SelectionConfig(quality_min=0.5, min_consistency=0.5))
    assert [t.score for t in kept] == [0.9, 0.7]
    kept = select_video([steady, jumpy, short], SelectionConfig(quality_min=0.5, min_persistence=0.75))
    assert [t.score for t in kept] == [0.9, 0.8]


def test_agreement_with_the_teacher_is_a_switch_of_the_selection():
    on_object = track([(0, 2)] * 4)
    on_background = track([(4, 8)] * 4, score=0.8)
    unseen = track([(2, 4), None, None, None], score=0.7)  # no mask on the frames the teacher cut
    teacher = {1: [mask(0, 2)], 2: [mask(0, 3)]}  # frame -> the teacher's cuts
    tracks = [on_object, on_background, unseen]
    assert drop_disagreeing(tracks, teacher, 0.0) == tracks  # off
    assert drop_disagreeing(tracks, teacher, 0.5) == [on_object]  # IoU (1 + 2/3) / 2 with the cuts
    assert drop_disagreeing(tracks, teacher, 0.9) == []
    cfg = SelectionConfig(quality_min=0.5, min_frames=1, min_teacher_iou=0.5)
    assert [t.score for t in select_video(tracks, cfg, teacher=teacher)] == [0.9]
    with pytest.raises(ValueError, match="min_teacher_iou"):
        select_video(tracks, cfg)  # the filter without the teacher's cuts
