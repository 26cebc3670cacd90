"""Quality-loss targets and the "all" / "matched" variants on a hand-made video.

Prediction logits are ±10 on a 4x4 grid and the targets live on 8x8. Bilinear 2x upsampling
(align_corners=False) of a ±10 step puts ±5 on the two pixels beside the step, so the binarised upsampled
prediction equals each cell repeated 2x2 and every IoU is a ratio of cell counts (1 cell = 4 pixels).

    track A: cells rows 0-1, cols 0-1 in both frames (4 cells)
    track B: cells row 3, cols 0-3 in both frames (4 cells)
    query 0: A in frame 0; A + rows 0-1, cols 2-3 in frame 1     -> best A, target IoUs [1, 4/8]
    query 1: row 3, cols 0-1 in both frames (half of B)         -> best B, target IoUs [2/4, 2/4]
    query 2: empty                                              -> all IoUs 0, target [0, 0]
"""

from __future__ import annotations

import pytest
import torch

from autoqvis.losses.criterion import VideoSetCriterion
from autoqvis.losses.matcher import VideoHungarianMatcher
from autoqvis.losses.point_sampling import make_rand
from autoqvis.losses.quality import (
    SIGMOID_HALF_LOGIT,
    best_track_iou_targets,
    binary_frame_ious,
    quality_loss_all,
    quality_loss_matched,
)
from autoqvis.structures import DecoderOutput

PRED_IOU = torch.tensor([[0.8, 0.6], [0.5, 0.2], [0.1, 0.0]])  # (Q, T) what the head predicts
TARGET_IOU = torch.tensor([[1.0, 0.5], [0.5, 0.5], [0.0, 0.0]])  # (Q, T) from the docstring


def _cells(*rows_cols: tuple[slice, slice]) -> torch.Tensor:
    grid = torch.full((4, 4), -10.0)
    for rows, cols in rows_cols:
        grid[rows, cols] = 10.0
    return grid


def _case() -> tuple[DecoderOutput, list[dict]]:
    a, b = (slice(0, 2), slice(0, 2)), (slice(3, 4), slice(0, 4))
    masks = torch.stack(
        [
            torch.stack([_cells(a), _cells(a, (slice(0, 2), slice(2, 4)))]),
            torch.stack([_cells((slice(3, 4), slice(0, 2)))] * 2),
            torch.stack([_cells()] * 2),
        ]
    )[None]  # (B=1, Q=3, T=2, 4, 4)
    tracks = torch.stack([(_cells(a) > 0), (_cells(b) > 0)]).to(torch.uint8)  # (N=2, 4, 4)
    tracks = tracks.repeat_interleave(2, 1).repeat_interleave(2, 2)  # (N, 8, 8) 2x2 blocks
    target = {"labels": torch.zeros(2, dtype=torch.int64), "masks": tracks[:, None].repeat(1, 2, 1, 1)}
    outputs = DecoderOutput(
        logits=torch.tensor([[[3.0, 0.0], [3.0, 0.0], [0.0, 3.0]]]),
        masks=masks,
        quality=PRED_IOU[None, :, :, None].clone(),  # (B, Q, T, 1)
        embeddings=None,
    )
    return outputs, [target]


def test_ious_and_best_track_targets() -> None:
    outputs, targets = _case()
    ious = binary_frame_ious(outputs.masks[0], targets[0]["masks"])  # (Q, N, T)
    assert ious[0, 0].tolist() == pytest.approx([1.0, 0.5], abs=1e-6)
    assert ious[1, 1].tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    assert float(ious[[0, 1, 2], [1, 0, 0]].abs().sum()) == 0.0 and float(ious[2].sum()) == 0.0
    target = best_track_iou_targets(outputs.masks[0], targets[0]["masks"])
    assert torch.allclose(target, TARGET_IOU, atol=1e-6)
    no_tracks = best_track_iou_targets(outputs.masks[0], targets[0]["masks"][:0])
    assert no_tracks.shape == (3, 2) and float(no_tracks.abs().sum()) == 0.0


def test_all_variant_is_the_mean_over_every_entry() -> None:
    outputs, targets = _case()
    # squared errors: 0.04 0.01 | 0.00 0.09 | 0.01 0.00 -> mean over 6
    loss = quality_loss_all(outputs.quality, outputs.masks, targets)
    assert float(loss) == pytest.approx(0.15 / 6, abs=1e-6)
    # DropLoss variant: the two entries of query 2 (target 0 <= 0.01) count as 0, still divided by 6
    dropped = quality_loss_all(outputs.quality, outputs.masks, targets, drop_tau=0.01)
    assert float(dropped) == pytest.approx(0.14 / 6, abs=1e-6)


def test_matched_variant_uses_only_matched_queries() -> None:
    outputs, targets = _case()
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    # matched: query 0 vs A (0.04 + 0.01) and query 1 vs B (0 + 0.09), summed, / num_masks = 2
    loss = quality_loss_matched(outputs.quality, outputs.masks, targets, indices, num_masks=2.0)
    assert float(loss) == pytest.approx(0.14 / 2, abs=1e-6)
    swapped = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]  # against the other track: every target IoU is 0
    loss = quality_loss_matched(outputs.quality, outputs.masks, targets, swapped, num_masks=2.0)
    assert float(loss) == pytest.approx((0.64 + 0.36 + 0.25 + 0.04) / 2, abs=1e-6)
    empty = [(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))]
    assert float(quality_loss_matched(outputs.quality, outputs.masks, targets, empty, 2.0)) == 0.0


def _criterion(quality_loss) -> VideoSetCriterion:
    return VideoSetCriterion(
        num_classes=1,
        matcher=VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64),
        class_weight=2.0,
        mask_weight=5.0,
        dice_weight=5.0,
        quality_weight=20.0,
        no_object_weight=0.1,
        num_points=64,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        quality_loss=quality_loss,
        deep_supervision=False,
    )


@pytest.mark.parametrize(("variant", "expected"), [("all", 0.15 / 6), ("matched", 0.14 / 2), (None, None)])
def test_criterion_variants(variant, expected) -> None:
    outputs, targets = _case()
    result = _criterion(variant).compute(outputs, targets, rand=make_rand(torch.Generator().manual_seed(0)))
    assert [(s.tolist(), t.tolist()) for s, t in result.indices[0]] == [([0, 1], [0, 1])]
    if expected is None:  # frozen head: no quality loss at all
        assert "loss_maskiou" not in result.raw
        return
    assert float(result.raw["loss_maskiou"]) == pytest.approx(expected, abs=1e-6)
    assert float(result.weighted["loss_maskiou"]) == pytest.approx(20.0 * expected, abs=1e-5)


def test_quality_targets_carry_no_gradient() -> None:
    outputs, targets = _case()
    outputs.masks.requires_grad_(True)
    outputs.quality.requires_grad_(True)
    loss = quality_loss_all(outputs.quality, outputs.masks, targets)
    loss.backward()
    assert outputs.masks.grad is None  # the IoU targets are computed without gradient
    expected = 2 * (PRED_IOU - TARGET_IOU) / 6  # d/dp mean((p - t)^2)
    assert torch.allclose(outputs.quality.grad[0, :, :, 0], expected, atol=1e-6)


def test_logit_threshold_equals_sigmoid_rule_in_float32() -> None:
    """The binarisation compares logits with SIGMOID_HALF_LOGIT instead of sigmoid > 0.5 (the reference)."""
    boundary = torch.tensor([SIGMOID_HALF_LOGIT], dtype=torch.float32).view(torch.int32).item()
    bits = torch.arange(boundary - 200_000, boundary + 200_000, dtype=torch.int32)
    near = torch.cat([bits.view(torch.float32), -bits.view(torch.float32)])  # every float32 near ±threshold
    wide = torch.randn(100_000, generator=torch.Generator().manual_seed(0)) * torch.logspace(-9, 2, 100_000)
    for x in (near, wide, torch.tensor([0.0, -0.0, 1e-30, -1e-30])):
        assert torch.equal(x > SIGMOID_HALF_LOGIT, torch.sigmoid(x) > 0.5)
