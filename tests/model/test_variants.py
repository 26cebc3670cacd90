"""Every model variant through the same checks (one parametrised test per stage, timm style): each preset in
``PRESETS`` and the ViT backbone with and without its image stem, on a random small ViT (nothing is
downloaded). Build, eval forward on a tiny clip, a training forward + backward with the criterion (the quality
head trained or frozen), and the save_model / load_model round trip.

A new preset is covered by adding it to ``PRESETS``. The paper-size models (ResNet-50, 100 queries) run at 64x96
in the default suite in eval and the round trip only; their training steps are ``slow``: ~12 CPU-seconds with a
frozen head (over 30 s wall on 2 shared cores), minutes with the full-width head, which scores every query of
every round. The tiny and ViT variants train in the default suite, with the head trained and frozen.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from autoqvis.config import InferenceConfig, SynthesisConfig, TrainingConfig
from autoqvis.model import PRESETS, ModelSpec, VideoMaskFormer, build_model, load_model, save_model
from autoqvis.model.vit import ARCHS, ViTSpec
from autoqvis.structures import Clip

SMALL_VIT = "test_dinov2_p14_d64"  # registered for this module only
SMALL_VIT_SPEC = ViTSpec(patch_size=14, embed_dim=64, depth=2, num_heads=2, pos_grid=4, layerscale=True)

_vit = dataclasses.replace(PRESETS["tiny"], backbone="vit", vit_arch=SMALL_VIT)
VARIANTS: dict[str, ModelSpec] = {
    **PRESETS,
    "tiny_vit": _vit,
    "tiny_vit_image_stem": dataclasses.replace(_vit, vit_image_stem=True),
}
NAMES = sorted(VARIANTS)
PAPER_SIZE = {"paper_r50", "videocutler_r50"}

T_EVAL, H, W = 2, 64, 96  # a tiny, non-square eval clip


@pytest.fixture(autouse=True, scope="module")
def small_vit():
    """A 2-block DINOv2-style ViT-14 (64 channels) under the name the ViT variants use; afterwards the
    name is removed and the shared models are freed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ARCHS, SMALL_VIT, SMALL_VIT_SPEC)
        yield
    _eval_model.cache_clear()


@functools.cache
def _eval_model(name: str) -> VideoMaskFormer:
    """The variant with random weights in eval mode, built once for this module (shared, not modified)."""
    torch.manual_seed(0)
    return build_model(VARIANTS[name]).eval()


def _frames(T: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8)  # (T, 3, H, W) uint8 RGB


def _clip(T: int, seed: int) -> Clip:
    """A clip with two tracks: one in every frame, one absent from the first frame."""
    masks = torch.zeros(2, T, H, W, dtype=torch.bool)
    masks[0, :, 8:40, 10 + seed : 50 + seed] = True
    masks[1, 1:, 30:60, 55:90] = True
    ids = torch.tensor([[0] * T, [-1] + [1] * (T - 1)])
    return Clip(frames=_frames(T, seed), masks=masks, ids=ids)


@pytest.mark.parametrize("name", NAMES)
def test_eval_forward_shapes_and_finite_values(name):
    model, spec = _eval_model(name), VARIANTS[name]
    out = model.inference(_frames(T_EVAL))
    # raw head outputs: every round, at stride 4 of the padded input (64x96 needs no padding)
    with torch.no_grad():
        _, mask_features, multi_scale = model.features(model.preprocess([_frames(T_EVAL)])[0])
        rounds = model.predictor(multi_scale, mask_features, 1, "none", every_round_masks=True).rounds()
    assert len(rounds) == spec.dec_layers + 1
    for logits, masks, _ in rounds:
        assert logits.shape == (1, spec.num_queries, spec.num_classes + 1) and torch.isfinite(logits).all()
        assert masks.shape == (1, spec.num_queries, T_EVAL, H // 4, W // 4) and torch.isfinite(masks).all()
    # post-processed top-k
    K = min(InferenceConfig.top_k, spec.num_queries * spec.num_classes)
    assert out.scores.shape == out.labels.shape == out.query_index.shape == (K,)
    assert torch.isfinite(out.scores).all() and bool(((out.scores > 0) & (out.scores < 1)).all())
    assert torch.equal(out.scores, out.scores.sort(descending=True).values)
    assert out.query_index.unique().numel() == K and int(out.query_index.max()) < spec.num_queries
    assert out.masks.shape == (K, T_EVAL, H, W) and out.masks.dtype == torch.bool
    assert out.embeddings.shape == (K, spec.hidden_dim) and torch.isfinite(out.embeddings).all()
    if spec.quality_head is None:
        assert out.ious is None
    else:
        assert out.ious.shape == (K, T_EVAL) and bool(((out.ious >= 0) & (out.ious <= 1)).all())


def _training_cases() -> list:
    cases = []
    for name in NAMES:
        for head in ("trained", "frozen") if VARIANTS[name].quality_head is not None else ("none",):
            slow = name in PAPER_SIZE  # see the module docstring
            cases.append(pytest.param(name, head, marks=[pytest.mark.slow] if slow else []))
    return cases


@pytest.mark.parametrize(("name", "head"), _training_cases())
def test_training_step_losses_and_gradients(name, head):
    spec = VARIANTS[name]
    torch.manual_seed(0)
    model = build_model(spec, TrainingConfig(num_points=64, freeze_quality_head=head == "frozen")).train()
    B, Q, T = 2, spec.num_queries, SynthesisConfig().num_frames  # the training clip length
    clips = [_clip(T, seed=b) for b in range(B)]
    images, _ = model.preprocess([c.frames for c in clips])  # (B*T, 3, H, W)
    outputs = model(images, num_videos=B)
    assert outputs.logits.shape == (B, Q, spec.num_classes + 1)
    assert outputs.masks.shape == (B, Q, T, H // 4, W // 4)
    assert len(outputs.aux) == spec.dec_layers
    if head == "trained":
        assert outputs.quality.shape == (B, Q, T, 1)
    else:
        assert outputs.quality is None  # a frozen (or absent) head does not run in training
    losses = model.criterion(outputs, model.prepare_targets(clips, images.shape[-2:]))
    base = ["loss_ce", "loss_mask", "loss_dice"] + (["loss_maskiou"] if head == "trained" else [])
    assert set(losses) == {f"{k}{s}" for k in base for s in ["", *(f"_{i}" for i in range(spec.dec_layers))]}
    assert all(torch.isfinite(v) for v in losses.values()), {k: float(v) for k, v in losses.items()}
    sum(losses.values()).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        else:
            assert p.grad is None, pname
    # exactly the frozen quality head and the frozen ViT are not trained
    frozen_modules = [model.quality_head] if head == "frozen" else []
    frozen_modules += [model.backbone.vit] if spec.backbone == "vit" else []
    expected = {id(p) for module in frozen_modules for p in module.parameters()}
    assert {id(p) for p in model.parameters() if not p.requires_grad} == expected


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    model = _eval_model(name)
    save_model(model, tmp_path / "model")
    again = load_model(tmp_path / "model")
    assert again.spec == model.spec and not again.training
    state, loaded = model.state_dict(), again.state_dict()
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    buffers = dict(again.named_buffers())  # the non-persistent ones (pixel mean / std) come from the spec
    for key, value in model.named_buffers():
        assert torch.equal(buffers[key], value), key
