"""Python entry points.

import autoqvis
model = autoqvis.load_model("runs/demo/model")            # a folder written by autoqvis, a .pth, or a preset
result = autoqvis.segment(model, "video.mp4")              # VideoTracks: per-frame RLE, score, quality
result = autoqvis.segment(model, "long.mp4", window=36)    # streaming: memory bounded by the window
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from autoqvis.config import InferenceConfig
from autoqvis.inference.predict import segment_video
from autoqvis.model.build import load_model
from autoqvis.model.vis import VideoMaskFormer
from autoqvis.structures import VideoTracks

__all__ = ["load_model", "segment"]


def segment(
    model: VideoMaskFormer, video, inference: InferenceConfig | None = None, **settings
) -> VideoTracks:
    """Every object in ``video`` (a path, or a :class:`~autoqvis.io.video.VideoSource`): a
    :class:`~autoqvis.structures.VideoTracks` with per-frame RLE masks at the original size, scores and
    per-frame predicted quality. Runs on the model's device.

    The settings are those of the ``inference`` section (default: its defaults, the official test), and
    ``settings`` change any of its fields by name, with the section's checks: ``window`` > 0 streams the
    video in windows of that many frames sharing ``overlap`` frames (memory bounded by the window);
    ``track_score="quality"`` ranks the tracks by score x mean predicted IoU; ``amp="bf16"`` (CPU or CUDA) or
    ``"fp16"`` (CUDA) runs the network under autocast, with float32 post-processing; ``top_k``,
    ``short_side``, ``max_size``, ``crf_short_side``, ``crf_max_tracks``."""
    inference = dataclasses.replace(inference or InferenceConfig(), **settings)
    return segment_video(model.eval(), video if not isinstance(video, str) else Path(video), inference)
