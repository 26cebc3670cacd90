"""Hungarian matching of video-level queries to ground-truth tracks.

Legend: ``B`` videos, ``Q`` queries, ``K`` classes + 1 (last = no-object), ``T`` frames, ``h, w`` mask-logit
grid, ``N`` ground-truth tracks of one video, ``H, W`` target-mask grid (the padded input), ``P`` points.

Per video the cost of assigning query q to track n is

    cost_class * (-p_q(class_n)) + cost_mask * BCE(q, n) + cost_dice * Dice(q, n)

where BCE and Dice are evaluated on ``P`` random points shared by every query, track and frame (one
``rand(1, P, 2)`` draw per video). The assignment minimising the total cost is found with scipy's
``linear_sum_assignment``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from autoqvis.losses.point_sampling import RandFn, point_sample
from autoqvis.structures import RoundOutput

__all__ = ["VideoHungarianMatcher", "pairwise_dice_cost", "pairwise_sigmoid_bce_cost"]

Indices = list[tuple[Tensor, Tensor]]  # per video: (query indices, track indices), int64, same length


def pairwise_sigmoid_bce_cost(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean sigmoid BCE of every prediction (Q, S) against every target (N, S) -> (Q, N)."""
    num_samples = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = torch.einsum("qs,ns->qn", pos, labels) + torch.einsum("qs,ns->qn", neg, 1 - labels)
    return cost / num_samples


def pairwise_dice_cost(logits: Tensor, labels: Tensor) -> Tensor:
    """Dice loss ``1 - (2|p∩y| + 1) / (|p| + |y| + 1)`` of every prediction (Q, S) vs target (N, S).

    Returns (Q, N).
    """
    probs = logits.sigmoid()
    numerator = 2 * torch.einsum("qs,ns->qn", probs, labels)
    denominator = probs.sum(-1)[:, None] + labels.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


class VideoHungarianMatcher(nn.Module):
    """One-to-one assignment of queries to tracks per video (unmatched queries are "no object")."""

    def __init__(self, cost_class: float, cost_mask: float, cost_dice: float, num_points: int) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("the matcher needs at least one non-zero cost weight, got all three = 0")
        if num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self, logits: Tensor, masks: Tensor, labels: Tensor, target_masks: Tensor, rand: RandFn = torch.rand
    ) -> Tensor:
        """Matching cost (Q, N) of one video (float32, on the input device).

        Args:
            logits: (Q, K) class logits.
            masks: (Q, T, h, w) mask logits.
            labels: (N,) int64 track classes.
            target_masks: (N, T, H, W) binary masks (any dtype).
            rand: draws the (1, P, 2) shared point coordinates.
        """
        probs = logits.float().softmax(-1)  # (Q, K)
        cost_class = -probs[:, labels]  # (Q, N)
        masks = masks.float()
        target_masks = target_masks.to(masks)
        coords = rand(1, self.num_points, 2, device=masks.device, dtype=torch.float32)  # (1, P, 2)
        target_points = point_sample(target_masks, coords.repeat(target_masks.shape[0], 1, 1))  # (N, T, P)
        pred_points = point_sample(masks, coords.repeat(masks.shape[0], 1, 1))  # (Q, T, P)
        pred_points, target_points = pred_points.flatten(1), target_points.flatten(1)  # (Q, T*P), (N, T*P)
        cost_mask = pairwise_sigmoid_bce_cost(pred_points, target_points)
        cost_dice = pairwise_dice_cost(pred_points, target_points)
        return self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice

    @torch.no_grad()
    def forward(self, outputs: RoundOutput, targets: list[dict], rand: RandFn = torch.rand) -> Indices:
        """Per video ``(query_idx, track_idx)``: int64 CPU tensors of length min(Q, N), queries ascending.

        ``outputs``: one round's ``logits`` (B, Q, K) class logits and ``masks`` (B, Q, T, h, w) mask logits;
        ``targets``: per video ``labels`` (N,) int64 and ``masks`` (N, T, H, W) binary. Draws
        ``rand(1, P, 2)`` once per video, in order. No gradient.
        """
        indices = []
        with torch.autocast(outputs.masks.device.type, enabled=False):
            for b, target in enumerate(targets):
                cost = self.cost_matrix(
                    outputs.logits[b],
                    outputs.masks[b],
                    target["labels"],
                    target["masks"],
                    rand,
                )
                rows, cols = linear_sum_assignment(cost.cpu().numpy())
                indices.append(
                    (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
                )
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
            f"num_points={self.num_points}"
        )
