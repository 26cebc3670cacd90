"""Python entry points.

import autoqvis
model = autoqvis.load_model("runs/demo/model")            # a folder written by autoqvis, a .pth, or a preset
result = autoqvis.segment(model, "video.mp4")              # VideoTracks: per-frame RLE, score, quality
result = autoqvis.segment(model, "long.mp4", window=36)    # streaming: memory bounded by the window
"""

from __future__ import annotations

from pathlib import Path

from autoqvis.inference.predict import PredictOptions, segment_video
from autoqvis.model.build import load_model
from autoqvis.model.vis import VideoMaskFormer
from autoqvis.structures import VideoTracks

__all__ = ["load_model", "segment"]


def segment(
    model: VideoMaskFormer,
    video,
    window: int = 0,
    overlap: int = 2,
    short_side: int = 360,
    top_k: int | None = None,
    track_score: str = "class",
    amp: str = "off",
) -> VideoTracks:
    """Every object in ``video`` (a path, or a :class:`~autoqvis.io.video.VideoSource`): a
    :class:`~autoqvis.structures.VideoTracks` with per-frame RLE masks at the original size, scores and
    per-frame predicted quality. ``window`` > 0 streams the video in windows of that many frames sharing
    ``overlap`` frames (memory bounded by the window); ``track_score="quality"`` ranks the tracks by score x
    mean predicted IoU. Runs on the model's device; ``amp="bf16"`` (CPU or CUDA) or ``"fp16"`` (CUDA) runs the
    network under autocast, with float32 post-processing."""
    options = PredictOptions(
        window=window,
        overlap=overlap,
        short_side=short_side,
        top_k=top_k or model.spec.test_topk,
        device=str(model.pixel_mean.device),
        track_score=track_score,
        amp=amp,
    )
    return segment_video(model.eval(), video if not isinstance(video, str) else Path(video), options)
