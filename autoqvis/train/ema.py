"""An exponential moving average of the weights (Mean Teacher, Tarvainen & Valpola 2017; Unbiased Teacher).

    ema = WeightAverage(model, decay=0.999)
    for it in range(max_iters):
        ...optimizer.step()
        ema.update(model, it)
    ema.copy_to(model)            # the averaged weights are the stage's output

Only what training changes is averaged: the trainable parameters and the floating-point buffers (a frozen
ViT is left alone, so averaging costs little). The decay ramps up as ``min(decay, (1 + t) / (10 + t))``, so
the average follows the weights closely at the start instead of remembering the initialisation.
Short, noisy CPU runs end at a point the last few hundred steps happen to reach; the average is steadier.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage"]


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, Tensor] = {
            name: value.detach().clone() for name, value in self._tracked(model).items()
        }

    @staticmethod
    def _tracked(model: nn.Module) -> dict[str, Tensor]:
        """Name -> tensor of every trainable parameter and floating-point buffer (state-dict names)."""
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        buffers = {name for name, b in model.named_buffers() if b.is_floating_point()}
        return {k: v for k, v in model.state_dict(keep_vars=True).items() if k in trainable | buffers}

    def decay_at(self, iteration: int) -> float:
        return min(self.decay, (1.0 + iteration) / (10.0 + iteration))

    @torch.no_grad()
    def update(self, model: nn.Module, iteration: int) -> None:
        """Fold the current weights in after optimiser step ``iteration`` (0-based)."""
        keep = self.decay_at(iteration)
        for name, value in self._tracked(model).items():
            self.shadow[name].lerp_(value.detach().to(self.shadow[name].dtype), 1.0 - keep)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged weights into ``model``."""
        tracked = self._tracked(model)
        for name, value in self.shadow.items():
            tracked[name].copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"weight average is missing {sorted(missing)[:4]} ...")
        for name in self.shadow:
            self.shadow[name].copy_(state[name])

    def to(self, device: torch.device) -> WeightAverage:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self
