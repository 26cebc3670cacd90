"""MaskCut against CutLER's official ``maskcut_forward`` / ``densecrf`` / ``__main__`` outputs on the DINO
fixture features, for every image and tau the fixture lists; end to end through our ViT; solver agreement."""

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from autoqvis.config import DiscoveryConfig
from autoqvis.discover.maskcut import (
    maskcut,
    maskcut_batch,
    maskcut_forward,
    preprocess,
    refine,
    resize_mask,
)
from autoqvis.errors import DataError
from tests.conftest import fixture_file
from tests.model.test_vit import _fixture_model


def _meta() -> dict:
    return json.loads(fixture_file("maskcut", "meta.json").read_text())


def _cases() -> list[tuple[str, float, int]]:
    """(prefix, tau, image index) for every entry of the fixture's meta."""
    cases = []
    for prefix in _meta()["images"]:
        match = re.fullmatch(r"tau(?P<tau>[0-9.]+)\.img(?P<index>\d+)", prefix)
        assert match, f"unexpected fixture entry {prefix}"
        cases.append((prefix, float(match["tau"]), int(match["index"])))
    return cases


def _grid(meta: dict) -> tuple[int, int]:
    side = meta["fixed_size"] // meta["patch_size"]
    return side, side


def _fixture_features(index: int, kind: str) -> torch.Tensor:
    """The ViT fixture's last-block features (D, N) of image ``index`` of the input MaskCut ran on: the square
    input of side ``fixed_size`` (whatever the fixture calls it)."""
    io = load_file(fixture_file("dino_vit", "io.safetensors"))
    side = _meta()["fixed_size"]
    names = [
        k.removesuffix(".input") for k in io if k.endswith(".input") and io[k].shape[-2:] == (side, side)
    ]
    assert len(names) == 1, f"expected one {side}x{side} input in dino_vit/io.safetensors, found {names}"
    return torch.from_numpy(io[f"{names[0]}.last_block_{kind}_feats"][index])  # (D, N)


def _check_eigenvectors(got: np.ndarray, ref: np.ndarray) -> float:
    """Max error up to each cut's sign, relative to the vector's scale."""
    worst = 0.0
    for g, r in zip(got, ref):
        sign = 1.0 if np.abs(g - r).max() <= np.abs(g + r).max() else -1.0
        worst = max(worst, float(np.abs(sign * g - r).max() / np.abs(r).max()))
    return worst


def test_fixture_lists_cases():
    meta = _meta()
    assert len(_cases()) >= 2 and meta["vit_feat"] in ("k", "tokens")
    assert len({tau for _, tau, _ in _cases()}) >= 2


def test_cuts_crf_and_final_masks_match_official():
    meta = _meta()
    ref = load_file(fixture_file("maskcut", "maskcut.safetensors"))
    size = (meta["fixed_size"], meta["fixed_size"])
    for prefix, tau, index in _cases():
        expected = meta["images"][prefix]
        feats = _fixture_features(index, meta["vit_feat"])
        cuts, bipartitions, eigvecs = maskcut_forward(
            feats, _grid(meta), size, tau, meta["N"], solver="dense"
        )
        np.testing.assert_array_equal(bipartitions, ref[f"{prefix}.bipartitions"] > 0.5, err_msg=prefix)
        assert _check_eigenvectors(eigvecs, ref[f"{prefix}.eigvecs"]) < 1e-4, prefix
        # the returned (last) seed: the official one, or an exact tie with it (painted-out patches share
        # one eigenvector value, and LAPACK's last bits then pick among them)
        vec, ref_seed = cuts[-1].eigenvector, expected["seed_returned"]
        assert abs(vec[ref_seed] - vec[cuts[-1].seed]) <= 1e-9 * np.abs(vec).max(), prefix
        assert bipartitions.sum(axis=(1, 2)).tolist() == expected["mask_areas_px"], prefix

        image = ref["images_uint8_hwc"][index]
        for k, bipartition in enumerate(bipartitions):
            refined, crf_map, iou = refine(image, bipartition)
            np.testing.assert_array_equal(crf_map, ref[f"{prefix}.crf_map"][k], err_msg=f"{prefix} crf {k}")
            ref_iou = expected["crf_iou_vs_bipartition"][k]
            assert np.isnan(iou) if ref_iou is None else iou == pytest.approx(ref_iou, abs=1e-6)
            final = resize_mask(refined, image.shape[:2]).astype(np.uint8) * 255
            np.testing.assert_array_equal(
                final, ref[f"{prefix}.final_masks_uint8"][k], err_msg=f"{prefix} {k}"
            )
            assert int(final.astype(bool).sum()) == expected["final_mask_areas_px"][k]


def test_end_to_end_with_fixture_vit():
    """Image -> our ViT -> MaskCut gives the official bipartitions and final masks."""
    meta = _meta()
    ref = load_file(fixture_file("maskcut", "maskcut.safetensors"))
    vit = _fixture_model()
    assert vit.patch_size == meta["patch_size"]
    images = list(ref["images_uint8_hwc"])
    for tau in sorted({tau for _, tau, _ in _cases()}):
        cfg = DiscoveryConfig(
            fixed_size=meta["fixed_size"],
            tau=tau,
            num_masks=meta["N"],
            features=meta["vit_feat"],
            eigensolver="dense",
        )
        results = maskcut_batch(images, vit, dataclasses.replace(cfg, batch_size=1))
        for prefix, case_tau, index in _cases():
            if case_tau != tau:
                continue
            np.testing.assert_array_equal(results[index].bipartitions, ref[f"{prefix}.bipartitions"] > 0.5)
            finals = ref[f"{prefix}.final_masks_uint8"]
            kept = [m > 0 for m in finals if m.any()]
            assert len(results[index].masks) == len(kept), prefix
            for got, want in zip(results[index].masks, kept):
                np.testing.assert_array_equal(got, want, err_msg=prefix)
            # each kept mask is scored by its CRF IoU with the cut
            expected = meta["images"][prefix]
            ious = [
                iou
                for iou, area in zip(expected["crf_iou_vs_bipartition"], expected["final_mask_areas_px"])
                if area
            ]
            assert results[index].scores == pytest.approx(ious, abs=1e-6), prefix
        # the one-image entry point returns the same masks with scores
        pairs = maskcut(images[0], vit, cfg)
        assert [m.sum() for m, _ in pairs] == [m.sum() for m in results[0].masks]
        assert [s for _, s in pairs] == results[0].scores


def test_arpack_solver_agrees_with_dense_on_fixture():
    meta = _meta()
    size = (meta["fixed_size"], meta["fixed_size"])
    for prefix, tau, index in _cases():
        feats = _fixture_features(index, meta["vit_feat"])
        dense = maskcut_forward(feats, _grid(meta), size, tau, meta["N"], solver="dense")
        fast = maskcut_forward(feats, _grid(meta), size, tau, meta["N"], solver="arpack")
        np.testing.assert_array_equal(fast[1], dense[1], err_msg=prefix)
        assert _check_eigenvectors(fast[2], dense[2]) < 1e-6, prefix


def test_tokens_features_and_no_crf_path():
    meta = _meta()
    ref = load_file(fixture_file("maskcut", "maskcut.safetensors"))
    vit = _fixture_model()
    cfg = DiscoveryConfig(fixed_size=meta["fixed_size"], features="tokens", crf=False, num_masks=meta["N"])
    image = ref["images_uint8_hwc"][0]
    h, w = image.shape[0] * 3 // 4, image.shape[1] * 2 // 3  # a non-square original: resized back
    (result,) = maskcut_batch([image[:h, :w]], vit, cfg)
    assert result.crf_maps is None and all(m.shape == (h, w) for m in result.masks)
    assert result.scores == [1.0] * len(result.masks)


def test_fixed_size_not_a_multiple_of_the_patch():
    """CutLER's resize_pil: the ViT sees the nearest multiple of the patch (Python round), the cuts are
    upsampled back to fixed_size x fixed_size."""
    vit = _fixture_model()
    ref = load_file(fixture_file("maskcut", "maskcut.safetensors"))
    patch = vit.patch_size
    fixed = patch * 12 + patch // 2  # round() of x.5 goes to the even side: 12 patches
    image = ref["images_uint8_hwc"][-1]
    small, x = preprocess(image, fixed, patch)
    assert small.shape == (fixed, fixed, 3) and x.shape == (3, 12 * patch, 12 * patch)
    cfg = DiscoveryConfig(fixed_size=fixed, crf=False)
    (result,) = maskcut_batch([image], vit, cfg)
    assert result.bipartitions.shape == (cfg.num_masks, fixed, fixed)
    assert all(c.mask.shape == (12, 12) for c in result.cuts)


def test_bad_image_is_a_data_error():
    with pytest.raises(DataError, match="uint8"):
        preprocess(np.zeros((8, 8, 3), np.float32), 16, 8)
