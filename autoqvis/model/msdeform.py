"""Multi-scale deformable attention (Deformable DETR) in plain torch.

Each query attends to ``n_points`` sampled locations per head and level around its reference point; values are
read by bilinear interpolation with zero padding (``grid_sample``, ``align_corners=False``) and combined with
softmax weights. No compiled op: the same numbers as the official ``ms_deform_attn_core_pytorch`` fallback.

Legend: ``N`` batch, ``S`` flattened value tokens over all levels, ``M`` heads, ``D`` channels per head,
``Lq`` queries, ``L`` levels, ``P`` points per level.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MSDeformAttn", "ms_deform_attn_core", "ms_deform_attn_reference", "ms_deform_attn_stacked"]


def ms_deform_attn_core(
    value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """value (N, S, M, D), locations (N, Lq, M, L, P, 2) in [0, 1] (x, y), weights (N, Lq, M, L, P)
    -> (N, Lq, M*D).

    Each level's samples are weighted and accumulated in place, point by point, instead of stacking all
    levels and points into one (N*M, D, Lq, L*P) tensor and reducing it (the official fallback): the same sum
    in a different order, without the two largest temporaries of the layer.
    """
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    # sample into (N*M, D, P, Lq) so that each point's values are contiguous over the queries
    grids = (2 * locations - 1).permute(0, 2, 3, 4, 1, 5)  # (N, M, L, P, Lq, 2)
    w = weights.permute(0, 2, 3, 4, 1).reshape(N * M, 1, L, P, Lq)
    out = None
    for level, (h, wd) in enumerate(shapes):
        v = values[level].flatten(2).transpose(1, 2).reshape(N * M, D, h, wd)
        g = grids[:, :, level].reshape(N * M, P, Lq, 2)
        sampled = F.grid_sample(
            v, g, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, P, Lq)
        for p in range(P):
            if out is None:
                out = sampled[:, :, p] * w[:, :, level, p]
            else:
                out.addcmul_(sampled[:, :, p], w[:, :, level, p])
    return out.view(N, M * D, Lq).transpose(1, 2).contiguous()


def ms_deform_attn_stacked(
    value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """The official fallback's formulation (stack every sample, multiply, reduce); kept for the benchmark."""
    N, _, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * locations - 1
    sampled = []
    for level, (h, w) in enumerate(shapes):
        v = values[level].flatten(2).transpose(1, 2).reshape(N * M, D, h, w)
        g = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    w = weights.transpose(1, 2).reshape(N * M, 1, Lq, L * P)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * w).sum(-1).view(N, M * D, Lq)
    return out.transpose(1, 2).contiguous()


def ms_deform_attn_reference(
    value: Tensor, shapes: list[tuple[int, int]], locations: Tensor, weights: Tensor
) -> Tensor:
    """The same computation written as explicit loops in float64 (for tests only: slow)."""
    value, locations, weights = value.double(), locations.double(), weights.double()
    N, _, M, D = value.shape
    _, Lq, _, _L, P, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(N, Lq, M, D, dtype=torch.float64)
    for n in range(N):
        for q in range(Lq):
            for m in range(M):
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(P):
                        # pixel coordinates with align_corners=False: centre of pixel i is at (i + 0.5) / size
                        x = locations[n, q, m, lvl, p, 0].item() * w - 0.5
                        y = locations[n, q, m, lvl, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        acc = torch.zeros(D, dtype=torch.float64)
                        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                                if 0 <= yy < h and 0 <= xx < w:
                                    acc += wy * wx * value[n, starts[lvl] + yy * w + xx, m]
                        out[n, q, m] += weights[n, q, m, lvl, p] * acc
    return out.reshape(N, Lq, M * D)


class MSDeformAttn(nn.Module):
    """Keys: ``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj`` (official names)."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self, query: Tensor, reference_points: Tensor, value_tokens: Tensor, shapes: list[tuple[int, int]]
    ) -> Tensor:
        """Each query attends to ``n_points`` sampled locations per head and level around its reference point.

        Args:
            query: (N, Lq, C) float queries (position embedding added), ``C = d_model = M*D``.
            reference_points: (N, Lq, L, 2) in [0, 1], (x, y) on each level, normalised to its grid.
            value_tokens: (N, S, C) float, every level's tokens flattened row-major and concatenated in the
                order of ``shapes``; ``S = sum(h*w)``.
            shapes: the (h, w) of each of the L levels.

        Returns (N, Lq, C) float: the weighted sampled values after ``output_proj``.
        """
        N, Lq, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(value_tokens).view(N, value_tokens.shape[1], M, self.d_model // M)
        offsets = self.sampling_offsets(query).view(N, Lq, M, L, P, 2)
        weights = F.softmax(self.attention_weights(query).view(N, Lq, M, L * P), -1).view(N, Lq, M, L, P)
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = (
            reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        )
        return self.output_proj(ms_deform_attn_core(value, shapes, locations, weights))
