"""``autoqvis evaluate --weights W --gt GT.json --gt-frames DIR``: a model run on labelled videos and scored
with the evaluator the self-training loop uses, on the ground truth's own video ids."""

import json

import numpy as np
import torch

from autoqvis.cli import main
from autoqvis.config import load_config
from autoqvis.demo.pipeline import _write_frames, truth_dataset
from autoqvis.evaluate.models import ModelEvaluator
from autoqvis.io.world import WorldConfig, render_video
from autoqvis.io.ytvis import save_ytvis
from autoqvis.model import build_model, save_model


def test_evaluate_a_model_on_labelled_videos(tmp_path, capsys):
    rng = np.random.default_rng(0)
    videos = [render_video(rng, WorldConfig(height=48, width=64, num_frames=3)) for _ in range(2)]
    for i, v in enumerate(videos):
        _write_frames(v.frames, tmp_path / "frames" / f"val_{i:03d}")
    save_ytvis(truth_dataset([v.masks for v in videos], "val"), tmp_path / "gt.json")
    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "model")
    args = ["evaluate", "--gt", str(tmp_path / "gt.json"), "--gt-frames", str(tmp_path / "frames")]
    args += ["--weights", str(tmp_path / "model"), "--device", "cpu", "--set", "inference.short_side=48"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and "J&F" in printed
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    cfg = load_config([], ["inference.short_side=48", "model.preset=tiny"])
    direct = ModelEvaluator(tmp_path / "gt.json", tmp_path / "frames", cfg)(tmp_path / "model")
    assert saved["ytvis"] == direct.ytvis and saved["jf"] == direct.jf
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--weights", str(tmp_path / "model")]) == 2
    assert "needs --weights W, --gt GT.json and --gt-frames DIR" in capsys.readouterr().err
