"""The validation-set evaluator's quality samples and scores."""

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.evaluate.models import ModelScores, QualitySamples
from autoqvis.structures import Track


def test_scores_round_trip_through_json_with_and_without_samples():
    scores = ModelScores(
        ytvis={"AP": 10.0, "AP50": 30.0},
        jf=45.5,
        ytvis_alt={"AP": 12.0, "AP50": 33.0},
        alt_ranking="quality",
        spearman_quality=0.5,
        samples=QualitySamples([0.4], [0.5], [1.0], [8.0]),
    )
    assert ModelScores.from_json(scores.to_json()) == scores
    light = scores.to_json(samples=False)
    assert "samples" not in light and light["ytvis_alt"]["ranking"] == "quality"
    assert ModelScores.from_json(light).samples == QualitySamples()


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
    samples = QualitySamples()
    samples.add(truth, tracks)
    # track 0 matches truth 0 (IoU 1, then 4/12); track 1 matches truth 1 (IoU 1; its empty frame is skipped)
    assert samples.true_iou == pytest.approx([1.0, 4 / 12, 1.0])
    assert samples.quality == pytest.approx([0.4, 0.2, 0.225])
    assert samples.confidence == [0.5, 0.5, 0.25]
    assert samples.area == [8.0, 8.0, 8.0]


def test_one_table_of_scores_for_every_command():
    from autoqvis.evaluate.models import SUMMARY, ModelScores
    from autoqvis.evaluate.ytvis import METRIC_NAMES

    m0 = ModelScores(
        ytvis=dict.fromkeys(METRIC_NAMES, 10.0), jf=40.0, ytvis_alt={"AP50": 12.5}, alt_ranking="class"
    )
    r1 = ModelScores(ytvis={**dict.fromkeys(METRIC_NAMES, 20.0), "AP75": None}, jf=None)
    table = ModelScores.table(
        [("M0", m0), ("round 1", r1), ("round 2", None)], (*SUMMARY, "alt:AP50"), {"kept": [None, 7, 9]}
    )
    head, rule, *rows = table.splitlines()
    assert (
        head.split()[:7] == ["model", "AP", "AP50", "AP75", "AR10", "J&F", "AP50"] and "class-ranked" in head
    )
    assert set(rule) == {"-"}
    assert rows[0].split() == ["M0", "10.00", "10.00", "10.00", "10.00", "40.00", "12.50", "-"]
    assert rows[1].split() == ["round", "1", "20.00", "20.00", "-", "20.00", "-", "-", "7"]
    assert rows[2].split() == ["round", "2", "-", "-", "-", "-", "-", "-", "9"]
    # without the other ranking anywhere, its column is left out; every score field can be a column
    alone = ModelScores.table([("r1", r1)], ("AP", "alt:AP50", "spearman_quality"))
    assert "ranked" not in alone and "Spearman Q" in alone
    with pytest.raises(ValueError, match="unknown column"):
        ModelScores.table([("r1", r1)], ("mAP",))
