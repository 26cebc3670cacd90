"""Python entry points.

import autoqvis
model = autoqvis.load_model("runs/demo/model")            # a folder written by autoqvis, a .pth, or a preset
result = autoqvis.segment(model, "video.mp4")              # VideoTracks: per-frame RLE, score, quality
result = autoqvis.segment(model, "long.mp4", window=36)    # streaming: memory bounded by the window
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from autoqvis.config import InferenceConfig
from autoqvis.model.build import load_model
from autoqvis.model.vis import VideoMaskFormer
from autoqvis.predict.predict import differs_from_model, predict_video
from autoqvis.structures import VideoTracks

__all__ = ["load_model", "segment"]

log = logging.getLogger("autoqvis")


def segment(
    model: VideoMaskFormer, video, inference: InferenceConfig | None = None, **settings
) -> VideoTracks:
    """Every object in ``video`` (a path, or a :class:`~autoqvis.io.video.VideoSource`): a
    :class:`~autoqvis.structures.VideoTracks` with per-frame RLE masks at the original size, scores and
    per-frame predicted quality, ranked and refined as the settings say. Runs on the model's device.

    The settings are those of the ``inference`` section; without one, the model's own (``model.own_inference``:
    the settings a model folder written by autoqvis was trained and scored with), else the section's defaults
    (the official test; an official checkpoint carries none). ``settings`` change any of its fields by name,
    with the section's checks: ``window`` > 0 streams the video in windows of that many frames sharing
    ``overlap`` frames (memory bounded by the window); ``track_score="quality"`` ranks the tracks by score x
    mean predicted IoU; ``amp="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs the network under autocast, with
    float32 post-processing; ``top_k``, ``short_side``, ``max_size``, ``crf_short_side``, ``crf_max_tracks``.
    Settings that differ from the model's own are logged (a warning)."""
    own = getattr(model, "own_inference", None)
    inference = dataclasses.replace(inference or own or InferenceConfig(), **settings)
    note = differs_from_model(own, inference)
    if note:
        log.warning(note)
    return predict_video(model.eval(), video if not isinstance(video, str) else Path(video), inference)
