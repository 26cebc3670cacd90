"""The plain-torch DINO/DINOv2 ViT against the official DINO ``vision_transformer.py`` fixture, and
checkpoint loading by the official key names."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from autoqvis.errors import CheckpointError
from autoqvis.model.vit import (
    ARCHS,
    VisionTransformer,
    build_vit,
    load_state_dict_file,
    load_vit,
)
from tests.conftest import fixture_file

ATOL = 1e-4


def _fixture_model() -> VisionTransformer:
    cfg = json.loads(fixture_file("dino_vit", "meta.json").read_text())["model_config"]
    (img_size,) = cfg["img_size"]
    model = VisionTransformer(
        patch_size=cfg["patch_size"],
        embed_dim=cfg["embed_dim"],
        depth=cfg["depth"],
        num_heads=cfg["num_heads"],
        pos_grid=img_size // cfg["patch_size"],
        mlp_ratio=cfg["mlp_ratio"],
    )
    model.load_state_dict(load_file(fixture_file("dino_vit", "weights.safetensors")), strict=True)
    return model.eval()


def _input_names(io: dict) -> list[str]:
    return sorted({key.split(".")[0] for key in io})


def test_fixture_covers_square_and_rect():
    io = load_file(fixture_file("dino_vit", "io.safetensors"))
    shapes = [io[f"{name}.input"].shape for name in _input_names(io)]
    assert any(s[-1] == s[-2] for s in shapes) and any(s[-1] != s[-2] for s in shapes)


@torch.no_grad()
def test_outputs_match_official_dino():
    io = load_file(fixture_file("dino_vit", "io.safetensors"))
    model = _fixture_model()
    for name in _input_names(io):
        x = io[f"{name}.input"]
        out = model.extract(x, with_attention=True)
        tokens = model.get_intermediate_layers(x, n=2)
        got = {
            "cls_features": model(x),
            "last_layer_tokens_normed": tokens[1],
            "second_last_layer_tokens_normed": tokens[0],
            "last_selfattention": out.attention,
            "last_block_q_feats": out.q.transpose(1, 2),
            "last_block_k_feats": out.k.transpose(1, 2),
            "last_block_v_feats": out.v.transpose(1, 2),
        }
        for key, value in got.items():
            ref = io[f"{name}.{key}"]
            assert value.shape == ref.shape, (name, key)
            torch.testing.assert_close(value, ref, atol=ATOL, rtol=ATOL, msg=f"{name}.{key}")
        # the extract() views agree with the official-named outputs
        torch.testing.assert_close(out.cls, io[f"{name}.cls_features"], atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(
            out.tokens, io[f"{name}.last_layer_tokens_normed"][:, 1:], atol=ATOL, rtol=ATOL
        )
        assert out.grid[0] * out.grid[1] == out.k.shape[1]


@torch.no_grad()
def test_sdpa_and_explicit_attention_agree():
    io = load_file(fixture_file("dino_vit", "io.safetensors"))
    model = _fixture_model()
    for name in _input_names(io):
        x = io[f"{name}.input"]
        a, b = model.extract(x, with_attention=False), model.extract(x, with_attention=True)
        torch.testing.assert_close(a.tokens, b.tokens, atol=1e-5, rtol=1e-5, msg=name)
        assert a.attention is None


def test_official_key_names_load_strictly():
    keys = json.loads(fixture_file("dino_vit", "official_arch_keys.json").read_text())
    assert keys, "no architectures listed"
    for arch, entry in keys.items():
        expected = {item["key"]: tuple(item["shape"]) for item in entry["state_dict"]}
        with torch.device("meta"):
            model = build_vit(arch)
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert got == expected, arch
        assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"], arch


@pytest.mark.parametrize("arch", ["dinov2_vits14", "dinov2_vits14_reg"])
def test_dinov2_layout_and_any_size(arch):
    model = build_vit(arch).eval()
    names = set(model.state_dict())
    assert {"mask_token", "blocks.0.ls1.gamma", "blocks.11.ls2.gamma", "pos_embed"} <= names
    assert ("register_tokens" in names) == arch.endswith("_reg")
    assert model.pos_embed.shape == (1, 1 + 37 * 37, 384)
    with torch.no_grad():
        out = model.extract(torch.randn(1, 3, 70, 112))
    assert out.grid == (5, 8) and out.k.shape == (1, 40, 384) and out.tokens.shape == (1, 40, 384)


def test_dinov2_training_checkpoint_layout_loads(tmp_path):
    """teacher wrapper, ``backbone.`` prefix and block chunks (``blocks.<chunk>.<index>.``) are undone."""
    model = build_vit("dinov2_vits14")
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("blocks."):
            index = int(key.split(".")[1])
            key = f"blocks.{index // 4}.{key[len('blocks.') :]}"
        state[f"backbone.{key}"] = value
    torch.save({"teacher": state}, tmp_path / "ckpt.pth")
    assert set(load_state_dict_file(tmp_path / "ckpt.pth")) == set(model.state_dict())
    loaded = load_vit("dinov2_vits14", tmp_path / "ckpt.pth")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    x = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))


def test_dinov2_position_interpolation_rules():
    """Offset models interpolate by scale factor (like DINO); register models by size with antialias."""
    plain, reg = ARCHS["dinov2_vits14"], ARCHS["dinov2_vits14_reg"]
    assert (plain.interpolate_offset, plain.interpolate_antialias) == (0.1, False)
    assert (reg.interpolate_offset, reg.interpolate_antialias, reg.num_register_tokens) == (0.0, True, 4)
    model = build_vit("dinov2_vits14")
    table = model.pos_embed[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    pos = model.interpolate_pos_encoding(20 * 30, 20 * 14, 30 * 14)
    ref = torch.nn.functional.interpolate(table, scale_factor=(20.1 / 37, 30.1 / 37), mode="bicubic")
    torch.testing.assert_close(pos[0, 1:], ref.flatten(2)[0].T)
    assert model.interpolate_pos_encoding(37 * 37, 518, 518) is model.pos_embed


def test_load_errors_name_keys(tmp_path):
    model = build_vit("dino_vits16")
    state = model.state_dict()
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"norm\.weight.*extra\.weight"):
        load_vit("dino_vits16", tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_vit("dino_vits16", tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="unknown ViT architecture"):
        build_vit("vit_huge")
