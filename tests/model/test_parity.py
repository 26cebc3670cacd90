"""Parity with the official VideoMask2Former on the small fixture: every eval tensor, post-processing, training
outputs, losses with the recorded draws replayed, and gradients. Sizes come from the fixture's config."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from autoqvis.losses.criterion import build_criterion
from autoqvis.model import VideoMaskFormer, build_model, load_weights, spec_from_reference_config
from autoqvis.model.vis import ModelSpec
from autoqvis.structures import Clip
from tests.conftest import fixture_file, fixture_params
from tests.losses.test_parity import Replay, _draws, _training_config

TOL = {"atol": 1e-4, "rtol": 1e-4}


def _spec() -> ModelSpec:
    return spec_from_reference_config(
        json.loads(fixture_file("video_maskformer_small", "config.json").read_text())
    )


def _model(training_cfg=None) -> VideoMaskFormer:
    training = training_cfg or _training_config(next(iter(_train_meta()["configs"].values())))
    model = build_model(_spec(), dataclasses.replace(training, freeze_quality_head=False))
    model.criterion = build_criterion(training)  # as the official criterion, head frozen or not
    load_weights(model, fixture_file("video_maskformer_small", "weights.safetensors"), strict=True)
    return model


def _recorded_rounds(model: VideoMaskFormer, images: torch.Tensor, monkeypatch) -> tuple:
    """Every round's class and mask logits and attention mask (before the un-blocking rule), with the pixel
    decoder's outputs: the decoder's own forward, observed from outside (a spy on ``prediction_heads``)."""
    predictor, blocked = model.predictor, []
    heads = predictor.prediction_heads

    def spy(*args, **kwargs):
        classes, masks, attn = heads(*args, **kwargs)
        blocked.append(attn.clone())  # the caller unblocks in place
        return classes, masks, attn

    monkeypatch.setattr(predictor, "prediction_heads", spy)
    with torch.no_grad():
        _, mask_features, multi_scale = model.features(images)
        out = predictor(
            multi_scale, mask_features, num_videos=1, score_quality="none", every_round_masks=True
        )
    monkeypatch.undo()
    return out.rounds(), blocked, mask_features, multi_scale


def _eval_meta() -> dict:
    return json.loads(fixture_file("video_maskformer_small", "eval_meta.json").read_text())


def _train_meta() -> dict:
    return json.loads(fixture_file("video_maskformer_small", "train_meta.json").read_text())


@pytest.fixture(scope="module")
def eval_tensors() -> dict:
    return load_file(str(fixture_file("video_maskformer_small", "eval.safetensors")))


@pytest.fixture(scope="module")
def train_tensors() -> dict:
    return load_file(str(fixture_file("video_maskformer_small", "train.safetensors")))


def _clips():
    clips = _eval_meta()["clips"]
    assert clips, "eval_meta.json lists no clips"
    return sorted(clips)


def _observe_postprocessing(model: VideoMaskFormer, monkeypatch) -> dict:
    """The quality head's raw output on the kept queries and the upsampled mask logits before the threshold,
    seen from outside the model (a forward hook and a spy)."""
    seen = {}
    model.quality_head.register_forward_hook(lambda module, args, out: seen.update(kept_quality=out[0]))
    upsample = model.upsample_masks
    monkeypatch.setattr(model, "upsample_masks", lambda *a: seen.setdefault("logits", upsample(*a)))
    return seen


@pytest.mark.parametrize("clip", fixture_params(_clips))
def test_eval_tensors_and_postprocessing(eval_tensors, clip, monkeypatch):
    meta = _eval_meta()["clips"][clip]
    E = {k[len(clip) + 1 :]: v for k, v in eval_tensors.items() if k.startswith(clip + ".")}
    model = _model().eval()
    frames = E["input.frames_uint8_rgb"]
    images, _ = model.preprocess([frames])
    assert list(images.shape[-2:]) == meta["padded_hw"]
    rounds, blocked, mask_features, multi_scale = _recorded_rounds(model, images, monkeypatch)
    if "backbone.res2" in E:
        feats = model.backbone(images)
        for name, value in feats.items():
            torch.testing.assert_close(value, E[f"backbone.{name}"], **TOL)
        torch.testing.assert_close(mask_features, E["pixel_decoder.mask_features"], **TOL)
        for i, f in enumerate(multi_scale):
            torch.testing.assert_close(f, E[f"pixel_decoder.multi_scale_features.{i}"], **TOL)
    assert len(rounds) == len([k for k in E if k.endswith(".pred_logits") and k.startswith("layer")])
    assert len(blocked) == len(rounds)
    for i, (logits, masks, _) in enumerate(rounds):
        torch.testing.assert_close(logits, E[f"layer{i}.pred_logits"], **TOL)
        torch.testing.assert_close(masks, E[f"layer{i}.pred_masks"], **TOL)
        attn = blocked[i].to(torch.uint8)  # (1, Q, T*h*w), identical for every head
        assert torch.equal(attn, E[f"layer{i}.attn_mask_head0_uint8"]), f"attention mask of round {i}"
    torch.testing.assert_close(rounds[-1].logits, E["raw.pred_logits"], **TOL)
    torch.testing.assert_close(rounds[-1].masks, E["raw.pred_masks"], **TOL)
    # post-processing
    seen = _observe_postprocessing(model, monkeypatch)
    out = model.inference(frames, tuple(meta["output_height_width"]))
    assert torch.equal(out.query_index, E["post.topk_query_indices"])
    assert torch.equal(out.labels, E["post.pred_labels"])
    torch.testing.assert_close(out.scores, E["post.pred_scores"], **TOL)
    assert out.scores.tolist() == pytest.approx(meta["pred_scores"], abs=1e-4)
    torch.testing.assert_close(seen["kept_quality"], E["raw.pred_maskiou"][0][out.query_index], **TOL)
    torch.testing.assert_close(out.ious, E["post.pred_ious"][..., 0], **TOL)
    expected = E["post.pred_masks"].bool()
    assert out.masks.shape == expected.shape and list(out.masks.shape[-2:]) == meta["output_height_width"]
    decided = seen["logits"].abs() > 1e-4
    assert torch.equal(out.masks[decided], expected[decided])


def test_scoring_only_kept_queries_equals_scoring_all(eval_tensors, monkeypatch):
    clip = _clips()[0]
    model = _model().eval()
    frames = eval_tensors[f"{clip}.input.frames_uint8_rgb"]
    with torch.no_grad():
        images, _ = model.preprocess([frames])
        _, mask_features, multi_scale = model.features(images)
        full = model.predictor(multi_scale, mask_features, num_videos=1, score_quality="last")
    torch.testing.assert_close(full.quality, eval_tensors[f"{clip}.raw.pred_maskiou"], **TOL)
    seen = _observe_postprocessing(model, monkeypatch)
    out = model.inference(frames)
    torch.testing.assert_close(seen["kept_quality"], full.quality[0][out.query_index], atol=1e-6, rtol=0)


def _batch_clips(T: dict) -> list[Clip]:
    clips = []
    for k in range(len({key.split(".")[1] for key in T if key.startswith("batch.video")})):
        p = f"batch.video{k}."
        clips.append(
            Clip(frames=T[p + "frames_uint8_rgb"], masks=T[p + "gt_masks"].bool(), ids=T[p + "gt_ids"])
        )
    return clips


@pytest.mark.parametrize("cfg", fixture_params(lambda: sorted(_train_meta()["configs"])))
def test_training_forward_losses_and_gradients(train_tensors, cfg):
    meta = _train_meta()["configs"][cfg]
    training = _training_config(meta)
    model = _model(training)
    if training.freeze_quality_head:
        model.freeze_quality_head()
    model.train()
    clips = _batch_clips(train_tensors)
    images, _ = model.preprocess([c.frames for c in clips])
    targets = model.prepare_targets(clips, images.shape[-2:])
    for k, target in enumerate(targets):
        for key in ("labels", "ids", "masks"):
            expected = train_tensors[f"{cfg}.targets.{k}.{key}"]
            assert torch.equal(target[key].to(expected.dtype), expected), f"targets[{k}].{key}"
    outputs = model(images, num_videos=len(clips))
    prefix = f"{cfg}.train_out."
    torch.testing.assert_close(outputs.logits, train_tensors[prefix + "pred_logits"], **TOL)
    torch.testing.assert_close(outputs.masks, train_tensors[prefix + "pred_masks"], **TOL)
    if not training.freeze_quality_head:
        torch.testing.assert_close(outputs.quality, train_tensors[prefix + "pred_maskiou"], **TOL)
    else:
        assert outputs.quality is None  # the frozen head does not run in training
    replay = Replay(_draws(train_tensors, cfg, meta["rand_calls"]), meta["rand_calls"])
    result = model.criterion.compute(outputs, targets, rand=replay)
    for key, value in meta["losses_weighted_as_returned_by_model"].items():
        assert float(result.weighted[key].detach()) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert float(result.total.detach()) == pytest.approx(meta["total_loss"], rel=1e-4)
    matches = [[[s.tolist(), t.tolist()] for s, t in r] for r in result.indices]
    assert matches == meta["matcher_indices_in_call_order"]
    result.total.backward()
    params = dict(model.named_parameters())
    recorded = meta["grads_recorded_for"]
    assert recorded
    for name in recorded:
        expected = train_tensors[f"{cfg}.grad.{name}"]
        if training.freeze_quality_head and ".maskiou_feature_extractor." in name:
            assert params[name].grad is None or not params[name].grad.any()
            continue
        # gradients sum many fp32 terms: the tolerance scales with the tensor's largest entry (1e-4 of it)
        atol = 1e-4 * max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(
            params[name].grad, expected, atol=atol, rtol=1e-3, msg=lambda m, n=name: f"{n}: {m}"
        )
