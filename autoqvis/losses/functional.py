"""Loss functions of the criterion, one per loss, on plain tensors.

Legend: ``B`` videos, ``Q`` queries, ``K`` classes + 1 (last = no-object), ``R`` matched (track, frame)
pairs, ``P`` points.

Mask losses are sums over masks divided by ``num_masks`` (the number of ground-truth tracks in the
batch, averaged over the world), as in Mask2Former: a track of T frames contributes T per-frame terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "classification_loss",
    "dice_loss",
    "droploss_keep",
    "sigmoid_bce_loss",
    "soft_point_iou",
]


def classification_loss(logits: Tensor, target_classes: Tensor, class_weight: Tensor) -> Tensor:
    """Weighted cross-entropy over every query (matched: its track's class; else no-object).

    Args:
        logits: (B, Q, K) class logits.
        target_classes: (B, Q) int64 targets in [0, K).
        class_weight: (K,) per-class weight (the no-object entry is ``no_object_weight``).
    Returns: scalar, ``sum(w_i * nll_i) / sum(w_i)``.
    """
    return F.cross_entropy(logits.float().transpose(1, 2), target_classes, class_weight)  # (B, K, Q) input


def sigmoid_bce_loss(logits: Tensor, labels: Tensor, num_masks: float, keep: Tensor | None = None) -> Tensor:
    """Sigmoid BCE averaged over points, summed over masks (optionally kept ones only), / ``num_masks``.

    ``logits``, ``labels``: (R, P); ``keep``: (R,) 0/1 weights (DropLoss) or None.
    """
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)  # (R,)
    if keep is not None:
        loss = loss * keep
    return loss.sum() / num_masks


def dice_loss(logits: Tensor, labels: Tensor, num_masks: float, keep: Tensor | None = None) -> Tensor:
    """Dice loss ``1 - (2|p∩y| + 1) / (|p| + |y| + 1)`` per mask, summed (kept ones), / ``num_masks``.

    ``logits``, ``labels``: (R, P); ``keep``: (R,) 0/1 weights (DropLoss) or None.
    """
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    loss = 1 - (numerator + 1) / (denominator + 1)  # (R,)
    if keep is not None:
        loss = loss * keep
    return loss.sum() / num_masks


def soft_point_iou(logits: Tensor, labels: Tensor) -> Tensor:
    """Soft IoU ``Σσ(l)·y / (Σσ(l) + Σy - Σσ(l)·y)`` on the sampled points: (R, P) -> (R,)."""
    probs = logits.sigmoid()
    intersection = (probs * labels).sum(-1)
    union = (probs + labels).sum(-1) - intersection
    return intersection / union


def droploss_keep(logits: Tensor, labels: Tensor, tau: float) -> Tensor:
    """DropLoss weights (R,): 0.0 where the soft point IoU is <= ``tau``, else 1.0 (no gradient).

    A NaN IoU (empty prediction and target: 0/0) keeps the loss, exactly like the reference
    (``iou.le(tau)`` is False for NaN).
    """
    with torch.no_grad():
        return (~soft_point_iou(logits, labels).le(tau)).to(logits.dtype)
