"""Reruns of every resumable unit: the same settings resume, other settings stop with a message naming the key
that changed (and the files stay as they were), ``--no-resume`` / ``resume=False`` starts that unit over."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis import rle
from autoqvis.cli import main
from autoqvis.config import Config, load_config, save_config, saved_config
from autoqvis.demo.pipeline import DemoPlan, make_world
from autoqvis.errors import StaleOutputError
from autoqvis.evaluate.models import ModelScores
from autoqvis.evaluate.ytvis import METRIC_NAMES
from autoqvis.io.video import find_videos
from autoqvis.io.world import WorldConfig, render_image, render_video
from autoqvis.model import build_model, save_model
from autoqvis.runs.fingerprint import Unit, describe_changes, open_unit
from autoqvis.selftrain.loop import SelfTrainRun
from autoqvis.selftrain.videos import cache_videos
from autoqvis.structures import Track

TINY_TRAIN = [
    "--set",
    "model.preset=tiny",
    "--set",
    "training.max_iters=1",
    "--set",
    "training.num_points=64",
    "--set",
    "synthesis.num_frames=2",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    torch.manual_seed(0)
    save_model(build_model("tiny"), root / "model")
    torch.manual_seed(1)
    save_model(build_model("tiny"), root / "model2")
    rng = np.random.default_rng(0)
    for name, frames in (("a", 3), ("b", 2), ("c", 2)):
        video = render_video(rng, WorldConfig(height=48, width=64, num_frames=frames))
        (root / "videos" / name).mkdir(parents=True)
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(root / "videos" / name / f"{t:05d}.jpg", quality=95)
    shutil.copytree(root / "videos" / "c", root / "extra" / "c")
    shutil.rmtree(root / "videos" / "c")
    images, annotations = [], []
    (root / "images").mkdir()
    for i in range(2):
        image, masks = render_image(rng, WorldConfig(height=64, width=80, min_objects=2, max_objects=2))
        Image.fromarray(image).save(root / "images" / f"img{i}.png")
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": 64, "width": 80})
        annotations += [  # (ids numbered after the list is built: each annotation its own)
            {"id": len(annotations) + k + 1, "image_id": i + 1, "segmentation": rle.encode(m)}
            for k, m in enumerate(m for m in masks if m.any())
        ]
    (root / "pseudo.json").write_text(
        json.dumps(
            {"images": images, "annotations": annotations, "info": {"frames_root": str(root / "images")}}
        )
    )
    return root


def _stamps(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# -- the training run ---------------------------------------------------------------------------------------


def test_training_run(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--world", "3", *TINY_TRAIN]
    assert main(args) == 0
    before = _stamps(run)
    assert main(args) == 0  # the same settings: the finished model is kept
    assert _stamps(run) == before
    # killed before the model was saved, rerun with another lr and batch: not resumed with the old ones
    shutil.rmtree(run / "model")
    before = _stamps(run)
    changed = [*args, "--set", "training.lr=1e-3", "--set", "training.batch_size=1"]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "training.batch_size 2 -> 1; training.lr 2e-05 -> 0.001" in err and "--no-resume" in err
    assert _stamps(run) == before  # config.yaml still describes last.pt
    assert main(["train", "--out", str(run), "--world", "4", *TINY_TRAIN]) == 2  # other sources
    assert "sources[0].size 3 -> 4" in capsys.readouterr().err
    assert main([*changed, "--no-resume"]) == 0
    assert "lr: 0.001" in (run / "config.yaml").read_text()
    assert "# command: autoqvis train" in (run / "config.yaml").read_text()
    iterations = [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iterations == sorted(set(iterations))  # started over: no lines of the earlier run
    # a finished run whose model was deleted and checkpoint damaged: said, and made again
    shutil.rmtree(run / "model")
    (run / "last.pt").write_bytes(b"\x80\x02 damaged")
    assert main(changed) == 0
    said = " ".join("".join(capsys.readouterr()).split())  # (the log wraps long lines)
    assert "the training run:" in said and "making it again" in said
    assert (run / "model" / "model.json").is_file()
    # an unfinished run's damaged checkpoint (killed before it ended: no record) says how to recover
    record = json.loads((run / "fingerprint.json").read_text())
    del record["done"]
    (run / "fingerprint.json").write_text(json.dumps(record))
    shutil.rmtree(run / "model")
    (run / "last.pt").write_bytes(b"\x80\x02 damaged")
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "cannot load checkpoint" in err and "--no-resume" in err and f"delete {run / 'last.pt'}" in err


def test_a_checkpoint_of_another_fingerprint_is_not_resumed(tmp_path):
    from tests.train.test_trainer_toy import make

    first = make(tmp_path, 5)
    first.fingerprint = {"training": {"lr": 0.01}}
    first.train()
    second = make(tmp_path, 10)
    second.fingerprint = {"training": {"lr": 0.02}}
    with pytest.raises(
        StaleOutputError, match=r"last.pt was written by a training run .*training.lr 0.01 -> 0.02"
    ):
        second.train(resume=True)


# -- predict ------------------------------------------------------------------------------------------------


def test_predicted_videos(data, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        "predict",
        str(data / "videos"),
        "--weights",
        str(data / "model"),
        "--out",
        str(out),
        "--no-overlay",
    ]
    flags = ["--short-side", "48", "--window", "2", "--overlap", "1", "--top-k", "5"]
    assert main([*args, *flags]) == 0
    config = (out / "config.yaml").read_text()
    assert all(
        f"  {k}: {v}\n" in config
        for k, v in (("short_side", 48), ("window", 2), ("overlap", 1), ("top_k", 5))
    )
    assert "# command: autoqvis predict" in config and "--top-k 5" in config
    before = _stamps(out)
    assert main([*args, *flags]) == 0  # the same settings: every video is done
    assert {k: v for k, v in _stamps(out).items() if k.startswith("results")} == {
        k: v for k, v in before.items() if k.startswith("results")
    }
    assert main([*args, *flags[:-1], "3"]) == 2
    assert "inference.top_k 5 -> 3" in capsys.readouterr().err
    assert (out / "config.yaml").read_text() == config
    # a new video joins the input (copies keep their modification times): the others are reused
    shutil.copytree(data / "extra" / "c", tmp_path / "more" / "c")
    for name in ("a", "b"):
        shutil.copytree(data / "videos" / name, tmp_path / "more" / name)
    results = {k: v for k, v in _stamps(out).items() if k.startswith("results")}
    assert main(["predict", str(tmp_path / "more"), *args[2:], *flags]) == 0
    assert all(_stamps(out)[k] == v for k, v in results.items()) and (out / "results" / "c.json").is_file()
    # a video that changed is not reused
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "more" / "c" / "00000.jpg")
    assert main(["predict", str(tmp_path / "more"), *args[2:], *flags]) == 2
    assert "the predictions of video c" in (err := capsys.readouterr().err) and "video.bytes" in err
    assert main([*args, *flags[:-1], "3", "--no-resume"]) == 0
    results = json.loads((out / "predictions.json").read_text())
    assert max(r["track_id"] for r in results) <= 3
    assert "top_k: 3" in (out / "config.yaml").read_text()


# -- discovery ----------------------------------------------------------------------------------------------


def test_discovery_run(data, tmp_path, fake_discovery):
    from autoqvis.discover import run as discovery

    calls, cfg = fake_discovery
    out = tmp_path / "d" / "pseudo.json"

    def run(cfg, resume=True):
        items = discovery.image_items(data / "images")
        return discovery.discover(
            items,
            out,
            cfg,
            lambda: "vit",
            source=discovery.image_source(data / "images"),
            frames_root=data / "images",
            resume=resume,
        )

    run(cfg)
    assert calls and out.is_file()
    calls.clear()
    assert len(run(cfg)["images"]) == 2 and not calls  # finished with these settings: returned as is
    other = load_config(
        overrides=[f"discovery.weights={tmp_path / 'w.safetensors'}", "discovery.tau=0.3"]
    ).discovery
    with pytest.raises(StaleOutputError, match=r"discovery.tau 0.15 -> 0.3"):
        run(other)
    (tmp_path / "w.safetensors").write_bytes(b"other weights")
    with pytest.raises(StaleOutputError, match=r"weights.sha256"):
        run(cfg)
    run(other, resume=False)
    assert calls


# -- synthesize ---------------------------------------------------------------------------------------------


def test_synthesized_clips(data, tmp_path, capsys):
    out = tmp_path / "synth"
    args = [
        "synthesize",
        "--masks",
        str(data / "pseudo.json"),
        "--out",
        str(out),
        "--num",
        "2",
        "--preview",
        "0",
    ]
    args += [
        "--set",
        "synthesis.short_sides=[64]",
        "--set",
        "synthesis.crop_min=60",
        "--set",
        "synthesis.crop_max=64",
    ]
    assert main(args) == 0
    frames = {k: v for k, v in _stamps(out).items() if k.startswith("frames")}
    assert main(args) == 0
    assert {k: v for k, v in _stamps(out).items() if k.startswith("frames")} == frames
    assert main([*args, "--set", "synthesis.num_frames=2"]) == 2
    assert "synthesis.num_frames 3 -> 2" in capsys.readouterr().err
    assert main([*args, "--set", "synthesis.num_frames=2", "--no-resume"]) == 0
    assert len(list((out / "frames" / "clip_000001").glob("*.jpg"))) == 2


# -- self-training units ------------------------------------------------------------------------------------


def _video_dataset(data: Path, tmp_path: Path, short_side: int = 48):
    return cache_videos(find_videos(data / "videos"), tmp_path / "st", short_side)[0]


def test_frame_cache(data, tmp_path):
    _video_dataset(data, tmp_path, 48)
    _video_dataset(data, tmp_path, 48)
    with pytest.raises(StaleOutputError, match=r"short_side 48 -> 32"):
        _video_dataset(data, tmp_path, 32)
    dataset, _ = cache_videos(find_videos(data / "videos"), tmp_path / "st", 32, resume=False)
    assert dataset.videos[0].height == 32


def _predictions(dataset) -> dict[int, list[Track]]:
    out = {}
    for v in dataset.videos:
        mask = np.zeros((v.height, v.width), bool)
        mask[4:20, 4:30] = True
        m = rle.encode(mask)
        out[v.id] = [Track(masks=[m] * v.length, score=0.9, predicted_iou=[0.9] * v.length)]
    return out


def test_round_predictions_selection_and_scores(data, tmp_path):
    cfg = load_config(overrides=["model.preset=tiny", "inference.short_side=48", "selection.quality_min=0.5"])
    videos = _video_dataset(data, tmp_path)
    run = SelfTrainRun(cfg, tmp_path / "st", videos, [])
    # a round's predictions: the model's identity and the options
    run.pseudo_label(1, data / "model")
    stamps = _stamps(tmp_path / "st" / "round_1" / "predictions")
    run.pseudo_label(1, data / "model")
    assert _stamps(tmp_path / "st" / "round_1" / "predictions") == stamps
    with pytest.raises(
        StaleOutputError, match=r"round 1's predictions\) was made with other .*model.model.safetensors"
    ):
        run.pseudo_label(1, data / "model2")
    # the selection: its settings and the predictions' identity
    predictions = _predictions(videos)
    _, stats, _ = run.select_and_fuse(1, predictions, None)
    assert run.select_and_fuse(1, predictions, None)[1].to_json() == stats.to_json()
    # settings that steer only the loop (num_rounds) or the rounds' training keep the selection
    more_rounds = SelfTrainRun(
        load_config(base=cfg, overrides=["selftrain.num_rounds=3"]), tmp_path / "st", videos, []
    )
    assert more_rounds.select_and_fuse(1, predictions, None)[1].to_json() == stats.to_json()
    strict = SelfTrainRun(
        load_config(base=cfg, overrides=["selection.quality_min=0.95"]), tmp_path / "st", videos, []
    )
    with pytest.raises(StaleOutputError, match=r"selection.quality_min 0.5 -> 0.95"):
        strict.select_and_fuse(1, predictions, None)
    # every field counts, and the region rule (max_area and max_borders once did not: old labels were reused)
    for override, change in (
        ("discovery.max_area=0.4", "discovery.max_area 1.0 -> 0.4"),
        ("discovery.max_borders=2", "4 -> 2"),
    ):
        changed = SelfTrainRun(load_config(base=cfg, overrides=[override]), tmp_path / "st", videos, [])
        with pytest.raises(StaleOutputError, match=re.escape(change)):
            changed.select_and_fuse(1, predictions, None)
    other = {
        k: [Track(masks=t[0].masks, score=0.8, predicted_iou=t[0].predicted_iou)]
        for k, t in predictions.items()
    }
    with pytest.raises(StaleOutputError, match=r"predictions"):
        run.select_and_fuse(1, other, None)
    strict.resume = False
    assert strict.select_and_fuse(1, predictions, None)[1].fused.objects == 0  # 0.9 x 0.9 < 0.95: redone

    # the scores of a model: the validation set, the model and the inference/evaluation sections
    class Evaluator:
        def __init__(self, gt):
            self.gt, self.calls = gt, 0

        def identity(self):
            return {"gt": self.gt}

        def __call__(self, model):
            self.calls += 1
            return ModelScores(ytvis=dict.fromkeys(METRIC_NAMES, 10.0) | {"AP50": 50.0})

    model = shutil.copytree(data / "model", tmp_path / "m0" / "model")
    scorer = Evaluator("first")
    run.evaluator = scorer
    assert run.result("M0", 0, model).scores.value("AP50") == 50.0
    run.result("M0", 0, model)
    assert scorer.calls == 1 and (tmp_path / "m0" / "metrics.json").is_file()
    # scores cached before the metric set changed (a metric added since) are computed again
    cached = json.loads((tmp_path / "m0" / "metrics.json").read_text())
    cached["metric_set"].remove("pearson_confidence")
    (tmp_path / "m0" / "metrics.json").write_text(json.dumps(cached))
    run.result("M0", 0, model)
    assert scorer.calls == 2 and "pearson_confidence" in (tmp_path / "m0" / "metrics.json").read_text()
    run.result("M0", 0, model)
    assert scorer.calls == 2
    run.evaluator = Evaluator("second")
    with pytest.raises(StaleOutputError, match=r"validation.gt \"first\" -> \"second\""):
        run.result("M0", 0, model)
    run.resume = False
    run.result("M0", 0, model)
    assert run.evaluator.calls == 1


# -- the demo's world; the config of a refused rerun ---------------------------------------------------------


def test_demo_world(tmp_path):
    plan = DemoPlan(height=48, width=64, stills=1, unlabeled_videos=1, test_videos=1, frames=2)
    make_world(tmp_path / "w", plan, seed=0)
    stamps = _stamps(tmp_path / "w")
    make_world(tmp_path / "w", plan, seed=0)
    assert _stamps(tmp_path / "w") == stamps
    with pytest.raises(StaleOutputError, match=r"seed 0 -> 1"):
        make_world(tmp_path / "w", plan, seed=1)
    make_world(tmp_path / "w", plan, seed=1, resume=False)


def test_a_refused_rerun_keeps_the_config_that_made_the_files(tmp_path):
    save_config(Config(), tmp_path)
    text = (tmp_path / "config.yaml").read_text()
    with pytest.raises(StaleOutputError), saved_config(load_config(overrides=["training.lr=0.1"]), tmp_path):
        assert "lr: 0.1" in (tmp_path / "config.yaml").read_text()
        raise StaleOutputError("changed")
    assert (tmp_path / "config.yaml").read_text() == text


def test_fingerprint_unit_mechanics(tmp_path):
    unit = Unit(
        "the thing", tmp_path / "thing.fingerprint.json", (tmp_path / "thing.json", tmp_path / "thing")
    )
    assert open_unit(unit, {"a": {"b": 1}}) is False  # nothing there: fresh
    (tmp_path / "thing.json").write_text("made with b=1")
    (tmp_path / "thing").mkdir()
    assert open_unit(unit, {"a": {"b": 1}}) is True
    with pytest.raises(
        StaleOutputError, match=r"thing.json \(the thing\) was made with other .*: a.b 1 -> 2"
    ):
        open_unit(unit, {"a": {"b": 2}})
    assert open_unit(unit, {"a": {"b": 2}}, resume=False) is False
    assert not (tmp_path / "thing.json").exists() and not (tmp_path / "thing").exists()
    (tmp_path / "thing.json").write_text("made with b=2")
    assert open_unit(unit, {"a": {"b": 2}}, resume=False) is True  # started over in this process: kept
    assert (tmp_path / "thing.json").is_file()
    unit.fingerprint_file.write_text("{torn")
    with pytest.raises(StaleOutputError, match="is damaged"):
        open_unit(unit, {"a": {"b": 2}})
    assert (
        describe_changes({"x": [1, {"y": 2}]}, {"x": [1, {"y": 3}], "z": 0}) == "x[1].y 2 -> 3; z (none) -> 0"
    )


# -- finished units whose outputs were deleted or damaged since, and inputs that change while a unit runs ---


def test_a_cached_video_whose_frame_was_deleted_or_damaged_is_decoded_again(data, tmp_path, caplog):
    _video_dataset(data, tmp_path)
    frames = tmp_path / "st" / "frames"
    first = sorted(frames.glob("*/00001.jpg"))[0]
    good = first.read_bytes()
    first.unlink()
    with caplog.at_level("WARNING", logger="autoqvis"):
        _video_dataset(data, tmp_path)
    assert first.read_bytes() == good
    assert "deleted or changed since it was made; making it again" in caplog.text
    assert f"{first.name} changed since it was decoded" in caplog.text
    first.write_bytes(b"junk")  # the same file, other bytes
    _video_dataset(data, tmp_path)
    assert first.read_bytes() == good


def test_the_demo_world_is_made_again_when_a_file_of_it_was_deleted(tmp_path):
    plan = DemoPlan(stills=1, unlabeled_videos=1, test_videos=1, frames=3, height=48, width=64)
    paths = make_world(tmp_path, plan)
    frame = sorted(paths.test.rglob("*.jpg"))[0]
    good = frame.read_bytes()
    frame.unlink()
    make_world(tmp_path, plan)
    assert frame.read_bytes() == good  # the same seed: the same world


def test_a_finished_clip_frame_overwritten_with_junk_is_written_again(data, tmp_path, capsys):
    out = tmp_path / "synth"
    args = [
        "synthesize",
        "--masks",
        str(data / "pseudo.json"),
        "--num",
        "2",
        "--preview",
        "0",
        "--out",
        str(out),
    ]
    args += [
        a
        for pair in zip(
            ["--set"] * 3,
            ["synthesis.short_sides=[64]", "synthesis.crop_min=60", "synthesis.crop_max=64"],
            strict=True,
        )
        for a in pair
    ]
    assert main(args) == 0
    frame = out / "frames" / "clip_000001" / "00001.jpg"
    good = frame.read_bytes()
    frame.write_bytes(b"\xff\xd8\xff junk")
    assert main(args) == 0
    said = " ".join("".join(capsys.readouterr()).split())
    assert "00001.jpg changed since the clip was written; writing the clip again" in said
    assert frame.read_bytes() == good
