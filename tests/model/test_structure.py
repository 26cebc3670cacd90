"""Full-size presets against the official key list, the full-width quality head, checkpoints, properties."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from autoqvis.config import TrainingConfig
from autoqvis.errors import CheckpointError
from autoqvis.losses.criterion import criterion_flags_from_reference
from autoqvis.model import PRESETS, build_model, load_weights, save_model
from autoqvis.model.build import load_model
from autoqvis.model.decoder import QualityHead
from autoqvis.model.msdeform import ms_deform_attn_core, ms_deform_attn_reference
from autoqvis.structures import Clip
from tests.conftest import fixture_file, fixture_params, tiny_config


def _official_configs() -> dict:
    data = json.loads(fixture_file("video_maskformer_r50_keys.json").read_text())
    assert data, "the key list holds no configs"
    return data


@pytest.mark.parametrize("name", fixture_params(lambda: sorted(_official_configs())))
def test_full_preset_keys_shapes_and_trainability_equal_the_official_list(name):
    official = _official_configs()[name]
    entries = official["state_dict"]
    has_head = any(".maskiou_feature_extractor." in e["key"] for e in entries)
    flags = criterion_flags_from_reference(official["criterion_losses"])
    training = TrainingConfig(
        droploss=flags["droploss"],
        quality_loss=flags["quality_loss"] or TrainingConfig.quality_loss,
        freeze_quality_head=not has_head or flags["quality_loss"] is None,  # no head: no quality loss
    )
    spec = PRESETS["paper_r50" if has_head else "videocutler_r50"]
    with torch.device("meta"):
        model = build_model(spec, training)
    state = model.state_dict(keep_vars=True)
    assert len(state) == official["num_state_dict_entries"]
    assert [e["key"] for e in entries] == list(state), "key order"
    params = dict(model.named_parameters())
    for e in entries:
        tensor = state[e["key"]]
        assert list(tensor.shape) == e["shape"], e["key"]
        assert str(tensor.dtype).removeprefix("torch.") == e["dtype"], e["key"]
        assert (e["key"] in params) == (e["kind"] == "parameter"), e["key"]
        assert tensor.requires_grad == e["requires_grad"], e["key"]
    assert sum(p.numel() for p in params.values()) == official["num_parameters"]
    assert sum(p.numel() for p in params.values() if p.requires_grad) == official["num_trainable_parameters"]
    assert (model.criterion.quality_loss is not None) == any(
        "maskiou" in x for x in official["criterion_losses"]
    )


def test_full_width_quality_head_matches_the_official_output():
    meta = json.loads(fixture_file("maskiou_head_official", "meta.json").read_text())
    io = load_file(str(fixture_file("maskiou_head_official", "io.safetensors")))
    recipe = meta["weights_recipe"]
    fcn1 = next(r for r in recipe if r["key"] == "maskiou_fcn1.weight")["shape"]
    fc1 = next(r for r in recipe if r["key"] == "maskiou_fc1.weight")["shape"]
    head = QualityHead(in_channels=fcn1[1], conv_channels=fcn1[0], fc_dim=fc1[0])
    state = {}
    for r in recipe:
        g = torch.Generator().manual_seed(r["generator_seed"])
        t = (torch.rand(r["shape"], generator=g, dtype=torch.float32) * 2 - 1) * r["scale"] + r["offset"]
        assert hashlib.sha256(t.numpy().astype("<f4").tobytes()).hexdigest() == r["sha256_float32_le"], r[
            "key"
        ]
        state[r["key"]] = t
    head.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in head.parameters()) == meta["num_parameters"]
    last_input = []  # what the last FC layer receives in the whole run: (Q*T, fc_dim)
    hook = head.maskiou_fc3.register_forward_pre_hook(lambda m, args: last_input.append(args[0]))
    with torch.no_grad():
        out = head(io["x"], io["mask"])
        hook.remove()
        chunked = head(io["x"], io["mask"], chunk=5)
        fc3 = head.maskiou_fc3
        summed = float((last_input[0].abs() @ fc3.weight.abs().T + fc3.bias.abs()).max())
    torch.testing.assert_close(out, io["out"], atol=1e-4, rtol=1e-4)
    # Chunked and whole runs add the same terms in another order (other GEMM blocking), so they differ by
    # rounding, which scales with the magnitude of the terms summed, not with the output: the last layer sums
    # |w_j h_j| ~ 9 into outputs ~ 0.2 on this fixture, and the runs differ by ~1 float32 ulp of that sum
    # (1.2e-6; a fixed atol of 1e-6 failed on other inputs). Allow 8 ulps of it.
    atol = 8 * torch.finfo(torch.float32).eps * summed
    torch.testing.assert_close(chunked, out, atol=atol, rtol=0)


def test_deformable_attention_equals_its_float64_twin():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5, 2), (2, 2)]
    N, M, D, Lq, P = 2, 2, 3, 5, 3
    value = torch.randn(N, sum(h * w for h, w in shapes), M, D, generator=g)
    # locations spread beyond [0, 1] to exercise the zero padding
    locations = torch.rand(N, Lq, M, len(shapes), P, 2, generator=g) * 1.4 - 0.2
    weights = torch.softmax(torch.randn(N, Lq, M, len(shapes) * P, generator=g), -1).view(
        N, Lq, M, len(shapes), P
    )
    fast = ms_deform_attn_core(value, shapes, locations, weights)
    slow = ms_deform_attn_reference(value, shapes, locations, weights)
    torch.testing.assert_close(fast.double(), slow, atol=1e-5, rtol=1e-5)


def test_permuting_the_queries_permutes_the_outputs():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    frames = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        images, _ = model.preprocess([frames])
        _, mf, ms = model.features(images)
        ref = model.predictor(ms, mf, num_videos=1, score_quality="last")
        perm = torch.randperm(model.spec.num_queries)
        for name in ("query_feat", "query_embed"):
            getattr(model.predictor, name).weight.copy_(getattr(model.predictor, name).weight[perm])
        out = model.predictor(ms, mf, num_videos=1, score_quality="last")
    for key in ("logits", "masks", "quality"):
        torch.testing.assert_close(getattr(out, key), getattr(ref, key)[:, perm], atol=1e-5, rtol=1e-4)


def test_checkpoints_round_trip_and_report_keys(tmp_path, caplog):
    torch.manual_seed(0)
    model = build_model("tiny")
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    # an official-style .pth without the quality head (VideoCutLER) loads and names what is missing
    state = {k: v for k, v in model.state_dict().items() if ".maskiou_feature_extractor." not in k}
    torch.save({"model": state, "iteration": 5}, tmp_path / "videocutler.pth")
    fresh = build_model("tiny")
    report = load_weights(fresh, tmp_path / "videocutler.pth")
    assert report.missing and all("maskiou_feature_extractor" in k for k in report.missing)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights(fresh, tmp_path / "videocutler.pth", strict=True)
    # a folder records its architecture: loading it into another is refused, naming the fields that differ
    other = PRESETS["tiny"].__class__(**{**PRESETS["tiny"].to_json(), "hidden_dim": 32, "quality_head": None})
    with pytest.raises(CheckpointError, match=r"different architecture.*hidden_dim: 64 vs 32"):
        load_weights(build_model(other), tmp_path / "m")
    with pytest.raises(CheckpointError, match="different architecture"):
        load_model(tmp_path / "m", model=other)
    # a bare weights file has no architecture: a wrong preset is a shape error naming the tensor
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_weights(build_model(other), tmp_path / "bare.safetensors")
    loaded = load_model(tmp_path / "bare.safetensors", model="tiny")
    assert not loaded.training and loaded.spec == PRESETS["tiny"]


def test_load_model_reads_the_architecture_from_the_folder(tmp_path):
    from autoqvis.config import ModelConfig

    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "m")
    assert load_model(tmp_path / "m").spec == PRESETS["tiny"]  # no preset needed
    assert load_model(tmp_path / "m", model=ModelConfig(preset="tiny")).spec == PRESETS["tiny"]
    with pytest.raises(CheckpointError, match=r"backbone: resnet vs vit"):
        load_model(tmp_path / "m", model=ModelConfig(preset="tiny", backbone="vit"))
    (tmp_path / "m" / "model.json").write_text('{"depth": 50')  # truncated
    with pytest.raises(CheckpointError, match="damaged"):
        load_model(tmp_path / "m")


class _Evil:
    def __reduce__(self):
        return (print, ("this should never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": _Evil()}}, f)
    with pytest.raises(CheckpointError, match="refuses"):
        load_weights(build_model("tiny"), path)
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_weights(build_model("tiny"), tmp_path / "junk.safetensors")


def test_build_model_from_config_with_frozen_head():
    cfg = tiny_config("training.freeze_quality_head=true")
    model = build_model(cfg.model, cfg.training)
    assert not model.train_quality_head
    assert not any(p.requires_grad for p in model.quality_head.parameters())
    model.train()
    frames = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    images, _ = model.preprocess([frames])
    out = model(images, num_videos=1)
    assert out.quality is None and np.isfinite(out.masks.detach().numpy()).all()


def test_weights_inspect_command(tmp_path, capsys):
    from autoqvis.cli import main

    model = build_model("tiny")
    state = {k: v for k, v in model.state_dict().items() if ".maskiou_feature_extractor." not in k}
    torch.save({"model": state}, tmp_path / "m.pth")
    assert main(["weights", "inspect", str(tmp_path / "m.pth"), "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "missing keys (14)" in out and "maskiou_fcn1.weight" in out and "unexpected keys (0)" in out
    assert main(["weights", "inspect", str(tmp_path / "nope.pth"), "--preset", "tiny"]) == 2


@pytest.mark.parametrize("image_stem", [False, True])
def test_vit_backbone_pyramid_frozen_and_trainable_parts(image_stem, tmp_path):
    from autoqvis.model.vis import ModelSpec
    from autoqvis.model.vit_backbone import ViTBackbone

    spec = ModelSpec(
        **{
            **PRESETS["tiny"].to_json(),
            "backbone": "vit",
            "vit_arch": "dino_vits16",
            "vit_image_stem": image_stem,
        }
    )
    torch.manual_seed(0)
    model = build_model(spec, TrainingConfig(num_points=64))
    assert isinstance(model.backbone, ViTBackbone)
    frames = torch.randint(0, 256, (3, 3, 64, 96), dtype=torch.uint8)
    images, _ = model.preprocess([frames])
    feats = model.backbone(images)
    for name, stride in model.backbone.strides.items():
        assert feats[name].shape[-2:] == (images.shape[-2] // stride, images.shape[-1] // stride), name
        assert feats[name].shape[1] == model.backbone.channels[name]
    model.train()
    assert not model.backbone.vit.training  # a frozen ViT stays in eval mode
    clip = Clip(
        frames=frames,
        masks=torch.zeros(1, 3, 64, 96, dtype=torch.bool),
        ids=torch.zeros(1, 3, dtype=torch.long),
    )
    clip.masks[0, :, 10:40, 20:60] = True
    loss = sum(model.criterion(model(images, 1), model.prepare_targets([clip], images.shape[-2:])).values())
    loss.backward()
    assert all(p.grad is None for p in model.backbone.vit.parameters())
    assert all(p.grad is not None for p in model.backbone.pyramid.parameters())
    stem_keys = [k for k in model.state_dict() if k.startswith("backbone.stem.")]
    assert bool(stem_keys) == image_stem
    if image_stem:
        assert all(p.grad is not None for p in model.backbone.stem.parameters())
    out = model.eval().inference(frames)
    assert out.masks.shape[1:] == (3, 64, 96)
    save_model(model, tmp_path / "m")  # the stem is part of the saved spec and weights
    again = load_model(tmp_path / "m")
    assert again.spec.vit_image_stem == image_stem
    torch.testing.assert_close(again.eval().inference(frames).scores, out.scores)


def test_quality_head_trained_on_the_last_output_only():
    torch.manual_seed(0)
    for outputs, expected in (("all", {"loss_maskiou", "loss_maskiou_0"}), ("last", {"loss_maskiou"})):
        model = build_model("tiny", TrainingConfig(num_points=64, quality_outputs=outputs)).train()
        frames = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
        masks = torch.zeros(1, 3, 64, 64, dtype=torch.bool)
        masks[0, :, 10:40, 20:50] = True
        clip = Clip(frames=frames, masks=masks, ids=torch.zeros(1, 3, dtype=torch.long))
        images, _ = model.preprocess([clip.frames])
        losses = model.criterion(model(images, 1), model.prepare_targets([clip], images.shape[-2:]))
        assert {k for k in losses if k.startswith("loss_maskiou")} >= expected
        if outputs == "last":
            assert not any(k.startswith("loss_maskiou_") for k in losses)
        sum(losses.values()).backward()
        assert all(p.grad is not None for p in model.quality_head.parameters())


def test_a_model_without_the_quality_head_initialises_one_with_it(tmp_path):
    import dataclasses

    torch.manual_seed(0)
    headless = build_model(dataclasses.replace(PRESETS["tiny"], quality_head=None))
    save_model(headless, tmp_path / "videocutler")
    torch.manual_seed(1)
    model = build_model("tiny")
    head = {k: v.clone() for k, v in model.state_dict().items() if "maskiou_feature_extractor" in k}
    report = load_weights(model, tmp_path / "videocutler")
    assert report.missing and all("maskiou_feature_extractor" in k for k in report.missing)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in head.items())  # the head keeps its init
    assert all(torch.equal(state[k], v) for k, v in headless.state_dict().items())  # everything else loaded
    with pytest.raises(CheckpointError, match="different architecture"):  # the other way round is refused
        save_model(model, tmp_path / "with_head")
        load_weights(
            build_model(dataclasses.replace(PRESETS["tiny"], quality_head=None)), tmp_path / "with_head"
        )


def test_build_backbone_knows_every_name_and_refuses_others():
    import dataclasses

    from autoqvis.model.backbone import Backbone
    from autoqvis.model.build import build_backbone

    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; choose one of resnet, vit"):
        build_backbone(dataclasses.replace(PRESETS["tiny"], backbone="vgg"))
    for name, arch in (("resnet", "dinov2_vits14_imgfocus"), ("vit", "dino_vits16")):
        backbone = build_backbone(dataclasses.replace(PRESETS["tiny"], backbone=name, vit_arch=arch))
        assert isinstance(backbone, Backbone)
        images = torch.zeros(2, 3, 64, 96)
        with torch.no_grad():
            feats = backbone(images)
        assert list(feats) == [level.name for level in backbone.feature_info]  # the declared levels, in order
        for level in backbone.feature_info:
            assert feats[level.name].shape == (2, level.channels, 64 // level.stride, 96 // level.stride)


def test_the_decoder_needs_the_number_of_videos():
    model = build_model("tiny").eval()
    images, _ = model.preprocess([torch.zeros(3, 3, 64, 64, dtype=torch.uint8)])
    with pytest.raises(TypeError, match="num_videos"):
        model(images)
    with torch.no_grad(), pytest.raises(ValueError, match=r"3 frames cannot be 2 videos"):
        model(images, num_videos=2)
