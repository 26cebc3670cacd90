"""The video masked-attention transformer decoder (VideoMask2Former) and the quality (mask-IoU) head.

Queries attend to one feature level per layer, round-robin from the coarsest, through cross-attention masked
by the previous round's predicted masks (sigmoid < 0.5 is blocked; a query whose every position is blocked
sees everything instead), then self-attention and an FFN, all post-norm. Every round predicts class logits
(foreground, no-object) and per-frame mask logits from the normalised queries; positions carry a 3-D sine
encoding over (t, h, w). State-dict names are the official ones.

Legend: ``B`` videos, ``T`` frames per video, ``Q`` queries, ``C`` hidden width (``C_m`` mask-feature
channels), ``L`` feature levels (3), ``H_l, W_l`` the grid of level ``l`` (strides 32, 16, 8: coarsest first),
``S_l = T*H_l*W_l`` the tokens of level ``l`` of one video, ``h, w`` the mask-feature grid (stride 4 of the
padded input).

Batch and time fused (``B*T``): the backbone and the pixel decoder see single frames, so the model stacks
every frame of every video into one batch, video by video (frame ``t`` of video ``b`` is row ``b*T + t``; see
``VideoMaskFormer.preprocess``). The decoder's inputs are such ``(B*T, ...)`` maps, and
:meth:`VideoMaskedDecoder.forward` is where they are unflattened to ``(B, T, ...)``, with B = ``num_videos``
given by the caller (training: the clips of a batch; eval: one video whose T is all of its frames).

Everything the decoder returns keeps B and T apart. The quality head takes the fused stride-32 level again and
unflattens it itself (its ``masks`` argument gives B and T).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.structures import DecoderOutput, RoundOutput

__all__ = ["MLP", "QualityHead", "VideoMaskedDecoder", "sine_position_3d"]


def sine_position_3d(x: Tensor, num_pos_feats: int, temperature: float = 10000.0) -> Tensor:
    """(B, T, C, H, W) -> (B, T, 2*num_pos_feats, H, W): 2-D sine encoding of (y, x) plus a temporal one."""
    B, T, _, H, W = x.shape
    scale, eps = 2 * math.pi, 1e-6
    ones = torch.ones(B, T, H, W, device=x.device, dtype=torch.float32)
    z = ones.cumsum(1)
    y = ones.cumsum(2)
    xx = ones.cumsum(3)
    z = z / (z[:, -1:] + eps) * scale
    y = y / (y[:, :, -1:] + eps) * scale
    xx = xx / (xx[:, :, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=x.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    pos_x = xx[..., None] / dim_t
    pos_y = y[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=5).flatten(4)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=5).flatten(4)
    pos = torch.cat((pos_y, pos_x), dim=4).permute(0, 1, 4, 2, 3)
    dim_tz = torch.arange(num_pos_feats * 2, dtype=torch.float32, device=x.device)
    dim_tz = temperature ** (2 * (dim_tz // 2) / (num_pos_feats * 2))
    pos_z = z[..., None] / dim_tz
    pos_z = (
        torch.stack((pos_z[..., 0::2].sin(), pos_z[..., 1::2].cos()), dim=5).flatten(4).permute(0, 1, 4, 2, 3)
    )
    return pos + pos_z


class SelfAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        _xavier_matrices(self)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """Self-attention among each video's queries, then the residual and LayerNorm.

        ``tgt`` (Q, B, C) float queries, sequence-first (``nn.MultiheadAttention`` without ``batch_first``);
        ``query_pos`` (Q, B, C) the learned query embedding, added to queries and keys (not values).
        Returns (Q, B, C).
        """
        q = k = tgt + query_pos
        return self.norm(tgt + self.self_attn(q, k, value=tgt, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        _xavier_matrices(self)

    def forward(
        self, tgt: Tensor, memory: Tensor, attn_mask: Tensor | None, pos: Tensor, query_pos: Tensor
    ) -> Tensor:
        """Masked cross-attention of the queries to one level's tokens of all of a video's frames.

        ``tgt`` (Q, B, C) float queries; ``memory`` (S_l, B, C) the level's tokens, frame-major
        (S_l = T*H_l*W_l); ``attn_mask`` bool, True = blocked: (Q, S_l) shared by every head (when B = 1),
        or (B*heads, Q, S_l), or None (attend everywhere); ``pos`` (S_l, B, C) the 3-D sine position, added to
        the keys; ``query_pos`` (Q, B, C), added to the queries. Returns (Q, B, C) after the residual and
        LayerNorm.
        """
        out = self.multihead_attn(
            query=tgt + query_pos, key=memory + pos, value=memory, attn_mask=attn_mask, need_weights=False
        )[0]
        return self.norm(tgt + out)


class FFNLayer(nn.Module):
    def __init__(self, d_model: int, dim_feedforward: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        _xavier_matrices(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """(Q, B, C) float queries -> (Q, B, C): linear, ReLU, linear, then the residual and LayerNorm."""
        return self.norm(tgt + self.linear2(F.relu(self.linear1(tgt))))


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class MLP(nn.Module):
    """Linear layers with ReLU between them (keys ``layers.{i}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims, [*dims[1:], output_dim], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., input_dim) float -> (..., output_dim): the linear layers, ReLU between them (none after the
        last)."""
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < len(self.layers) - 1 else layer(x)
        return x


class QualityHead(nn.Module):
    """Mask-Scoring IoU head: predicts each query's per-frame mask IoU.

    The stride-32 feature of each frame, resized to 14x14, and the query's mask logits, resized to 28x28 and
    max-pooled to 14x14, are concatenated; three 3x3 convs, a 3x3 stride-2 conv (7x7) and three FC layers give
    one raw value (no sigmoid; clamp to [0, 1] when reporting). Widths ``(in_channels, conv_channels, fc_dim)``
    default to the official (257, 256, 1024).
    """

    def __init__(self, in_channels: int = 257, conv_channels: int = 256, fc_dim: int = 1024):
        super().__init__()
        self.maskiou_fcn1 = nn.Conv2d(in_channels, conv_channels, 3, 1, 1)
        self.maskiou_fcn2 = nn.Conv2d(conv_channels, conv_channels, 3, 1, 1)
        self.maskiou_fcn3 = nn.Conv2d(conv_channels, conv_channels, 3, 1, 1)
        self.maskiou_fcn4 = nn.Conv2d(conv_channels, conv_channels, 3, 2, 1)
        self.maskiou_fc1 = nn.Linear(conv_channels * 7 * 7, fc_dim)
        self.maskiou_fc2 = nn.Linear(fc_dim, fc_dim)
        self.maskiou_fc3 = nn.Linear(fc_dim, 1)
        for conv in (self.maskiou_fcn1, self.maskiou_fcn2, self.maskiou_fcn3, self.maskiou_fcn4):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(conv.bias, 0)
        for fc in (self.maskiou_fc1, self.maskiou_fc2):
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.constant_(fc.bias, 0)
        nn.init.normal_(self.maskiou_fc3.weight, mean=0, std=0.01)
        nn.init.constant_(self.maskiou_fc3.bias, 0)

    def forward(self, features: Tensor, masks: Tensor, chunk: int = 0) -> Tensor:
        """features ((B*T), C, h, w), masks (B, Q, T, H, W) logits -> (B, Q, T, 1).

        ``features`` is the coarsest (stride-32) level with B and T fused, video by video (row ``b*T + t``);
        ``masks`` gives B and T. The output is float: the raw predicted IoU of each query's mask per frame.

        The first conv is linear in its input, so its feature part is computed once per frame and shared by
        every query (the official head repeats it per query); only the mask part runs per (query, frame).
        ``chunk`` > 0 scores that many (query, frame) pairs at a time (bounded memory, same numbers)."""
        B, Q, T = masks.shape[:3]
        C = features.shape[1]
        conv1 = self.maskiou_fcn1
        if conv1.in_channels != C + 1:
            raise ValueError(f"the quality head expects {conv1.in_channels - 1} feature channels, got {C}")
        feats = F.interpolate(features, size=(14, 14), mode="bilinear", align_corners=False)
        shared = F.conv2d(feats, conv1.weight[:, :C], conv1.bias, padding=1)  # (B*T, K, 14, 14)
        shared = shared.view(B, 1, T, *shared.shape[1:])
        m = masks.reshape(B, Q * T, 1, *masks.shape[-2:])
        out = []
        for b in range(B):
            step = chunk if chunk > 0 else Q * T
            for i in range(0, Q * T, step):
                part = m[b, i : i + step]
                frame = (
                    torch.arange(i, i + part.shape[0], device=masks.device) % T
                )  # pairs are (q, t), t fastest
                out.append(self._score(shared[b, 0, frame], part))
        return torch.cat(out).view(B, Q, T, 1)

    def _score(self, shared: Tensor, masks: Tensor) -> Tensor:
        """shared: the feature part of the first conv for each pair's frame; masks: (n, 1, H, W) logits."""
        masks = F.max_pool2d(F.interpolate(masks, size=(28, 28), mode="bilinear", align_corners=False), 2, 2)
        C = self.maskiou_fcn1.in_channels - 1
        x = F.relu(shared + F.conv2d(masks, self.maskiou_fcn1.weight[:, C:], None, padding=1))
        x = F.relu(self.maskiou_fcn2(x))
        x = F.relu(self.maskiou_fcn3(x))
        x = F.relu(self.maskiou_fcn4(x))
        x = F.relu(self.maskiou_fc1(x.flatten(1)))
        x = F.relu(self.maskiou_fc2(x))
        return self.maskiou_fc3(x)


class VideoMaskedDecoder(nn.Module):
    """Keys: ``query_feat``, ``query_embed``, ``level_embed``, ``transformer_{self,cross}_attention_layers``,
    ``transformer_ffn_layers``, ``decoder_norm``, ``class_embed``, ``mask_embed``, ``input_proj``,
    ``maskiou_feature_extractor`` (the quality head, when present)."""

    def __init__(
        self,
        in_channels: int = 256,
        hidden_dim: int = 256,
        num_queries: int = 100,
        nheads: int = 8,
        dim_feedforward: int = 2048,
        dec_layers: int = 9,
        mask_dim: int = 256,
        num_classes: int = 1,
        num_feature_levels: int = 3,
        enforce_input_project: bool = False,
        quality_head: tuple[int, int, int] | None = (257, 256, 1024),
    ):
        super().__init__()
        self.num_heads, self.num_layers, self.num_queries = nheads, dec_layers, num_queries
        self.num_feature_levels = num_feature_levels
        self.hidden_dim = hidden_dim
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers)
        )
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers)
        )
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.constant_(conv.bias, 0)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.maskiou_feature_extractor = QualityHead(*quality_head) if quality_head is not None else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        old = prefix + "static_query.weight"  # older checkpoints
        if old in state_dict and prefix + "query_feat.weight" not in state_dict:
            state_dict[prefix + "query_feat.weight"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        x: list[Tensor],
        mask_features: Tensor,
        num_videos: int,
        score_quality: str = "all",
        every_round_masks: bool = False,
    ) -> DecoderOutput:
        """Class logits, per-frame mask logits and predicted IoUs of the queries after every round.

        Args:
            x: the L multi-scale features, coarsest first, each (B*T, C, H_l, W_l) float with B and T fused
                video by video (see the module docstring).
            mask_features: (B*T, C_m, h, w) float per-pixel embeddings at stride 4; a mask logit is the dot
                product of a query's mask embedding with them.
            num_videos: B; the rows are B videos of T = rows / B frames each.
            score_quality: ``"all"`` runs the quality head on every round (training), ``"last"`` on the final
                round only, ``"none"`` skips it (frozen head in training, or post-processing scores the kept
                queries).
            every_round_masks: compute every round's full mask logits (always in training, where the earlier
                rounds are supervised; in eval only the final round's are needed).

        Returns a :class:`~autoqvis.structures.DecoderOutput`, B and T apart: ``logits`` (B, Q, num_classes + 1)
        float class logits of the final round (last: no object), ``masks`` (B, Q, T, h, w) float mask logits,
        ``quality`` (B, Q, T, 1) float raw predicted IoUs or None when not scored, ``embeddings`` (B, Q, C) the
        normalised final query features, and ``aux``: the earlier rounds (the first before any layer), each a
        :class:`~autoqvis.structures.RoundOutput` whose masks are None unless computed (see
        ``every_round_masks``). Each round's attention mask comes from :meth:`prediction_heads`.
        """
        bt, c_m, h_m, w_m = mask_features.shape
        bs = num_videos
        if bs < 1 or bt % bs:
            raise ValueError(f"{bt} frames cannot be {bs} videos of equal length (num_videos={num_videos})")
        t = bt // bs
        # the fused frames are unflattened here: (B*T, C_m, h, w) -> (B, T, C_m, h, w)
        mask_features = mask_features.view(bs, t, c_m, h_m, w_m)
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            h, w = x[i].shape[-2:]
            sizes.append((h, w))
            p = sine_position_3d(x[i].view(bs, t, -1, h, w), self.hidden_dim // 2).flatten(3)
            s = self.input_proj[i](x[i]).flatten(2) + self.level_embed.weight[i][None, :, None]
            c = s.shape[1]
            # (B*T, C, hw) -> (T*hw, B, C)
            pos.append(p.view(bs, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
            src.append(s.view(bs, t, c, h * w).permute(1, 3, 0, 2).flatten(0, 1))
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)
        # (B, C, T*H*W) once, so that every round's masks are one batched matmul without re-permuting
        mask_flat = mask_features.transpose(1, 2).reshape(bs, c_m, t * h_m * w_m)
        grid = (t, h_m, w_m)
        # The attention masks are the mask logits resized to a level. Resizing is linear, so resizing the mask
        # features once per level and projecting them gives the same logits without computing full-resolution
        # masks in rounds whose masks are not returned (eval) and without resizing (Q, T, H, W) every round.
        level_flat = [
            F.interpolate(mask_features.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            .view(bs, t, c_m, size[0] * size[1])
            .transpose(1, 2)
            .reshape(bs, c_m, t * size[0] * size[1])
            for size in sizes
        ]
        full_every_round = self.training or every_round_masks
        classes, masks = [], []
        cls, mask, blocked = self.prediction_heads(
            output, mask_flat if full_every_round else None, grid, level_flat[0]
        )
        classes.append(cls)
        masks.append(mask)
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            blocked[blocked.all(-1)] = False  # a query blocked everywhere attends everywhere instead
            # every head uses the same mask: one (Q, S) mask serves them all when there is one video
            attn_mask = blocked[0] if bs == 1 else blocked.repeat_interleave(self.num_heads, dim=0)
            output = self.transformer_cross_attention_layers[i](
                output, src[level], attn_mask, pos[level], query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_embed)
            output = self.transformer_ffn_layers[i](output)
            last = i == self.num_layers - 1
            cls, mask, blocked = self.prediction_heads(
                output,
                mask_flat if (full_every_round or last) else None,
                grid,
                level_flat[(i + 1) % self.num_feature_levels],
            )
            classes.append(cls)
            masks.append(mask)
        head = self.maskiou_feature_extractor
        ious: list[Tensor | None] = [None] * len(masks)
        if score_quality == "all" and not full_every_round:
            raise ValueError("score_quality='all' needs every round's masks: use it in training mode")
        if head is not None and score_quality == "all":
            ious = [head(x[0], m) for m in masks]
        elif head is not None and score_quality == "last":
            ious[-1] = head(x[0], masks[-1])
        return DecoderOutput(
            logits=classes[-1],
            masks=masks[-1],
            quality=ious[-1],
            embeddings=self.decoder_norm(output).transpose(0, 1),  # (B, Q, C) final query features
            aux=tuple(RoundOutput(*r) for r in zip(classes[:-1], masks[:-1], ious[:-1], strict=True)),
        )

    def prediction_heads(
        self, output: Tensor, mask_flat: Tensor | None, grid: tuple[int, int, int], level_flat: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Class logits (B, Q, num_classes + 1), mask logits (B, Q, T, h, w) (None when ``mask_flat`` is None)
        and the next round's blocked positions (B, Q, T*H_l*W_l) from the mask features resized to that level
        (sigmoid < 0.5; the caller then unblocks a query blocked everywhere, in place).

        ``output`` (Q, B, C) queries; ``mask_flat`` (B, C_m, T*h*w); ``grid`` (T, h, w); ``level_flat``
        (B, C_m, T*H_l*W_l)."""
        decoded = self.decoder_norm(output).transpose(0, 1)
        classes = self.class_embed(decoded)
        embed = self.mask_embed(decoded)
        b, q = embed.shape[:2]
        masks = torch.bmm(embed, mask_flat).view(b, q, *grid) if mask_flat is not None else None
        blocked = (torch.bmm(embed, level_flat).sigmoid() < 0.5).detach()
        return classes, masks, blocked
