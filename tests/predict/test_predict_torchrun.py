"""`torchrun --nproc-per-node 2 -m autoqvis predict`: videos sharded across ranks, gathered on rank 0."""

import json
import shutil
import subprocess
import sys

import torch

from autoqvis.model import build_model, save_model
from tests.conftest import shared_data


def test_predict_under_torchrun_shards_and_gathers(tmp_path):
    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "model")
    src = shared_data("davis2016-dev", "JPEGImages", "480p")
    for seq in ("blackswan", "dog", "car-shadow"):
        (tmp_path / "videos" / seq).mkdir(parents=True)
        for name in ("00000.jpg", "00001.jpg"):
            shutil.copy(src / seq / name, tmp_path / "videos" / seq / name)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "-m",
        "autoqvis",
        "predict",
        str(tmp_path / "videos"),
        "--weights",
        str(tmp_path / "model"),
        "--out",
        str(tmp_path / "out"),
        "--short-side",
        "64",
        "--no-overlay",
        "-q",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert sorted({r["video_name"] for r in results}) == ["blackswan", "car-shadow", "dog"]
    assert len(list((tmp_path / "out" / "results").glob("*.json"))) == 3
