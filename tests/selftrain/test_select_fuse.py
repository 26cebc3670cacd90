"""Golden tests for the selection steps and fusion on hand-written tracks (4x6 frames)."""

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.selftrain.fuse import eligible_frames, fuse_labels, replace_labels
from autoqvis.selftrain.select import (
    drop_rarely_selected,
    frame_ious,
    keep_confident,
    mark_selected,
    nms_any_frame,
    normalise_empty,
)
from autoqvis.structures import Track

H, W = 4, 6


def box(x0, x1, y0=0, y1=H):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def track(frames, score=1.0, ious=None, selected=None):
    """frames: per-frame (x0, x1) column spans (full height) or None for absent."""
    masks = [None if f is None else rle.encode(box(*f)) for f in frames]
    return Track(masks=masks, score=score, predicted_iou=ious, selected=selected)


def test_frame_ious_are_zero_where_absent():
    a = track([(0, 3), None, (0, 2)])
    b = track([(0, 3), (0, 3), (1, 3)])
    ious = frame_ious([a], [b])[0, 0]
    assert ious.tolist() == [1.0, 0.0, pytest.approx(1 / 3)]


def test_nms_suppresses_on_any_single_frame():
    high = track([(0, 3), (0, 3), (0, 3)], score=0.9)
    # overlaps `high` only in frame 2 (IoU 3/3 = 1): suppressed although frames 0-1 are disjoint
    dup = track([(4, 6), (4, 6), (0, 3)], score=0.8)
    # IoU with `high` is 2/4 = 0.5 in frame 0 -> suppressed (>= is inclusive)
    half = track([(1, 4), None, None], score=0.7)
    # IoU 1/5 < 0.5 everywhere -> kept
    low = track([(2, 6), None, (5, 6)], score=0.6)
    kept = nms_any_frame([low, half, dup, high])  # input order does not matter: sorted by score
    assert [t.score for t in kept] == [0.9, 0.6]


def test_nms_only_kept_tracks_suppress():
    a = track([(0, 2)], score=0.9)
    b = track([(0, 3)], score=0.8)  # IoU(a, b) = 2/3 -> suppressed
    c = track([(1, 4)], score=0.7)  # IoU(a, c) = 1/4, IoU(b, c) = 2/4: b is suppressed, so c stays
    assert [t.score for t in nms_any_frame([a, b, c])] == [0.9, 0.7]


def test_score_quality_and_min_frames_pipeline():
    t_good = track([(0, 2), (0, 2), None, (0, 2)], score=0.9, ious=[0.9, 0.8, 0.1, 0.5])
    t_once = track([(3, 5), (3, 5), (3, 5), (3, 5)], score=0.8, ious=[0.95, 0.2, 0.3, 0.4])
    t_weak = track([(5, 6)] * 4, score=0.2, ious=[1.0] * 4)
    confident = keep_confident([t_good, t_once, t_weak], 0.25)
    assert [t.score for t in confident] == [0.9, 0.8]
    marked = mark_selected(confident, 0.75)
    # Q = s * iou: t_good 0.81, 0.72, (absent -> selected), 0.45; t_once 0.76, 0.16, 0.24, 0.32
    assert marked[0].selected == [True, False, True, False]
    assert marked[1].selected == [True, False, False, False]
    # t_good has 1 selected non-empty frame (frame 2 is empty): dropped with min_frames=2, kept with 1
    assert drop_rarely_selected(marked, 2) == []
    assert [t.score for t in drop_rarely_selected(marked, 1)] == [0.9, 0.8]
    # confidence-only ablation thresholds the score itself
    conf = mark_selected(confident, 0.85, score="confidence")
    assert conf[0].selected == [True] * 4 and conf[1].selected == [False, False, False, False]


def test_normalise_empty_turns_empty_rles_into_none():
    t = Track(masks=[rle.encode(box(0, 2)), rle.encode(np.zeros((H, W), bool))])
    assert normalise_empty(t).masks[1] is None


def labelled(frames, selected, score=1.0):
    return track(frames, score=score, ious=[0.5] * len(frames), selected=selected)


def test_fusion_frame_by_frame():
    old = labelled([(0, 3), (0, 3), (0, 3)], [True, True, False])
    # same object (IoU 1 in frame 0); frame 1: old selected & new not -> old kept; frame 2: new wins
    new = labelled([(0, 3), (0, 2), (1, 3)], [True, False, True], score=0.7)
    other_old = labelled([(5, 6), None, None], [True, True, True])
    fused = fuse_labels({1: [old, other_old]}, {1: [new]})
    assert len(fused[1]) == 2  # fused in place; the unmatched old track persists
    f = fused[1][0]
    assert f.masks[0] == new.masks[0] and f.masks[1] == old.masks[1] and f.masks[2] == new.masks[2]
    assert f.selected == [True, True, True]
    assert fused[1][1].masks == other_old.masks
    assert old.selected == [True, True, False]  # inputs untouched


def test_fusion_appends_unmatched_and_new_videos():
    old = labelled([(0, 2), (0, 2)], [True, True])
    new_far = labelled([(3, 6), (3, 6)], [True, False])  # IoU 0 -> a new object
    new_half = labelled([(0, 4), None], [True, True])  # IoU 2/4 = 0.5 in frame 0 -> same object (inclusive)
    fused = fuse_labels({1: [old]}, {1: [new_far, new_half], 2: [new_far]})
    # every new frame is selected, so the new track wins everywhere (even its absent frame 1)
    assert [t.masks for t in fused[1]] == [new_half.masks, new_far.masks]
    assert [t.masks for t in fused[2]] == [new_far.masks]
    assert [t.masks for t in replace_labels({1: [old]}, {2: [new_far]})[2]] == [new_far.masks]
    assert 1 not in replace_labels({1: [old]}, {2: [new_far]})


def test_fusion_takes_new_tracks_as_they_are_for_a_video_without_labels():
    # a and b overlap (IoU 2/4 = 0.5 in frame 0) but a video with no earlier labels is not fused with itself,
    # whether it is absent from the old labels or listed with no tracks (official merge_object_based_results)
    a = labelled([(0, 2), (0, 2)], [True, True])
    b = labelled([(0, 4), (3, 4)], [True, True])
    for old in ({}, {1: []}):
        fused = fuse_labels(old, {1: [a, b]})
        assert [t.masks for t in fused[1]] == [a.masks, b.masks]
    # with one earlier track, both new ones are compared with it (and with each other once appended)
    c = labelled([(5, 6), (5, 6)], [True, True])
    assert [t.masks for t in fuse_labels({1: [c]}, {1: [a, b]})[1]] == [c.masks, b.masks]


def test_fusion_rejects_changed_video_length():
    with pytest.raises(ValueError, match="video 1: pseudo-labels of 2 and 3 frames"):
        fuse_labels({1: [labelled([(0, 2)] * 2, [True] * 2)]}, {1: [labelled([(0, 2)] * 3, [True] * 3)]})


def test_eligible_frames_need_every_object_selected():
    a = labelled([(0, 2), (0, 2), None, (0, 2)], [True, False, True, True])
    b = labelled([(3, 5), (3, 5), (3, 5), None], [True, True, False, True])
    assert eligible_frames([a, b]) == [0, 3]
    assert eligible_frames([]) == []


def test_region_sized_frames_are_not_selected():
    from autoqvis.selftrain.select import unselect_regions

    full = track([(0, 6), (0, 2), None], score=1.0, ious=[1.0, 1.0, 1.0])  # frame 0 covers the whole frame
    marked = mark_selected([full], 0.5)
    assert marked[0].selected == [True, True, True]
    assert unselect_regions(marked, max_area=0.9)[0].selected == [False, True, True]
    # (0, 2) touches top, bottom and left: 3 borders
    assert unselect_regions(marked, max_borders=2)[0].selected == [False, False, True]
    assert unselect_regions(marked)[0].selected == [True, True, True]  # the defaults switch the rule off
