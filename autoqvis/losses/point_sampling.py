"""Point sampling on mask logits (PointRend-style), with injectable randomness.

Legend: ``R`` masks (one per object and frame, or one per query), ``C`` channels, ``H, W`` grid size,
``P`` points. Point coordinates are normalised to [0, 1] x [0, 1] as (x, y), i.e. ``grid_sample`` order.

Every random draw goes through a ``rand`` callable with the signature of ``torch.rand``
(``rand(*shape, device=..., dtype=...)``), so tests can replay recorded draws and a caller can pin
a ``torch.Generator`` with :func:`make_rand`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RandFn", "importance_sample_points", "make_rand", "point_sample", "point_uncertainty"]

RandFn = Callable[..., Tensor]  # rand(*shape, device=..., dtype=...) -> uniform [0, 1) tensor of `shape`


def make_rand(generator: torch.Generator | None = None) -> RandFn:
    """``torch.rand`` drawing from ``generator`` (the global RNG when None)."""
    if generator is None:
        return torch.rand
    return partial(torch.rand, generator=generator)


def point_sample(features: Tensor, coords: Tensor) -> Tensor:
    """Bilinear samples of ``features`` (R, C, H, W) at ``coords`` (R, P, 2) in [0, 1]² -> (R, C, P).

    Same arithmetic as detectron2's ``point_sample`` (``grid_sample``, ``align_corners=False``, zero
    padding): a coordinate maps to ``2 * c - 1`` in grid space.
    """
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must be (R, P, 2), got {tuple(coords.shape)}")
    grid = (2.0 * coords.to(features.dtype) - 1.0).unsqueeze(2)  # (R, P, 1, 2)
    return F.grid_sample(features, grid, align_corners=False).squeeze(3)  # (R, C, P)


def point_uncertainty(logits: Tensor) -> Tensor:
    """Uncertainty of class-agnostic logits (R, 1, P): ``-|logit|`` (highest at the decision boundary)."""
    return -logits.abs()


def importance_sample_points(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    rand: RandFn = torch.rand,
) -> Tensor:
    """Point coordinates (R, P, 2) biased towards uncertain locations of ``logits`` (R, 1, H, W).

    Draws ``int(P * oversample_ratio)`` uniform candidates per mask, keeps the
    ``int(importance_sample_ratio * P)`` most uncertain ones (by the sampled logit), and fills up with
    fresh uniform points. Two draws, in this order: ``rand(R, P*ratio, 2)`` then ``rand(R, P - kept, 2)``
    (the second only when positive) - the order of detectron2's
    ``get_uncertain_point_coords_with_randomness``. Not differentiable (coordinates only).
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}")
    num_masks = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    with torch.no_grad():
        candidates = rand(num_masks, num_candidates, 2, device=logits.device, dtype=torch.float32)
        uncertainty = point_uncertainty(point_sample(logits, candidates))  # (R, 1, P*ratio)
        idx = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]  # (R, P_uncertain)
        coords = torch.gather(candidates, 1, idx.unsqueeze(-1).expand(-1, -1, 2))  # (R, P_uncertain, 2)
        if num_random > 0:
            fresh = rand(num_masks, num_random, 2, device=logits.device, dtype=torch.float32)
            coords = torch.cat([coords, fresh], dim=1)  # (R, P, 2)
    return coords
