"""``--weights RUN``: a self-training run folder stands for the model its best.json names."""

from __future__ import annotations

import json

import pytest

from autoqvis.commands.common import model_weights
from autoqvis.errors import DataError


def _model(folder):
    folder.mkdir(parents=True)
    (folder / "model.json").write_text("{}")
    return folder


def test_a_run_folder_stands_for_its_best_model(tmp_path):
    run = tmp_path / "run"
    _model(run / "m0" / "model")
    best = _model(run / "round_2" / "model")
    (run / "best.json").write_text(json.dumps({"model": "round 2", "path": str(best)}))
    assert model_weights(run) == best
    # the run moved: best.json's absolute path is gone, the model is found inside the run
    moved = tmp_path / "moved"
    run.rename(moved)
    assert model_weights(moved) == moved / "round_2" / "model"
    # a model folder, a weights file or a missing path are passed through unchanged
    assert model_weights(moved / "m0" / "model") == moved / "m0" / "model"
    assert model_weights(tmp_path / "w.pth") == tmp_path / "w.pth"


def test_a_damaged_best_json_says_what_to_pass(tmp_path):
    (tmp_path / "best.json").write_text("{not json")
    with pytest.raises(DataError, match=r"best.json cannot be read.*m0/model"):
        model_weights(tmp_path)
    (tmp_path / "best.json").write_text(json.dumps({"path": str(tmp_path / "round_9" / "model")}))
    with pytest.raises(DataError, match="holds no model"):
        model_weights(tmp_path)
