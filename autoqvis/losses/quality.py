"""Quality (mask-IoU) loss: the quality head regresses the per-frame IoU of each query's binarised mask.

Legend: ``B`` videos, ``Q`` queries, ``T`` frames, ``h, w`` mask-logit grid, ``N`` ground-truth tracks,
``H, W`` target-mask grid (the padded input), ``M`` matched queries in the batch.

Target IoU of a prediction and a track in frame t: the logits are upsampled bilinearly to (H, W), the
mask is ``sigmoid > 0.5``, the track's mask is ``> 0.5``, and ``IoU = |p∩g| / (|p∪g| + 1e-6)``. Two
target assignments:

- ``"all"`` (the official code, ``maskiou_all``): every query is regressed to the per-frame IoUs of the
  track with the highest mean IoU over the T frames (first track on ties; zeros with no tracks); the loss
  is the MSE averaged over all B·Q·T entries.
- ``"matched"`` (the paper's wording, code ``maskiou``): only Hungarian-matched queries, against their
  matched track; squared errors summed over frames and queries, / ``num_masks``.

With DropLoss (``drop_tau`` set: the official ``maskiou_all_drop`` / ``maskiou_drop``), entries whose target
IoU is <= ``drop_tau`` contribute zero (the mean still counts them). Targets never carry gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "SIGMOID_HALF_LOGIT",
    "best_track_iou_targets",
    "binary_frame_ious",
    "quality_loss_all",
    "quality_loss_matched",
]

_CHUNK_ELEMENTS = 1 << 24  # upsampled mask elements handled at once (bounds memory at full resolution)
# float32 torch.sigmoid(x) > 0.5 holds exactly when x > 1.5 * 2**-24 (checked over every float32 near the
# boundary on CPU, tests/losses/test_quality.py); comparing the logit skips a sigmoid per upsampled pixel.
# Another sigmoid implementation could only disagree for logits within ~1e-7 of zero.
SIGMOID_HALF_LOGIT = 1.5 * 2**-24


def _binarise(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """(R, T, h, w) logits -> (R, T, H*W) float32 0/1 masks at ``size`` (bilinear, then sigmoid > 0.5)."""
    R, T = masks.shape[:2]
    up = F.interpolate(masks.float().flatten(0, 1)[:, None], size=size, mode="bilinear", align_corners=False)
    return up.gt_(SIGMOID_HALF_LOGIT).view(R, T, -1)  # (R, T, H*W), 1.0 where sigmoid(logit) > 0.5


def binary_frame_ious(pred_masks: Tensor, target_masks: Tensor) -> Tensor:
    """Per-frame IoU of every prediction with every track: (Q, T, h, w) x (N, T, H, W) -> (Q, N, T).

    Float32; counts are exact (0/1 products summed below 2**24 per frame, else float64 is used).
    """
    Q, T = pred_masks.shape[:2]
    N = target_masks.shape[0]
    size = tuple(target_masks.shape[-2:])
    count_dtype = torch.float32 if size[0] * size[1] < (1 << 24) else torch.float64
    with torch.no_grad(), torch.autocast(pred_masks.device.type, enabled=False):
        targets = (target_masks > 0.5).to(count_dtype).flatten(2)  # (N, T, H*W)
        target_area = targets.sum(-1)  # (N, T)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, T * size[0] * size[1]))
        ious = []
        for start in range(0, Q, chunk):
            preds = _binarise(pred_masks[start : start + chunk].detach(), size).to(count_dtype)  # (q, T, H*W)
            inter = torch.einsum("qts,nts->qnt", preds, targets)  # (q, N, T)
            union = preds.sum(-1)[:, None, :] + target_area[None] - inter  # (q, N, T)
            ious.append(inter.float() / (union.float() + 1e-6))
        if not ious:
            return pred_masks.new_zeros((0, N, T), dtype=torch.float32)
        return torch.cat(ious)  # (Q, N, T)


def best_track_iou_targets(pred_masks: Tensor, target_masks: Tensor) -> Tensor:
    """IoU targets (Q, T) of one video: each query's per-frame IoUs with its best-mean-IoU track.

    ``pred_masks`` (Q, T, h, w) logits, ``target_masks`` (N, T, H, W); zeros when N = 0.
    """
    Q, T = pred_masks.shape[:2]
    if target_masks.shape[0] == 0:
        return torch.zeros((Q, T), dtype=torch.float32, device=pred_masks.device)
    ious = binary_frame_ious(pred_masks, target_masks)  # (Q, N, T)
    best = ious.mean(-1).argmax(-1)  # (Q,) first maximum on ties
    return ious[torch.arange(Q, device=ious.device), best]  # (Q, T)


def quality_loss_all(
    pred_iou: Tensor, pred_masks: Tensor, targets: list[dict], drop_tau: float | None = None
) -> Tensor:
    """MSE of ``pred_iou`` (B, Q, T, 1) against best-track IoU targets of every query, mean over B·Q·T.

    ``pred_masks`` (B, Q, T, h, w) logits; ``targets`` per video with ``masks`` (N, T, H, W).
    """
    target = torch.stack([best_track_iou_targets(m, t["masks"]) for m, t in zip(pred_masks, targets)])
    pred = pred_iou.float().squeeze(-1).flatten()  # (B*Q*T,)
    target = target.flatten()  # (B*Q*T,)
    if drop_tau is None:
        return F.mse_loss(pred, target, reduction="mean")
    keep = (~target.le(drop_tau)).float()
    return (F.mse_loss(pred, target, reduction="none") * keep).mean()


def quality_loss_matched(
    pred_iou: Tensor,
    pred_masks: Tensor,
    targets: list[dict],
    indices: list[tuple[Tensor, Tensor]],
    num_masks: float,
    drop_tau: float | None = None,
) -> Tensor:
    """Squared error of matched queries' ``pred_iou`` vs their track's per-frame IoU, summed, / ``num_masks``.

    ``pred_iou`` (B, Q, T, 1), ``pred_masks`` (B, Q, T, h, w); ``indices`` per video (query_idx, track_idx).
    Zero (still attached to the graph) when nothing is matched.
    """
    preds, target_ious = [], []
    for b, (src, tgt) in enumerate(indices):
        if len(src) == 0:
            continue
        src, tgt = src.to(pred_iou.device), tgt.to(pred_iou.device)
        ious = binary_frame_ious(pred_masks[b, src], targets[b]["masks"])  # (M_b, N, T)
        target_ious.append(ious[torch.arange(len(src), device=ious.device), tgt].clamp(0, 1))  # (M_b, T)
        preds.append(pred_iou[b, src].float().squeeze(-1))  # (M_b, T)
    if not preds:
        return pred_iou.sum() * 0.0
    pred, target = torch.cat(preds), torch.cat(target_ious)  # (M, T)
    loss = F.mse_loss(pred, target, reduction="none")
    if drop_tau is not None:
        loss = loss * (~target.le(drop_tau)).float()
    return loss.sum() / num_masks
