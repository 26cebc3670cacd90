"""Typed results of a self-training run: picking the selected model, JSON round trips."""

from pathlib import Path

import pytest

from autoqvis.evaluate.models import ModelScores
from autoqvis.selftrain.loop import ModelResult, SelfTrainResult, pick_best
from autoqvis.selftrain.pseudo_label import SelectionStats


def _model(ap50=None, jf=None):
    scores = None if ap50 is None else ModelScores(ytvis={"AP50": ap50, "AP": 1.0}, jf=jf)
    return ModelResult("m", Path("m"), 0, scores=scores)


def test_pick_best_by_metric_first_on_ties_and_last_without_scores():
    assert pick_best([_model(30.0), _model(38.5), _model(32.0)], "AP50") == 1
    assert pick_best([_model(40.0), _model(40.0), _model(39.0)], "AP50") == 0  # M0 kept on a tie
    assert pick_best([_model(1.0, jf=50.0), _model(2.0, jf=40.0)], "JF") == 0
    assert pick_best([_model(), _model(), _model()], "AP50") == 2  # nothing scored: the last round
    with pytest.raises(ValueError, match="AP50"):
        ModelScores(ytvis={}).value("mAP")


def test_model_results_round_trip_and_best_json():
    stats = SelectionStats()
    stats.fused.objects = 7
    models = [_model(40.0), ModelResult("round 1", Path("r1/model"), 1, stats, ModelScores({"AP50": 41.0}))]
    assert [ModelResult.from_json(m.to_json()) for m in models] == models
    assert models[1].pseudo_labels == 7 and models[0].pseudo_labels is None
    result = SelfTrainResult(models, pick_best(models, "AP50"), "highest AP50 on the validation set", "AP50")
    assert result.selected_model.name == "round 1"
    assert result.best_json() == {
        "model": "round 1",
        "path": "r1/model",
        "metric": "AP50",
        "value": 41.0,
        "rule": "highest AP50 on the validation set",
        "label_free_criterion": None,
        "label_free": {"m": None, "round 1": None},
    }
