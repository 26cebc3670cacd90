"""DropLoss on a hand-built video whose losses are computed by hand.

One video, T = 2 frames, one track: a full mask in frame 0, absent (empty) in frame 1. Query 0 has constant
logits +2 (frame 0) and -3 (frame 1); query 1 has -5 everywhere and loses the matching. Points are drawn
inside [0.2, 0.8]², where bilinear sampling of a constant grid returns the constant, so every sampled
prediction equals the frame's constant and every label is 1 (frame 0) or 0 (frame 1).
"""

from __future__ import annotations

import math

import pytest
import torch

from autoqvis.losses.criterion import VideoSetCriterion
from autoqvis.losses.functional import droploss_keep, soft_point_iou
from autoqvis.losses.matcher import VideoHungarianMatcher
from autoqvis.structures import DecoderOutput

P = 16  # points per (track, frame)


def _inner_rand(*shape, device=None, dtype=None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(sum(shape))
    return 0.2 + 0.6 * torch.rand(*shape, generator=gen, dtype=dtype or torch.float32)


def _case() -> tuple[DecoderOutput, list[dict]]:
    masks = torch.empty(1, 2, 2, 4, 4)  # (B, Q, T, h, w)
    masks[0, 0, 0], masks[0, 0, 1] = 2.0, -3.0
    masks[0, 1] = -5.0
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # (B, Q, K): query 0 foreground, query 1 no-object
    target_masks = torch.zeros(1, 2, 8, 8, dtype=torch.uint8)  # (N, T, H, W)
    target_masks[0, 0] = 1
    targets = [{"labels": torch.tensor([0]), "ids": torch.tensor([[0, -1]]), "masks": target_masks}]
    return DecoderOutput(logits, masks, None, embeddings=None), targets


def _criterion(droploss: bool) -> VideoSetCriterion:
    return VideoSetCriterion(
        num_classes=1,
        matcher=VideoHungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=P),
        class_weight=2.0,
        mask_weight=5.0,
        dice_weight=5.0,
        quality_weight=20.0,
        no_object_weight=0.1,
        num_points=P,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        droploss=droploss,
        droploss_tau=0.01,
        quality_loss=None,
        deep_supervision=False,
    )


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# by hand: BCE(x, y=1) = log(1 + e^-x), BCE(x, y=0) = log(1 + e^x); Dice = 1 - (2Σpy + 1) / (Σp + Σy + 1)
BCE_FRAME0 = math.log(1 + math.exp(-2.0))
BCE_FRAME1 = math.log(1 + math.exp(-3.0))
DICE_FRAME0 = 1 - (2 * P * _sigmoid(2.0) + 1) / (P * _sigmoid(2.0) + P + 1)
DICE_FRAME1 = 1 - 1 / (P * _sigmoid(-3.0) + 1)
# CE: query 0 -> class 0 (weight 1), query 1 -> no-object (weight 0.1); weighted mean of the NLLs
CE = (math.log(1 + math.exp(-2.0)) + 0.1 * math.log(1 + math.exp(-1.0))) / 1.1


@pytest.mark.parametrize("droploss", [False, True])
def test_empty_target_frame_is_dropped_and_ce_unchanged(droploss: bool) -> None:
    outputs, targets = _case()
    result = _criterion(droploss).compute(outputs, targets, rand=_inner_rand)
    assert [(s.tolist(), t.tolist()) for s, t in result.indices[0]] == [([0], [0])]
    assert result.num_masks == 1.0
    expected_mask = BCE_FRAME0 + (0.0 if droploss else BCE_FRAME1)  # frame 1: soft IoU 0 <= 0.01
    expected_dice = DICE_FRAME0 + (0.0 if droploss else DICE_FRAME1)
    assert float(result.raw["loss_mask"]) == pytest.approx(expected_mask, rel=1e-5)
    assert float(result.raw["loss_dice"]) == pytest.approx(expected_dice, rel=1e-5)
    assert float(result.raw["loss_ce"]) == pytest.approx(CE, rel=1e-6)
    assert set(result.raw) == {"loss_ce", "loss_mask", "loss_dice"}
    assert float(result.weighted["loss_mask"]) == pytest.approx(5.0 * expected_mask, rel=1e-5)


def test_dropped_frame_gets_no_mask_gradient() -> None:
    outputs, targets = _case()
    outputs.masks.requires_grad_(True)
    losses = _criterion(droploss=True)(outputs, targets, rand=_inner_rand)
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    grad = outputs.masks.grad  # (B, Q, T, h, w)
    assert float(grad[0, 0, 0].abs().sum()) > 0
    assert float(grad[0, 0, 1].abs().sum()) == 0.0  # the absent frame
    assert float(grad[0, 1].abs().sum()) == 0.0  # the unmatched query


def test_keep_threshold_and_nan_rule() -> None:
    labels = torch.zeros(3, 100)
    labels[:, 0] = 1.0  # one positive point out of 100
    logits = torch.full((3, 100), -20.0)
    logits[0, 0] = 0.0  # IoU = σ(0) / (σ(0) + 99σ(-20) + 1 - σ(0)) ≈ 0.5: kept
    logits[1, 1:] = math.log(
        0.0101 / (1 - 0.0101)
    )  # σ = 0.0101 on negatives: IoU ≈ σ(-20)/(99·0.0101 + 1) < 0.01
    logits[2] = -200.0  # σ underflows to 0 ...
    labels[2] = 0.0  # ... and the target is empty: IoU = 0/0 = NaN, which the reference keeps
    iou = soft_point_iou(logits, labels)
    assert float(iou[0]) > 0.01 and float(iou[1]) <= 0.01 and math.isnan(float(iou[2]))
    assert droploss_keep(logits, labels, tau=0.01).tolist() == [1.0, 0.0, 1.0]
