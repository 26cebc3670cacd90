"""Label-free criteria for choosing among M0 and the rounds, on hand-made predictions."""

import functools
import hashlib

import pytest

from autoqvis.config import SelectionConfig
from autoqvis.selftrain.pick import (
    KEPT_M0,
    holdout_names,
    label_free_per_video,
    label_free_scores,
    pick_label_free,
    pick_safe,
    teacher_agreement,
    teacher_frames,
)
from tests.selftrain.toy import mask
from tests.selftrain.toy import track as toy_track

track = functools.partial(toy_track, q=0.8)  # these cases' predicted IoU unless one says otherwise


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
    assert scores[0] == {"teacher": None, "quality": None, "stability": None, "agreement": None}
    assert pick_label_free(scores, "quality") == 1  # nothing scored: the last
    same = [track([(0, 4), (0, 4)]), track([(0, 4), (0, 4)], score=0.8)]  # the second is an NMS duplicate
    scores = label_free_scores([{1: same}, {1: same[:1]}], SelectionConfig())
    assert scores[0] == scores[1]
    assert pick_label_free(scores, "quality") == 0
    with pytest.raises(ValueError, match="label-free criterion"):
        pick_label_free(scores, "best")


def test_holdout_is_deterministic_by_name_never_empty_nor_everything():
    names = [f"video_{i:02d}" for i in range(40)]
    held = holdout_names(names, 0.2)
    assert held == holdout_names(list(reversed(names)), 0.2)  # by name, not by order
    assert 3 <= len(held) <= 15
    assert holdout_names([*names[:3], "x"], 0.2) == holdout_names(["x", *names[:3]], 0.2)
    assert len(holdout_names(names[:2], 0.01)) == 1  # at least one
    assert len(holdout_names(names[:5], 0.99)) == 4  # never every video
    assert holdout_names(names, 0.0) == set() and holdout_names(names[:1], 0.5) == set()


def test_holdout_takes_at_most_its_share_even_when_several_names_hash_low():
    rank = {n: int(hashlib.sha256(n.encode()).hexdigest()[:12], 16) / 16**12 for n in map(str, range(200))}
    low = sorted((n for n in rank if rank[n] < 0.2), key=rank.get)[:2]  # two names that both hash below 0.2
    high = [n for n in rank if rank[n] > 0.5][:2]
    assert holdout_names([*low, *high], 0.2) == {low[0]}  # ceil(0.2 x 4) = 1, the lowest hash
    assert len(holdout_names([str(i) for i in range(10)], 0.2)) <= 2


def test_teacher_agreement_counts_missed_objects_and_objects_on_background():
    obj = track([(0, 4), (0, 4), (0, 4), (0, 4)])
    background = track([(4, 8), (4, 8), (4, 8), (4, 8)], score=0.8)
    teacher = {1: [mask(0, 4)]}  # the teacher cut one object in frame 1
    assert teacher_agreement([obj], teacher) == 1.0
    assert teacher_agreement([obj, background], teacher) == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert teacher_agreement([], teacher) == 0.0  # the teacher's object is missed
    assert teacher_agreement([obj], {1: []}) == 0.0  # an object where the teacher cut nothing
    assert teacher_agreement([], {1: []}) is None
    assert teacher_frames(8) == [1, 4, 7] and teacher_frames(1) == [0]


def test_teacher_is_scored_on_held_out_videos_only_and_the_rest_on_the_others():
    obj = [track([(0, 4), (0, 4)])]
    per = label_free_per_video([{1: obj, 2: obj}], SelectionConfig(), {2: {1: [mask(0, 4)]}}, [2])[0]
    assert per["teacher"] == {2: 1.0}
    assert set(per["quality"]) == {1} and set(per["stability"]) == {1}
    assert label_free_scores([{1: obj, 2: obj}], SelectionConfig())[0]["teacher"] is None  # no teacher


def test_safe_pick_keeps_m0_unless_a_round_is_better_beyond_the_noise():
    m0 = {v: 0.5 for v in range(6)}
    clearly = {v: 0.6 + 0.01 * (v % 2) for v in range(6)}
    noisy = {v: 0.5 + (0.2 if v % 2 else -0.18) for v in range(6)}  # +0.01 on average, SE 0.09
    worse = {v: 0.4 for v in range(6)}
    chosen, why = pick_safe([m0, noisy, worse], 2.0)
    assert chosen == 0 and why.startswith(KEPT_M0) and "model 1: +0.010" in why
    assert pick_safe([m0, clearly, noisy], 2.0)[0] == 1
    assert pick_safe([m0, noisy, clearly], 2.0)[0] == 2
    much = {v: x + 0.1 for v, x in clearly.items()}
    assert pick_safe([m0, clearly, much], 2.0)[0] == 2  # the largest gain among those beyond the noise
    # paired by video: only the videos both models scored count; one shared video tells nothing
    assert pick_safe([m0, {0: 0.9}], 2.0)[0] == 0
    assert pick_safe([], 2.0) == (0, KEPT_M0)
    assert pick_safe([m0, {}], 2.0)[0] == 0
