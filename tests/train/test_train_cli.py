"""`autoqvis train` end to end on demo-world clips, resume, then `predict` with the trained model."""

import json
import shutil

from autoqvis.cli import main
from tests.conftest import TINY_SETTINGS, set_args, shared_data

ARGS = set_args(
    TINY_SETTINGS, "training.max_iters=4", "training.log_period=2", "training.checkpoint_period=2"
)


def test_train_resume_and_predict(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--world", "6", *ARGS]) == 0
    assert (run / "model" / "model.safetensors").is_file() and (run / "config.yaml").is_file()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [2, 4]
    # a finished run is not retrained; --no-resume starts over
    stamp = (run / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(["train", "--out", str(run), "--world", "6", *ARGS]) == 0
    assert (run / "model" / "model.safetensors").stat().st_mtime_ns == stamp
    # the trained model predicts on real footage
    frames = tmp_path / "frames" / "swan"
    frames.mkdir(parents=True)
    for name in ("00000.jpg", "00001.jpg", "00002.jpg"):
        shutil.copy(shared_data("davis2016-dev", "JPEGImages", "480p", "blackswan") / name, frames / name)
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(frames),
                "--weights",
                str(run / "model"),
                "--out",
                str(out),
                "--short-side",
                "96",
                "--no-overlay",
            ]
        )
        == 0
    )
    results = json.loads((out / "predictions.json").read_text())
    assert len(results) == 10 and all(len(r["segmentations"]) == 3 for r in results)


def test_train_needs_data(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *ARGS]) == 2
    assert "nothing to train on" in capsys.readouterr().err
