"""`autoqvis selftrain` end to end on tiny data (M0 + two rounds, scored on ground truth), and resumption after
SIGKILL at several points giving the same pseudo-labels and metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoqvis import rle
from autoqvis.io.world import WorldConfig, render_video
from autoqvis.io.ytvis import YTVISDataset, save_ytvis
from autoqvis.selftrain.pick import KEPT_M0, pick_safe
from autoqvis.structures import Track, VideoInfo
from tests.conftest import TINY_SETTINGS

SETTINGS = [
    *TINY_SETTINGS,
    "training.max_iters=3",
    "training.checkpoint_period=1",
    "training.deterministic=true",
    "rounds.iters=3",
    "rounds.batch_size=2",
    "selection.score_min=0",
    "selection.quality_min=0",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    infos, tracks = [], {}
    for v in range(1, 4):
        video = render_video(rng, WorldConfig(height=64, width=80, num_frames=6))
        names = []
        for t, frame in enumerate(video.frames):
            (root / "videos" / f"v{v}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "videos" / f"v{v}" / f"{t:05d}.jpg")
            names.append(f"v{v}/{t:05d}.jpg")
        infos.append(VideoInfo(id=v, width=80, height=64, length=6, file_names=names, name=f"v{v}"))
        tracks[v] = [
            Track(masks=[rle.encode(m) if m.any() else None for m in obj]) for obj in video.masks if obj.any()
        ]
    save_ytvis(YTVISDataset(videos=infos, tracks=tracks), root / "gt.json")
    return root


def _cmd(data: Path, out: Path) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "autoqvis",
        "selftrain",
        "--videos",
        str(data / "videos"),
        "--world",
        "8",
        "--out",
        str(out),
        "--val",
        str(data / "gt.json"),
        "--val-frames",
        str(data / "videos"),
        "-q",
    ]
    for s in SETTINGS:
        cmd += ["--set", s]
    return cmd


def _kill_when(cmd: list[str], marker: Path, timeout: float = 120) -> None:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[2]
    )
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _result(out: Path) -> tuple:
    labels = json.loads((out / "round_2" / "pseudo_labels.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return labels["annotations"], [(r["model"], r.get("pseudo_labels"), r["metrics"]) for r in summary]


def test_two_rounds_end_to_end_and_resume_after_sigkill(data, tmp_path):
    straight = tmp_path / "straight"
    done = subprocess.run(_cmd(data, straight), capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round 2" in done.stdout and "AP50" in done.stdout and "selected model:" in done.stdout
    summary = json.loads((straight / "summary.json").read_text())
    best = json.loads((straight / "best.json").read_text())
    ap50 = [r["metrics"]["ytvis"]["AP50"] for r in summary]
    assert best["metric"] == "AP50" and best["value"] == max(ap50)
    assert [r["model"] for r in summary if r.get("selected")] == [best["model"]]
    assert "samples" not in summary[0]["metrics"]  # they stay in the round's metrics.json
    page = (straight / "report.html").read_text()
    assert (
        "(selected)" in page and "selection funnel" in page and "Quality predictor" in page and "<img" in page
    )
    for k in (1, 2):
        r = straight / f"round_{k}"
        for name in (
            "pseudo_labels.json",
            "training_set.json",
            "selection.json",
            "metrics.json",
            "model/model.json",
        ):
            assert (r / name).is_file(), f"round_{k}/{name}"
        stats = json.loads((r / "selection.json").read_text())
        assert list(stats)[:5] == ["predicted", "nms", "score", "quality", "min_frames"]
    # killed while pseudo-labelling, while training round 1, and while selecting round 2
    killed = tmp_path / "killed"
    for marker in ("round_1/predictions/1.json", "round_1/last.pt", "round_2/predictions/3.json"):
        _kill_when(_cmd(data, killed), killed / marker)
    finished = subprocess.run(
        _cmd(data, killed), capture_output=True, text=True, cwd=Path(__file__).parents[2]
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _result(killed) == _result(straight)


def test_selftrain_from_unlabeled_videos_and_plain_images(data, tmp_path):
    """No pseudo-mask file: MaskCut runs on --synthetic-images first (here a random ViT-S/16), then M0 and a
    round; no ground truth anywhere, so the last round is the selected model."""
    import torch
    from safetensors.torch import save_file

    from autoqvis.model.vit import build_vit

    torch.manual_seed(0)
    save_file(build_vit("dino_vits16").state_dict(), tmp_path / "vit.safetensors")
    images = tmp_path / "photos"
    images.mkdir()
    for i, frame in enumerate(sorted((data / "videos" / "v1").glob("*.jpg"))[:3]):
        (images / f"p{i}.jpg").write_bytes(frame.read_bytes())
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "autoqvis", "selftrain", "--videos", str(data / "videos")]
    cmd += ["--synthetic-images", str(images), "--out", str(out), "-q"]
    for s in [*SETTINGS, "selftrain.num_rounds=1", "discovery.arch=dino_vits16", "discovery.fixed_size=128"]:
        cmd += ["--set", s]
    cmd += ["--set", f"discovery.weights={tmp_path / 'vit.safetensors'}", "--set", "discovery.crf=false"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    masks = json.loads((out / "discovery" / "pseudo_masks.json").read_text())
    assert len(masks["images"]) == 3 and masks["annotations"]
    best = json.loads((out / "best.json").read_text())
    assert best["metric"] is None and best["label_free_criterion"] == "teacher"
    # no ground truth: the safe rule on the MaskCut teacher's agreement on the held-out videos (M0 unless a
    # round beats it beyond the noise, paired by video)
    per = json.loads((out / "label_free.json").read_text())
    names = ["M0 (synthetic only)", "round 1"]
    assert list(per["models"]) == names and len(per["held_out"]) >= 1
    assert set(best["label_free"]) == set(names) and "teacher" in best["label_free"]["round 1"]
    teacher = [{int(v): x for v, x in per["models"][n]["teacher"].items()} for n in names]
    assert sorted(teacher[0]) == per["held_out"]  # scored on exactly the held-out videos
    assert best["model"] == names[pick_safe(teacher, 2.0)[0]]
    if best["model"] == names[0]:
        assert KEPT_M0 in best["rule"] and KEPT_M0 in done.stdout
    # the held-out videos gave round 1 no pseudo-label
    labels = json.loads((out / "round_1" / "pseudo_labels.json").read_text())
    assert not [a for a in labels["annotations"] if a["video_id"] in per["held_out"]]
    assert f"selected model: {best['model']}" in done.stdout and (out / "report.html").is_file()
    assert (out / "round_1" / "model_predictions").is_dir()
