"""ResNet backbone with detectron2's structure and state-dict names, in plain torch.

Basic stem (7x7/2 conv + FrozenBN + ReLU + 3x3/2 max-pool), bottleneck blocks with the stride on the 3x3 conv
(``stride_in_1x1=False``), a 1x1 projection shortcut where the shape changes, FrozenBatchNorm everywhere.
Outputs ``res2..res5`` (strides 4, 8, 16, 32). Widths are parameters so that reduced test models share the code:
``stem_out_channels`` (64), ``width_per_group`` (64: bottleneck width of res2) and ``res2_out_channels`` (256);
each later stage doubles both.

Legend: ``N`` images (in the VIS model the ``B*T`` frames of a batch, fused), ``C`` channels, ``H, W`` the
input size (multiples of 32 in the VIS model, so every stride divides it).

Names: ``stem.conv1.{weight, norm.*}``, ``res{2..5}.{block}.conv{1,2,3}.{weight, norm.*}``,
``res{k}.0.shortcut.{weight, norm.*}``; FrozenBN buffers ``weight, bias, running_mean, running_var``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.model.backbone import Backbone, FeatureLevel

__all__ = ["DEPTH_BLOCKS", "FrozenBatchNorm2d", "ResNet"]

DEPTH_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) float -> (N, C, H, W): per channel
        ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``, fixed statistics in training too."""
        if not x.requires_grad:  # one fused op; the expanded form below saves memory when gradients flow
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints converted from Caffe2 may lack running statistics
        for name, default in (("running_mean", self.running_mean), ("running_var", self.running_var)):
            state_dict.setdefault(
                prefix + name,
                torch.zeros_like(default) if name == "running_mean" else torch.ones_like(default),
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ConvNorm(nn.Conv2d):
    """A bias-free conv followed by FrozenBN (detectron2's ``Conv2d`` with ``norm``): keys ``weight``, ``norm.*``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.norm = FrozenBatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) float -> (N, C_out, H', W') at the conv's stride: the conv, then FrozenBN (no
        ReLU)."""
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, width: int, stride: int):
        super().__init__()
        self.shortcut = ConvNorm(cin, cout, 1, stride) if cin != cout or stride != 1 else None
        self.conv1 = ConvNorm(cin, width, 1)
        self.conv2 = ConvNorm(width, width, 3, stride, 1)
        self.conv3 = ConvNorm(width, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) float -> (N, C_out, H/s, W/s) after the final ReLU, ``s`` the block's stride: 1x1
        reduce, 3x3 (stride s), 1x1 expand, plus the shortcut (a 1x1 projection where the shape changes)."""
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class Stem(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = ConvNorm(cin, cout, 7, 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) normalised images -> (N, C_stem, H/4, W/4): 7x7/2 conv, FrozenBN, ReLU, 3x3/2
        max-pool."""
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ResNet(Backbone):
    """Returns ``{"res2": ..., "res5": ...}``; ``feature_info`` (``channels``, ``strides``) describes them."""

    def __init__(
        self,
        depth: int = 50,
        stem_out_channels: int = 64,
        width_per_group: int = 64,
        res2_out_channels: int = 256,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        freeze: bool = False,
    ):
        super().__init__()
        if depth not in DEPTH_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTH_BLOCKS)}, got {depth}")
        self.stem = Stem(3, stem_out_channels)
        self.out_features = tuple(out_features)
        levels = []
        cin, width, cout = stem_out_channels, width_per_group, res2_out_channels
        self.stage_names = []
        for i, blocks in enumerate(DEPTH_BLOCKS[depth]):
            name = f"res{i + 2}"
            stage = nn.Sequential(
                *(
                    Bottleneck(cin if b == 0 else cout, cout, width, 2 if (b == 0 and i > 0) else 1)
                    for b in range(blocks)
                )
            )
            self.add_module(name, stage)
            self.stage_names.append(name)
            levels.append(FeatureLevel(name, cout, 2 ** (i + 2)))
            cin, width, cout = cout, width * 2, cout * 2
        self.feature_info = tuple(level for level in levels if level.name in self.out_features)
        if freeze:
            self.requires_grad_(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) float normalised RGB -> ``{name: (N, channels[name], H / s, W / s)}`` float (after
        ReLU), ``s = strides[name]``, for each of ``out_features`` (res2..res5: strides 4, 8, 16, 32).
        Images are independent: in the VIS model N = B*T, every frame of every video."""
        out = {}
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                out[name] = x
        return out
