"""The validation-set evaluator's quality samples and scores."""

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.eval.models import ModelScores, QualitySamples
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
