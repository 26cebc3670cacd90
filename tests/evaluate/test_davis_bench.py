"""Scoring a model's tracks on DAVIS-style footage (autoqvis.evaluate.davis_bench): the record per sequence."""

import dataclasses
import shutil

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.config import Config
from autoqvis.evaluate.davis_bench import score_tracks, truth
from autoqvis.structures import Track
from tests.conftest import shared_data


@pytest.fixture
def tiny_root(tmp_path):
    """The first 4 frames of one dev sequence, in the DAVIS layout."""
    dev = shared_data("davis2016-dev")
    for part, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
        out = tmp_path / part / "480p" / "dog"
        out.mkdir(parents=True)
        for t in range(4):
            shutil.copy(dev / part / "480p" / "dog" / f"{t:05d}.{ext}", out)
    return tmp_path


def test_the_record_keeps_the_rankings_top_track_without_the_crf(tiny_root):
    gts = truth(tiny_root)
    gt = gts["dog"]
    right = Track(masks=[rle.encode(m) for m in gt], score=0.5, predicted_iou=[0.9] * 4)
    corner = np.zeros_like(gt[0])
    corner[:20, :20] = True  # a patch of background far from the dog
    wrong = Track(masks=[rle.encode(corner)] * 4, score=0.9, predicted_iou=[0.1] * 4)
    cfg = Config()
    for ranking, expected in (("class", "wrong"), ("quality", "right")):
        inference = dataclasses.replace(cfg.inference, track_score=ranking, crf_short_side=0)
        record = score_tracks(
            {"dog": [wrong, right]}, tiny_root, gts, dataclasses.replace(cfg, inference=inference), 2
        )["dog"]
        assert record["no_crf"]["J&F"] == pytest.approx(record["J&F"])  # no CRF configured: the same track
        assert record["no_crf"]["J&F"] == pytest.approx(1.0 if expected == "right" else 0.0, abs=0.05)
        assert record["best_of_2"] == pytest.approx(1.0, abs=0.05)
        assert np.isclose(record["tracks"][1]["J&F"], 1.0, atol=0.05)  # the raw tracks keep their order
