"""The training criterion of the VIS model: matching, then CE + point-sampled BCE/Dice (+ DropLoss) + quality.

Legend: ``B`` videos, ``Q`` queries, ``K`` classes + 1 (last = no-object), ``T`` frames, ``h, w`` mask-logit
grid, ``N`` tracks of a video, ``H, W`` target-mask grid (the padded input), ``M`` matched pairs in the
batch, ``P`` points.

For each prediction round (the final output, then ``outputs.aux[0]``, ``[1]``, ... when deep supervision
is on) queries are matched to tracks, and the losses are computed with that matching. Keys follow the
reference: ``loss_ce``, ``loss_mask``, ``loss_dice``, ``loss_maskiou`` for the final output and
``loss_ce_0`` ... for the aux outputs. Random draws happen, in order, in the matcher (``rand(1, P, 2)``
per video) and in the mask losses (``rand(M*T, 3P, 2)`` then ``rand(M*T, P/4, 2)``).

    criterion = build_criterion(cfg.training)
    losses = criterion(outputs, targets)          # weighted, sum them for the total
    parts = criterion.compute(outputs, targets)   # .raw, .weighted, .indices, .num_masks
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from autoqvis.config import TrainingConfig
from autoqvis.losses.functional import classification_loss, dice_loss, droploss_keep, sigmoid_bce_loss
from autoqvis.losses.matcher import Indices, VideoHungarianMatcher
from autoqvis.losses.point_sampling import RandFn, importance_sample_points, point_sample
from autoqvis.losses.quality import quality_loss_all, quality_loss_matched
from autoqvis.structures import DecoderOutput, RoundOutput

__all__ = [
    "LossBreakdown",
    "QualityLoss",
    "VideoSetCriterion",
    "build_criterion",
    "criterion_flags_from_reference",
]

log = logging.getLogger(__name__)

QualityLoss = Literal["all", "matched"]


@dataclass
class LossBreakdown:
    """Everything one criterion call computed."""

    raw: dict[str, Tensor]  # unweighted losses, reference key names
    weighted: dict[str, Tensor]  # raw * weight (what training sums)
    indices: list[Indices]  # matching per prediction round in call order (final, aux 0, aux 1, ...)
    num_masks: float  # the normaliser of the mask and matched-quality losses

    @property
    def total(self) -> Tensor:
        return sum(self.weighted.values())


class VideoSetCriterion(nn.Module):
    """Set criterion of the class-agnostic VideoMask2Former with the quality head.

    Args:
        num_classes: foreground classes (1 for class-agnostic); logits have ``num_classes + 1`` entries.
        matcher: assigns queries to tracks for every prediction round.
        class_weight, mask_weight, dice_weight, quality_weight: loss weights (2, 5, 5, 20 in the paper).
        no_object_weight: CE weight of the no-object class (0.1).
        num_points: points per (track, frame) for the BCE/Dice losses (12544).
        oversample_ratio, importance_sample_ratio: importance sampling of those points (3.0, 0.75).
        droploss: drop the BCE/Dice loss of matched (track, frame) pairs with soft point IoU <= tau, and
            quality entries with target IoU <= tau (the official ``USE_DROPLOSS`` does both).
        droploss_tau: the DropLoss IoU threshold (0.01).
        quality_loss: "all" (every query vs its best-mean-IoU track, the code), "matched" (the paper), or
            None (frozen quality head: no quality loss).
        deep_supervision: also supervise every earlier round (``outputs.aux``) with the same weights.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: VideoHungarianMatcher,
        class_weight: float,
        mask_weight: float,
        dice_weight: float,
        quality_weight: float,
        no_object_weight: float,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        droploss: bool = False,
        droploss_tau: float = 0.01,
        quality_loss: QualityLoss | None = "all",
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if quality_loss not in ("all", "matched", None):
            raise ValueError(f"quality_loss must be 'all', 'matched' or None, got {quality_loss!r}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.loss_weights = {
            "loss_ce": class_weight,
            "loss_mask": mask_weight,
            "loss_dice": dice_weight,
            "loss_maskiou": quality_weight,
        }
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.droploss = droploss
        self.droploss_tau = droploss_tau
        self.quality_loss = quality_loss
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight)  # (K,): state-dict key criterion.empty_weight
        self._warned_missing_quality = False

    def weight_dict(self, num_aux: int) -> dict[str, float]:
        """Weight of every key for ``num_aux`` aux rounds (the reference's ``weight_dict``)."""
        base = {k: v for k, v in self.loss_weights.items() if k != "loss_maskiou" or self.quality_loss}
        out = dict(base)
        for i in range(num_aux if self.deep_supervision else 0):
            out.update({f"{k}_{i}": v for k, v in base.items()})
        return out

    def forward(
        self, outputs: DecoderOutput, targets: list[dict], rand: RandFn | None = None
    ) -> dict[str, Tensor]:
        """Weighted losses of a batch: ``{name: 0-d float32 tensor}``, each raw loss x its weight (sum them).

        Names: ``loss_ce``, ``loss_mask``, ``loss_dice`` (and ``loss_maskiou`` unless the quality loss is off)
        for the final round, the same with ``_0``, ``_1``, ... for each earlier round (deep supervision).
        ``outputs``: the decoder's :class:`~autoqvis.structures.DecoderOutput`: ``logits`` (B, Q, K) class
        logits, ``masks`` (B, Q, T, h, w) mask logits, ``quality`` (B, Q, T, 1) raw predicted IoUs (needed
        only with the quality loss) and ``aux``; ``targets``: per video ``labels`` (N,) int64 and ``masks`` (N, T, H, W) binary.
        ``rand`` replaces ``torch.rand`` for every draw. :meth:`compute` also returns the matchings."""
        return self.compute(outputs, targets, rand).weighted

    def compute(
        self, outputs: DecoderOutput, targets: list[dict], rand: RandFn | None = None
    ) -> LossBreakdown:
        """Raw and weighted losses, the matchings and the normaliser.

        Args:
            outputs: ``logits`` (B, Q, K), ``masks`` (B, Q, T, h, w), optional ``quality`` (B, Q, T, 1)
                and ``aux`` (earlier rounds: :class:`~autoqvis.structures.RoundOutput`).
            targets: per video ``labels`` (N,) int64, ``masks`` (N, T, H, W) float or uint8 (``ids`` ignored).
            rand: ``torch.rand``-like callable; default: the global torch RNG.
        """
        rand = torch.rand if rand is None else rand
        _check_inputs(outputs, targets, self.num_classes, self.deep_supervision)
        rounds: list[tuple[str, DecoderOutput | RoundOutput]] = [("", outputs)]
        if self.deep_supervision:
            rounds += [(f"_{i}", aux) for i, aux in enumerate(outputs.aux)]
        device = outputs.logits.device
        raw, weighted, all_indices = {}, {}, []
        with torch.autocast(device.type, enabled=False):
            num_masks = average_num_masks(targets, device)
            for suffix, out in rounds:
                indices = self.matcher(out, targets, rand=rand)
                all_indices.append(indices)
                final = not suffix
                for name, value in self._round_losses(out, targets, indices, num_masks, rand, final).items():
                    raw[name + suffix] = value
                    weighted[name + suffix] = value * self.loss_weights[name]
        return LossBreakdown(raw=raw, weighted=weighted, indices=all_indices, num_masks=num_masks)

    def _round_losses(
        self,
        out: DecoderOutput | RoundOutput,
        targets: list[dict],
        indices: Indices,
        num_masks: float,
        rand: RandFn,
        final: bool = True,
    ) -> dict[str, Tensor]:
        """Raw losses of one prediction round, in the reference order (labels, masks, quality). An earlier
        round the quality head did not score (``training.quality_outputs=last``) has no quality loss."""
        losses = {"loss_ce": self._classification(out, targets, indices)}
        losses.update(self._masks(out, targets, indices, num_masks, rand))
        if self.quality_loss is None:
            return losses
        if out.quality is None:
            if not final:
                return losses
            if not self._warned_missing_quality:
                log.warning(
                    "quality_loss=%r but the outputs carry no predicted IoU: skipped", self.quality_loss
                )
                self._warned_missing_quality = True
            return losses
        drop_tau = self.droploss_tau if self.droploss else None
        if self.quality_loss == "all":
            losses["loss_maskiou"] = quality_loss_all(out.quality, out.masks, targets, drop_tau)
        else:
            losses["loss_maskiou"] = quality_loss_matched(
                out.quality, out.masks, targets, indices, num_masks, drop_tau
            )
        return losses

    def _classification(self, out: RoundOutput, targets: list[dict], indices: Indices) -> Tensor:
        logits = out.logits  # (B, Q, K)
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device
        )
        for b, (src, tgt) in enumerate(indices):
            target_classes[b, src.to(logits.device)] = targets[b]["labels"][tgt.to(logits.device)]
        return classification_loss(logits, target_classes, self.empty_weight.float())

    def _masks(
        self, out: RoundOutput, targets: list[dict], indices: Indices, num_masks: float, rand: RandFn
    ) -> dict[str, Tensor]:
        """Point-sampled BCE and Dice of matched (track, frame) pairs (DropLoss-weighted when enabled)."""
        pred_masks = out.masks
        device = pred_masks.device
        batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)]).to(device)
        src_idx = torch.cat([src for src, _ in indices]).to(device)
        src = pred_masks[batch_idx, src_idx].float()  # (M, T, h, w)
        tgt = torch.cat([t["masks"][j.to(device)] for t, (_, j) in zip(targets, indices)]).to(
            src
        )  # (M, T, H, W)
        src, tgt = src.flatten(0, 1)[:, None], tgt.flatten(0, 1)[:, None]  # (M*T, 1, h, w), (M*T, 1, H, W)
        coords = importance_sample_points(
            src.detach(), self.num_points, self.oversample_ratio, self.importance_sample_ratio, rand
        )  # (M*T, P, 2)
        with torch.no_grad():
            labels = point_sample(tgt, coords).squeeze(1)  # (M*T, P)
        logits = point_sample(src, coords).squeeze(1)  # (M*T, P)
        keep = droploss_keep(logits, labels, self.droploss_tau) if self.droploss else None
        return {
            "loss_mask": sigmoid_bce_loss(logits, labels, num_masks, keep),
            "loss_dice": dice_loss(logits, labels, num_masks, keep),
        }

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, weights={self.loss_weights}, num_points={self.num_points}, "
            f"oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}, "
            f"droploss={self.droploss} (tau={self.droploss_tau}), quality_loss={self.quality_loss}, "
            f"deep_supervision={self.deep_supervision}"
        )


def average_num_masks(targets: list[dict], device: torch.device) -> float:
    """Tracks per process for normalisation: the world's total / world size, at least 1.

    All-reduced when ``torch.distributed`` is initialised (a no-op otherwise), as the reference does.
    """
    num_masks = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num_masks)
        world_size = dist.get_world_size()
    return torch.clamp(num_masks / world_size, min=1).item()


def build_criterion(training_cfg: TrainingConfig, num_classes: int = 1) -> VideoSetCriterion:
    """The criterion for a training stage; the matcher uses the loss weights as its cost weights."""
    cfg = training_cfg
    matcher = VideoHungarianMatcher(
        cost_class=cfg.class_weight,
        cost_mask=cfg.mask_weight,
        cost_dice=cfg.dice_weight,
        num_points=cfg.num_points,
    )
    return VideoSetCriterion(
        num_classes=num_classes,
        matcher=matcher,
        class_weight=cfg.class_weight,
        mask_weight=cfg.mask_weight,
        dice_weight=cfg.dice_weight,
        quality_weight=cfg.quality_weight,
        no_object_weight=cfg.no_object_weight,
        num_points=cfg.num_points,
        oversample_ratio=cfg.oversample_ratio,
        importance_sample_ratio=cfg.importance_sample_ratio,
        droploss=cfg.droploss,
        droploss_tau=cfg.droploss_tau,
        quality_loss=None if cfg.freeze_quality_head else cfg.quality_loss,
        deep_supervision=cfg.deep_supervision,
    )


_REFERENCE_LOSSES = {
    "labels": {},
    "masks": {},
    "masks_drop": {"droploss": True},
    "maskiou": {"quality_loss": "matched"},
    "maskiou_drop": {"quality_loss": "matched", "droploss": True},
    "maskiou_all": {"quality_loss": "all"},
    "maskiou_all_drop": {"quality_loss": "all", "droploss": True},
}


def criterion_flags_from_reference(losses: list[str]) -> dict:
    """``droploss`` and ``quality_loss`` for an official criterion loss list.

    Example: ``["labels", "masks_drop"]`` -> ``{"droploss": True, "quality_loss": None}``.
    """
    flags: dict = {"droploss": False, "quality_loss": None}
    for name in losses:
        if name not in _REFERENCE_LOSSES:
            raise ValueError(
                f"unsupported reference loss {name!r}; supported: {sorted(_REFERENCE_LOSSES)} "
                "(labels_drop, maskiou_bal and vit_maskiou are unused by the official configs)"
            )
        flags.update(_REFERENCE_LOSSES[name])
    if "labels" not in losses or not {"masks", "masks_drop"} & set(losses):
        raise ValueError(f"a reference loss list needs 'labels' and 'masks'/'masks_drop', got {losses}")
    return flags


def _check_inputs(
    outputs: DecoderOutput, targets: list[dict], num_classes: int, deep_supervision: bool
) -> None:
    """Shapes that every loss relies on, for each supervised round; errors say what arrived."""
    _check_round(outputs, num_classes, "outputs")
    for i, aux in enumerate(outputs.aux if deep_supervision else ()):
        _check_round(aux, num_classes, f"outputs.aux[{i}]")
        if aux.masks.shape[:3] != outputs.masks.shape[:3]:
            expected = tuple(outputs.masks.shape[:3])
            raise ValueError(
                f"outputs.aux[{i}].masks must share (B, Q, T) = {expected} with the final output, "
                f"got {tuple(aux.masks.shape)}"
            )
    B, _, T = outputs.masks.shape[:3]
    if len(targets) != B:
        raise ValueError(f"expected one target dict per video ({B}), got {len(targets)}")
    for b, t in enumerate(targets):
        labels, masks = t["labels"], t["masks"]
        if masks.dim() != 4 or masks.shape[:2] != (len(labels), T):
            raise ValueError(
                f"targets[{b}]['masks'] must be (N={len(labels)}, T={T}, H, W), got {tuple(masks.shape)}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"targets[{b}]['labels'] must lie in [0, {num_classes}), got {labels.tolist()}")


def _check_round(out: DecoderOutput | RoundOutput, num_classes: int, name: str) -> None:
    logits, masks = out.logits, out.masks
    if masks is None:
        raise ValueError(f"{name} needs masks (every supervised round computes them in training), got None")
    if logits.dim() != 3 or logits.shape[-1] != num_classes + 1:
        raise ValueError(f"{name}.logits must be (B, Q, {num_classes + 1}), got {tuple(logits.shape)}")
    if masks.dim() != 5 or masks.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"{name}.masks must be (B, Q, T, h, w) with the B, Q of the logits, got {tuple(masks.shape)}"
        )
    if out.quality is not None and tuple(out.quality.shape) != (*masks.shape[:3], 1):
        raise ValueError(f"{name}.quality must be {(*masks.shape[:3], 1)}, got {tuple(out.quality.shape)}")
