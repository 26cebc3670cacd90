"""What a backbone of the VIS model is: images in, a map per level out, and the levels declared up front (as
timm's ``feature_info`` and detectron2's ``ShapeSpec``), so that the pixel decoder is built from the
declaration, not from a name.

Legend: ``N`` images (in the VIS model the ``B*T`` frames of a batch, fused), ``C_l`` the channels of level
``l``, ``s_l`` its stride.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["Backbone", "FeatureLevel"]


@dataclass(frozen=True)
class FeatureLevel:
    """One output map of a backbone: its key in the output dict, its channels and its stride."""

    name: str  # "res2" ... "res5"
    channels: int
    stride: int


class Backbone(nn.Module):
    """``forward((N, 3, H, W) float normalised images) -> {level.name: (N, level.channels, H / level.stride,
    W / level.stride)}`` for every level of ``feature_info`` (H and W multiples of the largest stride).

    Subclasses set ``feature_info`` in ``__init__``; ``channels`` and ``strides`` are the same by name."""

    feature_info: tuple[FeatureLevel, ...] = ()

    @property
    def channels(self) -> dict[str, int]:
        return {level.name: level.channels for level in self.feature_info}

    @property
    def strides(self) -> dict[str, int]:
        return {level.name: level.stride for level in self.feature_info}
