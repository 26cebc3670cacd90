"""A model carries the inference settings it was made for: a model folder trained under one profile predicts
at that profile's settings through ``autoqvis.segment`` and ``predict --weights`` without ``--config``; an
explicit setting still wins, and the output says which differ."""

import json
import logging

import numpy as np
import pytest
import yaml
from PIL import Image

import autoqvis
from autoqvis.cli import main
from autoqvis.config import InferenceConfig
from autoqvis.errors import CheckpointError
from autoqvis.io.world import WorldConfig, render_video
from autoqvis.model.build import INFERENCE_FILE, read_inference
from tests.conftest import TINY_SETTINGS, set_args

# a profile of its own: not the inference defaults (short side 360, top 10 tracks, class ranking)
PROFILE = {"inference": {"short_side": 40, "top_k": 3, "track_score": "quality"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained for one iteration under :data:`PROFILE`."""
    root = tmp_path_factory.mktemp("trained")
    profile = root / "profile.yaml"
    profile.write_text(yaml.safe_dump(PROFILE))
    args = ["train", "--out", str(root / "run"), "--world", "2", "--config", str(profile)]
    assert main([*args, *set_args(TINY_SETTINGS, "training.max_iters=1", "inference.short_side=40")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos") / "clip"
    folder.mkdir()
    for t, frame in enumerate(
        render_video(np.random.default_rng(3), WorldConfig(48, 64, num_frames=4)).frames
    ):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
    return folder


def _short_sides(monkeypatch) -> list[int | None]:
    """The short side every video is opened at by the predictor."""
    import autoqvis.predict.predict as predict

    sides, opened = [], predict.open_video

    def spy(path, short_side=None, max_size=1333):
        sides.append(short_side)
        return opened(path, short_side, max_size)

    monkeypatch.setattr(predict, "open_video", spy)
    return sides


def test_the_model_folder_records_its_inference_settings(run):
    stored = json.loads((run / "model" / INFERENCE_FILE).read_text())
    assert (stored["short_side"], stored["top_k"], stored["track_score"]) == (40, 3, "quality")
    assert "device" not in stored and "token_cache_mb" not in stored  # where it runs is the user's
    own = read_inference(run / "model")
    assert own == InferenceConfig(short_side=40, top_k=3, track_score="quality")
    assert autoqvis.load_model(run / "model").own_inference == own


def test_segment_runs_the_models_own_settings_unless_told(run, video, monkeypatch, caplog):
    model = autoqvis.load_model(run / "model")
    sides = _short_sides(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="autoqvis"):
        result = autoqvis.segment(model, video)
    assert sides == [40] and len(result.tracks) == 3  # its short side and top-k, not 360 and 10
    assert "differ" not in caplog.text
    sides.clear()
    with caplog.at_level(logging.WARNING, logger="autoqvis"):
        result = autoqvis.segment(model, video, top_k=5)  # a field given by name changes only that field
    assert sides == [40] and len(result.tracks) == 5
    assert "top_k 3 -> 5" in caplog.text
    sides.clear()
    result = autoqvis.segment(model, video, InferenceConfig())  # an explicit section wins whole
    assert sides == [360] and len(result.tracks) == 10
    assert "short_side 40 -> 360" in caplog.text


def test_predict_runs_the_models_own_settings_and_says_when_told_otherwise(run, video, tmp_path, capsys):
    out = tmp_path / "own"
    assert (
        main(["predict", str(video), "--weights", str(run / "model"), "--out", str(out), "--no-overlay"]) == 0
    )
    saved = yaml.safe_load((out / "config.yaml").read_text())["inference"]
    assert (saved["short_side"], saved["top_k"], saved["track_score"]) == (40, 3, "quality")
    assert len(json.loads((out / "predictions.json").read_text())) == 3
    assert "differ" not in capsys.readouterr().out
    out = tmp_path / "told"
    args = ["predict", str(video), "--weights", str(run / "model"), "--out", str(out), "--no-overlay"]
    assert main([*args, "--set", "inference.top_k=4", "--short-side", "48"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["inference"]
    assert (saved["short_side"], saved["top_k"], saved["track_score"]) == (48, 4, "quality")
    said = capsys.readouterr().out
    assert "short_side 40 -> 48" in said and "top_k 3 -> 4" in said and "track_score" not in said


def test_weights_without_settings_keep_the_defaults_and_damaged_settings_are_refused(run, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(run / "model", folder)
    (folder / INFERENCE_FILE).unlink()
    assert read_inference(folder) is None and autoqvis.load_model(folder).own_inference is None
    (folder / INFERENCE_FILE).write_text(json.dumps({"short_side": 0}))
    with pytest.raises(CheckpointError, match=r"inference\.short_side"):
        read_inference(folder)


def test_evaluate_scores_a_model_at_its_own_settings(run, video, tmp_path, capsys):
    from autoqvis.demo.pipeline import truth_dataset
    from autoqvis.io.ytvis import save_ytvis

    masks = np.zeros((1, 4, 48, 64), bool)
    masks[0, :, 10:30, 20:40] = True
    dataset = truth_dataset([masks], "clip")
    dataset.videos[0].file_names = [f"clip/{t:05d}.jpg" for t in range(4)]
    save_ytvis(dataset, tmp_path / "gt.json")
    args = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--gt-frames", str(video.parent)]
    args += ["--weights", str(run / "model"), "--out", str(tmp_path / "own")]
    assert main(args) == 0
    saved = yaml.safe_load((tmp_path / "own" / "config.yaml").read_text())["inference"]
    assert (saved["short_side"], saved["top_k"], saved["track_score"]) == (40, 3, "quality")
    assert "differ" not in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "told"), "--set", "inference.track_score=class"]) == 0
    assert "track_score quality -> class" in capsys.readouterr().err
