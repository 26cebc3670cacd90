"""The MSDeformAttn pixel decoder of Mask2Former: a deformable-attention encoder over the three coarsest
backbone levels, then a GroupNorm FPN down to the common stride (4) and a 1x1 conv giving the mask features.

Legend: ``N`` images (in the VIS model the ``B*T`` frames of a batch, fused: every frame is decoded on its
own), ``C`` ``conv_dim`` channels, ``L`` encoder levels (res5, res4, res3: coarsest first), ``H_l, W_l`` the
grid of level ``l``, ``S = sum_l H_l*W_l`` the tokens of all levels of one image, ``H, W`` the padded input.

State-dict names follow the official module (``input_proj.{i}.{0,1}``, ``transformer.level_embed``,
``transformer.encoder.layers.{i}.*``, ``adapter_{k}``, ``layer_{k}``, ``mask_features``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.model.msdeform import MSDeformAttn

__all__ = ["MSDeformAttnPixelDecoder", "sine_position_2d"]


def sine_position_2d(x: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """Normalised sine position encoding of an (N, C, H, W) map (no padding mask) -> (N, 2*num_pos_feats, H, W)."""
    N, _, H, W = x.shape
    scale, eps = 2 * math.pi, 1e-6
    ones = torch.ones(N, H, W, device=x.device, dtype=torch.float32)
    y = ones.cumsum(1)
    xx = ones.cumsum(2)
    y = y / (y[:, -1:, :] + eps) * scale
    xx = xx / (xx[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = xx[..., None] / dim_t
    pos_y = y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class EncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm."""

    def __init__(self, d_model: int, d_ffn: int, dropout: float, n_levels: int, n_heads: int, n_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self, src: Tensor, pos: Tensor, reference_points: Tensor, shapes: list[tuple[int, int]]
    ) -> Tensor:
        """Deformable self-attention over all levels' tokens, then the FFN, each with residual and post-norm.

        ``src`` (N, S, C) float tokens; ``pos`` (N, S, C) their position + level embeddings (added to the
        queries only); ``reference_points`` (N, S, L, 2) in [0, 1]; ``shapes`` the L (H_l, W_l).
        Returns (N, S, C).
        """
        src = self.norm1(src + self.dropout1(self.self_attn(src + pos, reference_points, src, shapes)))
        ffn = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(**layer_kwargs) for _ in range(num_layers))

    @staticmethod
    def reference_points(shapes: list[tuple[int, int]], device: torch.device) -> Tensor:
        """(1, S, L, 2): every token's pixel centre, normalised, repeated for each level (no padding)."""
        points = []
        for h, w in shapes:
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing="ij",
            )
            points.append(torch.stack((ref_x.reshape(-1)[None] / w, ref_y.reshape(-1)[None] / h), -1))
        ref = torch.cat(points, 1)
        return ref[:, :, None].expand(-1, -1, len(shapes), -1)

    def forward(self, src: Tensor, pos: Tensor, shapes: list[tuple[int, int]]) -> Tensor:
        """(N, S, C) float tokens and their (N, S, C) position + level embeddings -> (N, S, C) after every
        layer; each token's reference point is its own pixel centre, on every level (``shapes``: the L
        (H_l, W_l))."""
        reference_points = self.reference_points(shapes, src.device).expand(src.shape[0], -1, -1, -1)
        for layer in self.layers:
            src = layer(src, pos, reference_points, shapes)
        return src


class DeformableTransformer(nn.Module):
    """Holds ``level_embed`` and the encoder (the official ``MSDeformAttnTransformerEncoderOnly``)."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        num_layers: int,
        d_ffn: int,
        dropout: float,
        n_levels: int,
        n_points: int,
    ):
        super().__init__()
        self.encoder = Encoder(
            num_layers,
            d_model=d_model,
            d_ffn=d_ffn,
            dropout=dropout,
            n_levels=n_levels,
            n_heads=n_heads,
            n_points=n_points,
        )
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: list[Tensor], pos_embeds: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """L projected maps ``srcs`` (N, C, H_l, W_l) and their sine positions ``pos_embeds`` (same shapes),
        coarsest first -> (the encoded tokens (N, S, C), row-major per level in that order; the L (H_l, W_l)).
        The level embedding is added to the positions."""
        shapes = [(int(s.shape[2]), int(s.shape[3])) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        pos = torch.cat(
            [
                p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                for i, p in enumerate(pos_embeds)
            ],
            1,
        )
        return self.encoder(src, pos, shapes), shapes


def _xavier_conv(conv: nn.Conv2d) -> None:
    """detectron2's ``c2_xavier_fill``: kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


class ConvGN(nn.Conv2d):
    """Conv (no bias) + GroupNorm(32) [+ ReLU]: keys ``weight``, ``norm.*`` (detectron2's Conv2d with norm)."""

    def __init__(self, cin: int, cout: int, kernel: int, relu: bool):
        super().__init__(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = nn.GroupNorm(32, cout)
        self.relu = relu
        _xavier_conv(self)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) float -> (N, C_out, H, W): the conv ("same" padding), GroupNorm(32), ReLU if
        ``relu``."""
        x = self.norm(super().forward(x))
        return F.relu(x) if self.relu else x


class MSDeformAttnPixelDecoder(nn.Module):
    """Input: backbone features by name; output: (mask_features at the common stride, multi-scale features from
    the coarsest level: the ``num_feature_levels`` maps the transformer decoder reads)."""

    def __init__(
        self,
        in_channels: dict[str, int],
        in_strides: dict[str, int],
        conv_dim: int = 256,
        mask_dim: int = 256,
        transformer_in_features: tuple[str, ...] = ("res3", "res4", "res5"),
        encoder_layers: int = 6,
        n_heads: int = 8,
        d_ffn: int = 1024,
        dropout: float = 0.0,
        n_points: int = 4,
        common_stride: int = 4,
        num_feature_levels: int = 3,
    ):
        super().__init__()
        self.in_features = sorted(in_channels, key=lambda k: in_strides[k])  # fine to coarse
        self.transformer_in_features = sorted(transformer_in_features, key=lambda k: in_strides[k])
        n_levels = len(self.transformer_in_features)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for name in reversed(self.transformer_in_features)  # coarse to fine
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)
        self.transformer = DeformableTransformer(
            conv_dim, n_heads, encoder_layers, d_ffn, dropout, n_levels, n_points
        )
        self.conv_dim = conv_dim
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        _xavier_conv(self.mask_features)
        self.num_feature_levels = num_feature_levels
        finest_transformer_stride = min(in_strides[k] for k in self.transformer_in_features)
        self.num_fpn_levels = int(math.log2(finest_transformer_stride) - math.log2(common_stride))
        self.fpn_features = self.in_features[: self.num_fpn_levels]
        for idx, name in enumerate(self.fpn_features):
            self.add_module(f"adapter_{idx + 1}", ConvGN(in_channels[name], conv_dim, 1, relu=False))
            self.add_module(f"layer_{idx + 1}", ConvGN(conv_dim, conv_dim, 3, relu=True))

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Backbone maps -> (mask features, multi-scale features), every image on its own.

        ``features``: ``{name: (N, in_channels[name], H / stride, W / stride)}`` (res2..res5), cast to
        float32. Returns ``mask_features`` (N, mask_dim, H/4, W/4) float, the per-pixel embeddings that mask
        logits are read from, and ``num_feature_levels`` maps (N, C, H_l, W_l), coarsest first (strides 32,
        16, 8): the encoder outputs the transformer decoder attends to.
        """
        srcs, pos = [], []
        for idx, name in enumerate(reversed(self.transformer_in_features)):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(sine_position_2d(x, self.conv_dim // 2))
        memory, shapes = self.transformer(srcs, pos)
        N = memory.shape[0]
        out = [
            z.transpose(1, 2).reshape(N, -1, h, w)
            for z, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes, strict=True)
        ]
        for idx in reversed(range(self.num_fpn_levels)):  # coarse to fine
            lateral = getattr(self, f"adapter_{idx + 1}")(features[self.fpn_features[idx]].float())
            y = lateral + F.interpolate(
                out[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False
            )
            out.append(getattr(self, f"layer_{idx + 1}")(y))
        return self.mask_features(out[-1]), out[: self.num_feature_levels]
