"""Every setting arrives where it is used.

Each field of each section gets a non-default value (:data:`CHANGED`); the public path that uses the section
runs (the command or the library entry point), and the value is observed at its point of use: a spy on the
function or object that consumes it, the object built from it, or the reads the consuming code makes. A name
check cannot see a setting that is copied into another object and lost there (the CRF fields once were, and
the selection fingerprint kept a hand-made list of its fields), so this test looks where the value is used.

A new field must get an entry in :data:`CHANGED` and an observation, or the first test fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from autoqvis import rle
from autoqvis.config import Config, all_keys, config_to_dict, load_config
from autoqvis.errors import StaleOutputError
from autoqvis.structures import Track

# a valid value other than the default for every key; a few need other settings to matter (CONTEXT)
CHANGED: dict[str, Any] = {
    # the one device of every stage
    "device": "cpu",
    # discovery
    "discovery.arch": "dino_vits16",
    "discovery.weights": "vit_weights.pth",
    "discovery.features": "tokens",
    "discovery.fixed_size": 64,
    "discovery.tau": 0.3,
    "discovery.eps": 1e-4,
    "discovery.num_masks": 2,
    "discovery.crf": False,
    "discovery.crf_min_iou": 0.25,
    "discovery.eigensolver": "dense",
    "discovery.every": 2,
    "discovery.batch_size": 3,
    "discovery.max_area": 0.9,
    "discovery.max_borders": 3,
    # synthesis
    "synthesis.num_frames": 2,
    "synthesis.crop_min": 40,
    "synthesis.crop_max": 56,
    "synthesis.short_sides": [40, 44],
    "synthesis.max_size": 640,
    "synthesis.flip_prob": 0.25,
    "synthesis.brightness": [0.8, 1.2],
    "synthesis.contrast": [0.7, 1.3],
    "synthesis.rotation": [-5.0, 5.0],
    "synthesis.rotation_center": [0.45, 0.55],
    "synthesis.copy_paste": False,
    "synthesis.paste_scale": [0.6, 0.9],
    "synthesis.paste_max_overlap": 0.3,
    # model
    "model.preset": "videocutler_r50",
    "model.backbone": "vit",
    "model.weights": "init.safetensors",
    "model.vit_arch": "dino_vits16",
    "model.vit_weights": "vit.safetensors",
    "model.freeze_vit": False,
    "model.vit_image_stem": True,
    # training
    "training.max_iters": 3,
    "training.batch_size": 3,
    "training.lr": 3e-4,
    "training.weight_decay": 0.02,
    "training.backbone_lr_mult": 0.5,
    "training.clip_grad_norm": 0.5,
    "training.warmup_iters": 2,
    "training.warmup_factor": 0.25,
    "training.schedule": "step",
    "training.steps": [2],
    "training.gamma": 0.5,
    "training.amp": "bf16",
    "training.grad_accum": 2,
    "training.checkpoint_period": 2,
    "training.log_period": 2,
    "training.seed": 7,
    "training.deterministic": True,
    "training.num_workers": 1,
    "training.ema_decay": 0.5,
    "training.num_points": 48,
    "training.oversample_ratio": 2.0,
    "training.importance_sample_ratio": 0.5,
    "training.class_weight": 1.5,
    "training.mask_weight": 4.0,
    "training.dice_weight": 3.0,
    "training.quality_weight": 10.0,
    "training.no_object_weight": 0.2,
    "training.deep_supervision": False,
    "training.droploss": True,
    "training.droploss_tau": 0.05,
    "training.quality_loss": "matched",
    "training.quality_outputs": "last",
    "training.freeze_quality_head": True,
    # selection
    "selection.top_k": 3,
    "selection.nms_iou": 0.6,
    "selection.score_min": 0.3,
    "selection.quality_min": 0.4,
    "selection.selection_score": "confidence",
    "selection.min_frames": 1,
    "selection.fusion": "replace",
    "selection.fuse_iou": 0.7,
    "selection.min_eligible_frames": 1,
    "selection.min_consistency": 0.3,
    "selection.min_persistence": 0.2,
    "selection.min_teacher_iou": 0.2,
    # rounds
    "rounds.iters": 5,
    "rounds.batch_size": 3,
    "rounds.lr": 1e-3,
    "rounds.mix_prob": 0.3,
    "rounds.mix_frames": 64,
    # selftrain
    "selftrain.num_rounds": 3,
    "selftrain.reset_each_round": False,
    "selftrain.select_metric": "JF",
    "selftrain.label_free_pick": "stability",
    "selftrain.holdout": 0.5,
    "selftrain.pick_margin": 3.0,
    # inference
    "inference.short_side": 40,
    "inference.max_size": 600,
    "inference.top_k": 4,
    "inference.window": 3,
    "inference.overlap": 1,
    "inference.amp": "bf16",
    "inference.track_score": "quality",
    "inference.crf_short_side": 48,
    "inference.crf_max_tracks": 2,
    "inference.token_cache_mb": 64,
    # evaluation
    "evaluation.class_agnostic": False,
    "evaluation.max_dets": [2, 20, 200],
    "evaluation.area_small": 100.0,
    "evaluation.area_large": 900.0,
    "evaluation.davis_keep_first_last": True,
    "evaluation.davis_bound_th": 0.02,
    "evaluation.davis_max_proposals": 3,
}


def _section(name: str) -> list[str]:
    return [k for k in CHANGED if k.startswith(name + ".")]


def _value(key: str) -> Any:
    value = CHANGED[key]
    return tuple(value) if isinstance(value, list) else value


def _changed(*keys: str, base: tuple[str, ...] = ()) -> Config:
    return load_config(overrides=[*base, *(f"{k}={json.dumps(CHANGED[k])}" for k in keys)])


def _missing(seen: dict[str, Any], keys: list[str]) -> list[str]:
    """The keys whose observed value is not the one set (with what was seen instead)."""
    return [
        f"{k}: set {_value(k)!r}, seen {seen.get(k, 'nothing')!r}" for k in keys if seen.get(k) != _value(k)
    ]


def test_every_key_has_a_changed_value():
    assert sorted(CHANGED) == sorted(all_keys()), "add the new keys to CHANGED and observe them below"
    defaults = {k: v for section in config_to_dict(Config()).items() for k, v in _flat(section)}
    for key in CHANGED:
        assert _value(key) != (tuple(defaults[key]) if isinstance(defaults[key], list) else defaults[key]), (
            key
        )
    _changed(*CHANGED)  # valid together


def _flat(section: tuple[str, dict]) -> list[tuple[str, Any]]:
    name, values = section
    if not isinstance(values, dict):  # a top-level key (the device)
        return [(name, values)]
    return [(f"{name}.{k}", v) for k, v in values.items()]


# ---------------------------------------------------------------------------------------------------
# a stand-in model and small inputs


class FakeModel(torch.nn.Module):
    """A model with the inference interface: ``top_k`` tracks per clip (full-frame blocks of falling score,
    predicted IoU 0.6), recording what each call was given."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1))
        self.spec = argparse.Namespace(to_json=lambda: {"model": "fake"}, quality_head=(1, 1, 1))
        self.calls: list[dict] = []

    def inference(self, clip, output_size=None, top_k=10, amp="off", **_):
        from autoqvis.model.vis import VideoOutput

        self.calls.append({"top_k": top_k, "amp": amp, "frames": clip.shape})
        T, H, W = clip.shape[0], *(output_size or clip.shape[-2:])
        masks = torch.zeros(top_k, T, H, W, dtype=torch.bool)
        for k in range(top_k):
            masks[k, :, : H // 2 + k, : W // 2 + k] = True
        scores = torch.linspace(0.9, 0.5, top_k)
        return VideoOutput(
            scores=scores,
            labels=torch.zeros(top_k, dtype=torch.long),
            masks=masks,
            ious=torch.full((top_k, T), 0.6),
            query_index=torch.arange(top_k),
            embeddings=torch.eye(top_k, 8),
        )


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two frame folders of 8 frames, 48x64."""
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir()
        for t in range(8):
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
                root / name / f"{t:05d}.jpg"
            )
    return root


def _spy(monkeypatch, module, name: str, record) -> None:
    """Replace ``module.name`` by a wrapper that calls ``record(*args, **kwargs)`` and then the original."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        record(*args, **kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


# ---------------------------------------------------------------------------------------------------
# inference: autoqvis predict, the Python API, and scoring a model


def _observe_prediction(monkeypatch, seen: dict) -> FakeModel:
    import autoqvis.predict.predict as predict
    import autoqvis.predict.refine as refine

    model = FakeModel()

    def opened(path, short_side=None, max_size=1333):
        if short_side is not None:
            seen["inference.short_side"], seen["inference.max_size"] = short_side, max_size

    def streamed(frames, num_frames, segment, window, overlap, hw, on_window=None):
        seen["inference.window"], seen["inference.overlap"] = window, overlap

    def refined(tracks, source, short_side):
        seen["inference.crf_max_tracks"], seen["inference.crf_short_side"] = len(tracks), short_side

    _spy(monkeypatch, predict, "open_video", opened)
    _spy(monkeypatch, predict, "run_streaming", streamed)
    _spy(
        monkeypatch,
        predict,
        "rank_tracks",
        lambda tracks, score="class", *rest: seen.update({"inference.track_score": score}),
    )
    monkeypatch.setattr(predict, "crf_refine_tracks", lambda t, s, side: refined(t, s, side) or t)
    monkeypatch.setattr(refine, "crf_refine_tracks", lambda t, s, side: refined(t, s, side) or t)
    return model


def _model_calls(model: FakeModel, seen: dict) -> None:
    assert model.calls, "the model was never called"
    seen["inference.top_k"] = model.calls[-1]["top_k"]
    seen["inference.amp"] = model.calls[-1]["amp"]


def test_inference_settings_arrive_in_autoqvis_predict(videos, tmp_path, monkeypatch):
    import autoqvis.device
    import autoqvis.model
    from autoqvis.cli import main

    seen: dict[str, Any] = {}
    model = _observe_prediction(monkeypatch, seen)
    monkeypatch.setattr(autoqvis.model, "load_model", lambda *a, **k: model)
    _spy(
        monkeypatch,
        autoqvis.device,
        "resolve_device",
        lambda spec, *a, **k: seen.update({"device": spec}),
    )
    sets = [a for k in ["device", *_section("inference")] for a in ("--set", f"{k}={json.dumps(CHANGED[k])}")]
    # one model: nothing to share; the device is chosen once, from the top-level key
    keys = ["device", *(k for k in _section("inference") if k != "inference.token_cache_mb")]
    args = ["predict", str(videos / "a"), "--weights", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*args, "--no-overlay", *sets]) == 0
    _model_calls(model, seen)
    assert not _missing(seen, keys), _missing(seen, keys)


def test_inference_settings_arrive_through_the_python_api(videos, monkeypatch):
    """``autoqvis.segment`` takes the section (and its fields by name); without them it runs the section's
    defaults (its window overlap once had a default of its own)."""
    import autoqvis
    from autoqvis.config import InferenceConfig

    seen: dict[str, Any] = {}
    model = _observe_prediction(monkeypatch, seen)
    # the model runs where it is; one model predicts: no token cache to share
    keys = [k for k in _section("inference") if k != "inference.token_cache_mb"]
    autoqvis.segment(model, videos / "a", _changed(*keys).inference)
    _model_calls(model, seen)
    assert not _missing(seen, keys), _missing(seen, keys)
    seen.clear()
    autoqvis.segment(model, videos / "a", window=6)
    _model_calls(model, seen)
    defaults = InferenceConfig(window=6)
    for key in keys:
        name = key.split(".")[1]
        if name in ("crf_short_side", "crf_max_tracks"):  # no CRF by default: nothing to see
            assert key not in seen
        else:
            assert seen[key] == getattr(defaults, name), key


def _ytvis_gt(videos: Path, path: Path) -> Path:
    """A YouTube-VIS ground truth for the frame folders (one object per video)."""
    from autoqvis.io.ytvis import YTVISDataset, save_ytvis
    from autoqvis.structures import VideoInfo

    infos, tracks = [], {}
    for i, name in enumerate(sorted(p.name for p in videos.iterdir())):
        infos.append(VideoInfo(i + 1, 64, 48, 8, [f"{name}/{t:05d}.jpg" for t in range(8)], name))
        mask = np.zeros((48, 64), bool)
        mask[:24, :32] = True
        tracks[i + 1] = [Track(masks=[rle.encode(mask)] * 8)]
    save_ytvis(YTVISDataset(videos=infos, tracks=tracks), path)
    return path


def test_inference_and_evaluation_settings_arrive_when_a_model_is_scored(videos, tmp_path, monkeypatch):
    import autoqvis.evaluate.models as models

    seen: dict[str, Any] = {}
    model = _observe_prediction(monkeypatch, seen)
    ranked = []
    _spy(monkeypatch, models, "finish_tracks", lambda tracks, source, inf, score=None: ranked.append(score))
    _spy(
        monkeypatch,
        models,
        "TokenCache",
        lambda max_bytes: seen.update({"inference.token_cache_mb": max_bytes // 2**20}),
    )

    def scored(gt, predictions, **kwargs):
        for name in ("area_small", "area_large", "max_dets"):
            seen[f"evaluation.{name}"] = tuple(kwargs[name]) if name == "max_dets" else kwargs[name]

    def davis(name, gt, proposals, max_proposals=20, bound_th=0.008):
        seen["evaluation.davis_bound_th"] = bound_th

    _spy(monkeypatch, models, "evaluate_tracks", scored)
    _spy(monkeypatch, models, "evaluate_sequence_unsupervised", davis)
    _spy(
        monkeypatch,
        models,
        "id_map",
        lambda tracks, t, hw, max_tracks=20: seen.setdefault("id_map", []).append(max_tracks),
    )
    keys = _section("inference")
    evaluation = [f"evaluation.{k}" for k in ("area_small", "area_large", "max_dets", "davis_bound_th")]
    evaluation.append("evaluation.davis_max_proposals")
    cfg = _changed(*keys, *evaluation)
    _spy(
        monkeypatch,
        models,
        "FrameList",
        lambda **k: seen.update(
            {"inference.short_side": k["short_side"], "inference.max_size": k["max_size"]}
        ),
    )
    models.ModelEvaluator(_ytvis_gt(videos, tmp_path / "gt.json"), videos, cfg).score(model)
    _model_calls(model, seen)
    seen["inference.track_score"] = ranked[0]  # the ranking scored (then the other one, for the alt column)
    seen["evaluation.davis_max_proposals"] = seen["id_map"][-1]  # the proposals' id map
    keys += evaluation
    assert not _missing(seen, keys), _missing(seen, keys)


# ---------------------------------------------------------------------------------------------------
# evaluation: autoqvis evaluate on files


def test_evaluation_settings_arrive_in_autoqvis_evaluate(videos, tmp_path, monkeypatch):
    import autoqvis.evaluate.davis as davis
    import autoqvis.evaluate.ytvis as ytvis
    from autoqvis.cli import main
    from autoqvis.io.davis import write_mask_png

    seen: dict[str, Any] = {}

    def files(gt, pred, *, class_agnostic=True, **kwargs):
        seen["evaluation.class_agnostic"] = class_agnostic
        seen.update({f"evaluation.{k}": tuple(v) if k == "max_dets" else v for k, v in kwargs.items()})

    _spy(monkeypatch, ytvis, "evaluate_files", files)
    gt = _ytvis_gt(videos, tmp_path / "gt.json")
    pred = tmp_path / "pred.json"
    data = json.loads(gt.read_text())
    pred.write_text(json.dumps([{**a, "score": 0.9} for a in data["annotations"]]))
    keys = _section("evaluation")
    sets = [a for k in keys for a in ("--set", f"{k}={json.dumps(CHANGED[k])}")]
    assert main(["evaluate", "--gt", str(gt), "--pred", str(pred), *sets]) == 0
    # DAVIS-2016 and 2017 on one sequence of 3 frames
    root, masks = tmp_path / "davis", tmp_path / "masks"
    for t in range(3):
        ids = np.zeros((24, 32), np.uint8)
        ids[4:12, 4 + t : 12 + t] = 1
        write_mask_png(root / "Annotations" / "480p" / "s" / f"{t:05d}.png", ids)
        write_mask_png(masks / "s" / f"{t:05d}.png", ids)
        (root / "JPEGImages" / "480p" / "s").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(
            root / "JPEGImages" / "480p" / "s" / f"{t:05d}.jpg"
        )

    def single(name, gt, pred, keep_first_last=False, bound_th=0.008, **_):
        seen["evaluation.davis_keep_first_last"], seen["evaluation.davis_bound_th"] = (
            keep_first_last,
            bound_th,
        )

    def multi(name, gt, proposals, max_proposals=20, bound_th=0.008):
        seen["evaluation.davis_max_proposals"] = max_proposals

    _spy(monkeypatch, davis, "evaluate_sequence_2016", single)
    _spy(monkeypatch, davis, "evaluate_sequence_unsupervised", multi)
    for protocol in ("2016", "2017-unsupervised"):
        davis_args = ["evaluate", "--davis", str(root), "--pred-masks", str(masks), "--protocol", protocol]
        assert main([*davis_args, *sets]) == 0
    assert not _missing(seen, keys), _missing(seen, keys)


# ---------------------------------------------------------------------------------------------------
# self-training: selection, rounds, the loop


def _round_inputs(videos: Path, tmp_path: Path, monkeypatch):
    """The frame cache of the videos, and a model whose tracks the selection can keep (score 0.9 ... 0.5,
    quality 0.6: the largest masks touch 2 borders and cover a quarter of the frame)."""
    import autoqvis.selftrain.loop as loop
    from autoqvis.io.video import find_videos
    from autoqvis.selftrain.videos import cache_videos

    data, _ = cache_videos(find_videos(videos), tmp_path / "cache", 48)
    model = FakeModel()
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: model)
    (tmp_path / "m0").mkdir(exist_ok=True)
    (tmp_path / "m0" / "model.safetensors").write_bytes(b"m0")
    return data, model


def test_selection_settings_arrive_and_each_one_selects_again(videos, tmp_path, monkeypatch):
    """Each step gets its setting, and a change of any field is a change of the round's selection (its
    fingerprint is the whole section and the region rule of the discovery section: max_area and max_borders
    were once left out, and old labels reused)."""
    import autoqvis.selftrain.loop as loop
    import autoqvis.selftrain.pseudo_label as steps
    from autoqvis.selftrain.loop import SelfTrainRun

    data, model = _round_inputs(videos, tmp_path, monkeypatch)
    seen: dict[str, Any] = {}
    record = {
        "nms_any_frame": lambda tracks, iou: seen.update({"selection.nms_iou": iou}),
        "keep_confident": lambda tracks, score: seen.update({"selection.score_min": score}),
        "mark_selected": lambda tracks, q, by: seen.update(
            {"selection.quality_min": q, "selection.selection_score": by}
        ),
        "unselect_regions": lambda tracks, area, borders: seen.update(  # the one region rule
            {"discovery.max_area": area, "discovery.max_borders": borders}
        ),
        "drop_rarely_selected": lambda tracks, n: seen.update({"selection.min_frames": n}),
        "drop_inconsistent": lambda tracks, c: seen.update({"selection.min_consistency": c}),
        "drop_transient": lambda tracks, p: seen.update({"selection.min_persistence": p}),
        "drop_disagreeing": lambda tracks, teacher, m: seen.update({"selection.min_teacher_iou": m}),
    }
    # the teacher's cuts (MaskCut needs the discovery weights): none on any frame
    monkeypatch.setattr(loop, "teacher_cuts", lambda videos, ids, *a: {i: {} for i in ids})
    for name, spy in record.items():
        _spy(monkeypatch, steps, name, spy)
    _spy(monkeypatch, loop, "replace_labels", lambda old, new: seen.update({"selection.fusion": "replace"}))
    _spy(monkeypatch, loop, "fuse_labels", lambda old, new, iou=0.5: seen.update({"selection.fuse_iou": iou}))
    _spy(
        monkeypatch,
        loop,
        "eligibility_counts",
        lambda labels, n, stats: seen.update({"selection.min_eligible_frames": n}),
    )
    keys = [*_section("selection"), "discovery.max_area", "discovery.max_borders"]
    fusing = [k for k in keys if k != "selection.fusion"]
    for i, changed in enumerate((["selection.fusion"], fusing)):  # the later run's values stay
        run = SelfTrainRun(_changed(*changed), tmp_path / f"run{i}", data, [])
        labels = run.select_and_fuse(1, run.pseudo_label(1, tmp_path / "m0"), None)[0]
        run.select_and_fuse(2, run.pseudo_label(2, tmp_path / "m0"), labels)
    seen["selection.top_k"] = model.calls[-1]["top_k"]  # pseudo-labelling keeps the selection's top k
    assert not _missing(seen, keys), _missing(seen, keys)
    # the fingerprint: a change of any field selects again instead of reusing the labels
    reference = SelfTrainRun(load_config(), tmp_path / "fp", data, [])
    predictions = reference.pseudo_label(1, tmp_path / "m0")
    reference.select_and_fuse(1, predictions, None)
    stale = []
    for key in keys:
        try:
            SelfTrainRun(_changed(key), tmp_path / "fp", data, []).select_and_fuse(1, predictions, None)
        except StaleOutputError as err:
            assert key in str(err), (key, str(err))
        else:
            stale.append(key)
    assert not stale, f"changing these reused the earlier selection: {stale}"


def test_round_settings_arrive_in_each_rounds_training(videos, tmp_path, monkeypatch):
    import autoqvis.selftrain.loop as loop
    from autoqvis.selftrain.loop import SelfTrainRun

    data, _ = _round_inputs(videos, tmp_path, monkeypatch)
    calls = []
    monkeypatch.setattr(loop, "train_stage", lambda *a, **k: calls.append((a, k)) or tmp_path / "m0")
    frames = sum(v.length for v in data.videos)  # 16 labelled frames
    keys = _section("rounds")
    seen: dict[str, Any] = {}
    for changed in ([k for k in keys if k != "rounds.mix_frames"], ["rounds.mix_frames"]):
        cfg = _changed(*changed)
        SelfTrainRun(cfg, tmp_path / "run", data, [object()]).retrain(1, data, tmp_path / "m0")
        (_, _, probs, *_), kwargs = calls[-1]
        t = kwargs["training"]
        assert kwargs["settings"] == {"rounds": config_to_dict(cfg.rounds)}  # fingerprinted whole
        if changed == ["rounds.mix_frames"]:  # p = mix_prob x labelled frames / mix_frames
            seen["rounds.mix_frames"] = round(cfg.rounds.mix_prob * frames / probs[-1])
            continue
        seen.update(
            {
                "rounds.iters": t.max_iters,
                "rounds.batch_size": t.batch_size,
                "rounds.lr": t.lr,
                "rounds.mix_prob": probs[-1],
            }
        )
    assert not _missing(seen, keys), _missing(seen, keys)


def test_selftrain_settings_arrive_in_the_loop(tmp_path, monkeypatch):
    import autoqvis.selftrain.loop as loop
    from autoqvis.evaluate.models import ModelScores
    from autoqvis.selftrain.loop import SelfTrainRun

    seen: dict[str, Any] = {}
    starts = []
    monkeypatch.setattr(
        loop,
        "label_free_per_video",
        lambda unlabeled, s, teacher, held: [{"stability": {1: 0.5, 2: 0.5}}] * len(unlabeled),
    )
    _spy(
        monkeypatch, loop, "pick_label_free", lambda scores, criterion: seen.update({"label_free": criterion})
    )
    _spy(
        monkeypatch,
        loop,
        "pick_safe",
        lambda per_video, margin: seen.update({"selftrain.pick_margin": margin}),
    )
    _spy(monkeypatch, loop, "holdout_names", lambda names, f: seen.update({"selftrain.holdout": f}))
    _spy(monkeypatch, loop, "pick_best", lambda models, metric: seen.update({"metric": metric}))
    keys = _section("selftrain")

    def model_folder(out: Path, k: int) -> Path:
        folder = out / f"round_{k}" / "model"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.safetensors").write_bytes(bytes([k]))
        return folder

    for i, evaluator in enumerate((None, lambda model: ModelScores(ytvis={"AP50": 1.0}, jf=2.0))):
        out = tmp_path / f"run{i}"
        run = SelfTrainRun(_changed(*keys), out, None, [], evaluator=evaluator)
        run.pseudo_label = lambda k, model: {}
        run.predict_unlabeled = lambda *a: {}
        run.select_and_fuse = lambda k, p, labels: ({}, None, argparse.Namespace(videos=[1]))
        run.retrain = lambda k, training_set, init, out=out: starts.append(init) or model_folder(out, k)
        run.run(m0=model_folder(out, 0))
    seen["selftrain.num_rounds"] = len(starts) // 2
    # reset_each_round=false: round 2 starts from round 1's model
    seen["selftrain.reset_each_round"] = starts[1] == starts[0]
    seen["selftrain.select_metric"] = seen["metric"]
    # pick_margin > 0: the safe rule chose, by the criterion best.json names
    seen["selftrain.label_free_pick"] = json.loads((tmp_path / "run0" / "best.json").read_text())[
        "label_free_criterion"
    ]
    assert not _missing(seen, keys), _missing(seen, keys)


# ---------------------------------------------------------------------------------------------------
# model and training: a training run (autoqvis train and every stage of selftrain go through train_stage)


def _clips(n: int = 2, T: int = 3):
    from autoqvis.structures import Clip
    from autoqvis.train.data import ClipList

    clips = []
    for i in range(n):
        masks = torch.zeros(1, T, 64, 64, dtype=torch.bool)
        masks[0, :, 8 + i : 40, 10:50] = True
        frames = torch.randint(
            0, 255, (T, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(i)
        )
        clips.append(Clip(frames=frames, masks=masks, ids=torch.zeros(1, T, dtype=torch.long)))
    return ClipList(clips)


class _NoTraining:
    """Stands for the Trainer where only the model matters."""

    def __init__(self, model, *args, **kwargs):
        self.model = model

    def train(self, resume=True):
        pass

    def final_weights(self):
        pass


def test_the_device_is_chosen_once_and_every_stage_reads_it(videos, tmp_path, monkeypatch):
    """Training, scoring and the self-training loop compute on the config's one ``device`` (no device
    argument travels beside the configuration)."""
    import autoqvis.evaluate.models as models
    import autoqvis.selftrain.loop as loop
    import autoqvis.train.run as run_module
    from autoqvis.selftrain.loop import SelfTrainRun
    from autoqvis.train.run import train_stage

    cfg = _changed("device", base=("model.preset=tiny",))
    seen: list[str] = []
    for module in (run_module, models, loop):
        _spy(monkeypatch, module, "resolve_device", lambda spec, *a, **k: seen.append(spec))
    monkeypatch.setattr(run_module, "Trainer", _NoTraining)
    monkeypatch.setattr(run_module, "save_model", lambda model, folder, inference=None: folder)
    train_stage(cfg, [_clips()], [1.0], tmp_path / "run")
    assert models.ModelEvaluator(_ytvis_gt(videos, tmp_path / "gt.json"), videos, cfg).device == "cpu"
    assert SelfTrainRun(cfg, tmp_path / "st", None, []).device == "cpu"
    assert seen == [CHANGED["device"]] * 3


def test_model_settings_arrive_in_the_model_a_training_run_builds(tmp_path, monkeypatch):
    import autoqvis.model.build as build
    import autoqvis.train.run as run_module
    from autoqvis.model.build import PRESETS, SPEC_FROM_CONFIG
    from autoqvis.model.vit import ARCHS, build_vit
    from autoqvis.model.vit_backbone import ViTBackbone
    from autoqvis.train.run import train_stage

    monkeypatch.chdir(tmp_path)  # model.weights and model.vit_weights are relative paths
    for name in ("init.safetensors", "vit.safetensors"):
        Path(name).write_bytes(b"weights")
    built, vit_loads, inits = [], [], []
    monkeypatch.setattr(
        build, "load_vit", lambda arch, weights=None, **k: vit_loads.append(weights) or build_vit(arch)
    )
    monkeypatch.setattr(
        run_module, "build_model", lambda *a, **k: built.append(build.build_model(*a, **k)) or built[-1]
    )
    monkeypatch.setattr(run_module, "load_weights", lambda model, path: inits.append(str(path)))
    monkeypatch.setattr(run_module, "Trainer", _NoTraining)
    monkeypatch.setattr(run_module, "save_model", lambda model, folder, inference=None: folder)
    keys = _section("model")
    seen: dict[str, Any] = {}
    with_init = [k for k in keys if k != "model.vit_weights"]
    without_init = ["model.backbone", "model.vit_weights"]  # the ViT's own weights when nothing replaces them
    for i, changed in enumerate((with_init, without_init)):
        train_stage(_changed(*changed), [_clips()], [1.0], tmp_path / f"run{i}")
        if changed is without_init:
            seen["model.vit_weights"] = vit_loads[-1]
            continue
        model = built[-1]
        sizes = {f.name for f in dataclasses.fields(model.spec)} - {"extra", *SPEC_FROM_CONFIG}
        preset = [
            p for p, spec in PRESETS.items() if all(getattr(spec, f) == getattr(model.spec, f) for f in sizes)
        ]
        vit = model.backbone.vit if isinstance(model.backbone, ViTBackbone) else None
        arch = [
            a
            for a, s in ARCHS.items()
            if vit is not None
            and (s.patch_size, s.embed_dim) == (vit.patch_size, vit.embed_dim)
            and s.num_register_tokens == vit.num_register_tokens
            and s.layerscale == hasattr(vit, "mask_token")
        ]
        seen.update(
            {
                "model.preset": preset[0] if len(preset) == 1 else preset,
                "model.backbone": "vit" if vit is not None else "resnet",
                "model.weights": inits[-1] if inits else None,
                "model.vit_arch": arch[0] if len(arch) == 1 else arch,
                "model.freeze_vit": model.backbone.frozen
                and not any(p.requires_grad for p in vit.parameters()),
                "model.vit_image_stem": model.backbone.stem is not None,
            }
        )
    assert not _missing(seen, keys), _missing(seen, keys)


def test_training_settings_arrive_in_the_trainer_criterion_and_optimiser(tmp_path, monkeypatch):
    import autoqvis.train.optim as optim
    import autoqvis.train.trainer as trainer_module
    from autoqvis.train.run import train_stage

    seen: dict[str, Any] = {}
    runs: list[dict] = []

    def sampler(sizes, probs, batch_size, max_iters, seed, **kwargs):
        runs[-1].update(batch_size=batch_size, seed=seed)

    def loader(sources, sampler, num_workers=0, pin_memory=False):
        runs[-1]["num_workers"] = num_workers
        return real_loader(sources, sampler, 0, pin_memory)  # no worker process in a test

    real_loader = trainer_module.build_loader
    _spy(monkeypatch, trainer_module, "MixingBatchSampler", sampler)
    monkeypatch.setattr(trainer_module, "build_loader", loader)
    _spy(
        monkeypatch,
        trainer_module,
        "deterministic_algorithms",
        lambda on=True: runs[-1].update(deterministic=on),
    )
    _spy(
        monkeypatch,
        trainer_module,
        "clip_full_model",
        lambda params, norm: runs[-1].setdefault("clip", []).append(norm),
    )
    _spy(monkeypatch, optim, "lr_factor", lambda it, cfg: runs[-1].update(schedule_cfg=cfg))
    steps = []

    def step(self, micro):  # the number of micro-batches and each group's rate at this step
        steps.append(len(micro))
        runs[-1]["trainer"] = self
        runs[-1].setdefault("lrs", []).append([g["lr"] for g in self.optimizer.param_groups])

    _spy(monkeypatch, trainer_module.Trainer, "step", step)
    _spy(
        monkeypatch,
        trainer_module.Trainer,
        "save",
        lambda self: runs[-1].setdefault("saved", []).append(self.iteration),
    )
    _spy(
        monkeypatch,
        trainer_module.Trainer,
        "log_metrics",
        lambda self, v, s: runs[-1].setdefault("logged", []).append(self.iteration),
    )
    keys = _section("training")
    base = ("model.preset=tiny", "training.max_iters=2", "training.batch_size=2", "training.num_points=64")
    head = ["training.freeze_quality_head"]
    for i, changed in enumerate(([k for k in keys if k not in head], head)):
        runs.append({})
        cfg = _changed(*changed, base=base)
        steps.clear()
        train_stage(cfg, [_clips()], [1.0], tmp_path / f"run{i}")
        run = runs[-1]
        trainer = run["trainer"]
        model, criterion = trainer.model, trainer.model.criterion
        if changed is head:
            seen["training.freeze_quality_head"] = (
                not model.train_quality_head and criterion.quality_loss is None
            )
            continue
        groups = trainer.optimizer.param_groups
        lr = max(g["initial_lr"] for g in groups)
        backbone = [g["initial_lr"] for g in groups if g["initial_lr"] < lr]
        schedule = run["schedule_cfg"]
        seen.update(
            {
                "training.max_iters": len(steps),
                "training.batch_size": run["batch_size"],
                "training.lr": lr,
                "training.weight_decay": max(g["weight_decay"] for g in groups),
                "training.backbone_lr_mult": backbone[0] / lr if backbone else None,
                "training.clip_grad_norm": run["clip"][0],
                **{
                    f"training.{f}": getattr(schedule, f)
                    for f in ("warmup_iters", "warmup_factor", "schedule", "steps", "gamma")
                },
                "training.amp": trainer.amp,
                "training.grad_accum": steps[0],
                "training.checkpoint_period": run["saved"][0],
                "training.log_period": run["logged"][0],
                "training.seed": run["seed"],
                "training.deterministic": run["deterministic"],
                "training.num_workers": run["num_workers"],
                "training.ema_decay": trainer.ema.decay if trainer.ema is not None else None,
                "training.num_points": criterion.num_points,
                "training.oversample_ratio": criterion.oversample_ratio,
                "training.importance_sample_ratio": criterion.importance_sample_ratio,
                "training.class_weight": criterion.loss_weights["loss_ce"],
                "training.mask_weight": criterion.loss_weights["loss_mask"],
                "training.dice_weight": criterion.loss_weights["loss_dice"],
                "training.quality_weight": criterion.loss_weights["loss_maskiou"],
                "training.no_object_weight": round(float(criterion.empty_weight[-1]), 6),
                "training.deep_supervision": criterion.deep_supervision,
                "training.droploss": criterion.droploss,
                "training.droploss_tau": criterion.droploss_tau,
                "training.quality_loss": criterion.quality_loss,
                "training.quality_outputs": model.quality_outputs,
            }
        )
        # the schedule the optimiser followed is the one these settings give
        main = next(i for i, g in enumerate(groups) if g["initial_lr"] == lr)
        followed = [g[main] for g in run["lrs"]]
        assert followed == pytest.approx([lr * optim.lr_factor(i, schedule) for i in range(len(steps))])
    assert not _missing(seen, keys), _missing(seen, keys)


# ---------------------------------------------------------------------------------------------------
# synthesis and discovery: the sections are read by the code that makes clips and masks


def _reads(section, where: tuple[str, ...]):
    """A copy of ``section`` that records each field read by code in a file whose path contains one of
    ``where`` (the stage's own modules: not the fingerprint or config code reading every field)."""
    reads: dict[str, Any] = {}

    class Recorded(type(section)):
        def __getattribute__(self, name):
            value = object.__getattribute__(self, name)
            caller = sys._getframe(1).f_code.co_filename.replace("\\", "/")
            if any(w in caller for w in where):
                reads[name] = value
            return value

    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    return Recorded(**values), reads


def _pseudo_masks(tmp_path: Path) -> tuple[Path, Path]:
    """Two 80x96 images with two pseudo-masks each, as autoqvis discover writes them."""
    root = tmp_path / "images"
    root.mkdir()
    images, annotations = [], []
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(root / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 80, "width": 96})
        for j, (y, x) in enumerate(((10, 10), (40, 50))):
            mask = np.zeros((80, 96), bool)
            mask[y : y + 25, x : x + 30] = True
            annotations.append({"id": 2 * i + j + 1, "image_id": i + 1, "segmentation": rle.encode(mask)})
    path = tmp_path / "pseudo.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "info": {"frames_root": str(root)}})
    )
    return path, root


def test_synthesis_settings_are_read_where_clips_are_made(tmp_path):
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages

    path, root = _pseudo_masks(tmp_path)
    keys = _section("synthesis")
    seen: dict[str, Any] = {}
    for changed in ([k for k in keys if k != "synthesis.copy_paste"], ["synthesis.copy_paste"]):
        section, reads = _reads(_changed(*changed).synthesis, ("/autoqvis/synth/",))
        clips = ImageCut2Video(PseudoMaskImages(path, root), section, seed=0)
        made = [clips.clip(i % len(clips), seed) for i, seed in enumerate(range(8))]
        assert all(c.frames.shape[0] == section.num_frames for c in made)
        seen.update({f"synthesis.{k}": v for k, v in reads.items() if f"synthesis.{k}" in changed})
    assert not _missing(seen, keys), _missing(seen, keys)


def test_discovery_settings_arrive_in_autoqvis_discover(videos, tmp_path, monkeypatch):
    import importlib

    import autoqvis.model.vit as vit
    from autoqvis.cli import main

    maskcut = importlib.import_module(
        "autoqvis.discover.maskcut"
    )  # the package exports a function of that name
    discover_run = importlib.import_module("autoqvis.discover.run")

    seen: dict[str, Any] = {}
    batches = []
    real = maskcut.maskcut_batch

    def recorded(images, model, cfg, *args, **kwargs):
        batches.append(len(images))
        section, reads = _reads(cfg, ("/autoqvis/discover/maskcut.py", "/autoqvis/discover/ncut.py"))
        try:
            return real(images, model, section, *args, **kwargs)
        finally:
            seen.update({f"discovery.{k}": v for k, v in reads.items()})

    monkeypatch.setattr(maskcut, "maskcut_batch", recorded)
    monkeypatch.setattr(
        vit,
        "load_vit",
        lambda arch, weights=None, **k: seen.update(arch=arch, weights=weights) or vit.build_vit(arch),
    )
    _spy(monkeypatch, discover_run, "video_items", lambda root, every, *a, **k: seen.update(every=every))
    keys = _section("discovery")
    found: dict[str, Any] = {}
    for i, changed in enumerate(([k for k in keys if k != "discovery.crf"], ["discovery.crf"])):
        seen.clear()
        small = [] if i == 0 else ["discovery.arch", "discovery.fixed_size", "discovery.every"]  # CPU-sized
        sets = [a for k in [*small, *changed] for a in ("--set", f"{k}={json.dumps(CHANGED[k])}")]
        assert (
            main(["discover", "--videos", str(videos), "--out", str(tmp_path / f"d{i}" / "p.json"), *sets])
            == 0
        )
        seen["discovery.arch"], seen["discovery.weights"] = seen["arch"], seen["weights"]
        seen["discovery.every"], seen["discovery.batch_size"] = seen["every"], max(batches)
        found.update({k: v for k, v in seen.items() if k in changed})
    assert not _missing(found, keys), _missing(found, keys)
