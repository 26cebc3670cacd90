"""Python entry points.

import autoqvis
model = autoqvis.load_model("runs/demo/model")          # a folder written by autoqvis, a .pth, or a preset
result = model.segment("video.mp4")                      # VideoTracks: per-frame RLE, score, quality
result = model.segment("long.mp4", window=36, overlap=4) # streaming: memory bounded by the window
"""

from __future__ import annotations

from pathlib import Path

import torch

from autoqvis.errors import CheckpointError

__all__ = ["load_model"]


def load_model(path_or_preset: str | Path, preset: str = "paper_r50", device: str = "cpu"):
    """A model in eval mode on ``device``: from a folder written by autoqvis (``model.json`` +
    ``model.safetensors``), an official / safetensors weights file loaded into ``preset``, or a preset name
    (random weights: for tests and timing only)."""
    from autoqvis.model import PRESETS, build_model, load_weights
    from autoqvis.model.build import load_model as load_folder

    path = Path(path_or_preset)
    if path.is_dir():
        model = load_folder(path)
    elif path.is_file():
        model = build_model(preset)
        load_weights(model, path)
    elif str(path_or_preset) in PRESETS:
        model = build_model(str(path_or_preset))
    else:
        raise CheckpointError(
            f"{path_or_preset} is neither a model folder, a weights file nor a preset ({', '.join(PRESETS)})"
        )
    return model.to(torch.device(device)).eval()
