"""Typed containers shared by every stage.

Legend: ``N`` objects (tracks), ``T`` frames, ``H, W`` frame size, ``K`` predicted tracks.

- :class:`Clip`: a training clip, dense tensors (what the data loaders yield and the model trains on).
- :class:`Track`: one object through a video, per-frame COCO RLE (``None`` where absent); used for ground
  truth, predictions (with ``score`` and per-frame ``predicted_iou``) and pseudo-labels (with per-frame
  ``selected`` flags).
- :class:`VideoInfo` / :class:`VideoTracks`: a video's metadata and its tracks.
- :class:`Predictions`: dense model output for one video (top-k tracks), convertible to tracks.
- :class:`RoundOutput` / :class:`DecoderOutput`: the video decoder's raw predictions of one round / of all
  rounds (what the training criterion reads); ``B`` videos, ``Q`` queries, ``C`` classes + 1 (the last is
  no-object), ``h, w`` the mask-logit grid (stride 4 of the padded input).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from autoqvis import rle as rle_utils

__all__ = ["Clip", "DecoderOutput", "Predictions", "RoundOutput", "Track", "VideoInfo", "VideoTracks"]

RLE = dict[str, Any]  # compressed COCO RLE: {"size": [H, W], "counts": str}


@dataclass
class Clip:
    """A training clip of ``T`` frames with ``N`` tracked objects.

    frames: (T, 3, H, W) uint8 RGB.
    masks:  (N, T, H, W) bool; ``masks[n, t]`` is object n in frame t.
    ids:    (N, T) int64 track id per frame, -1 where the object is absent (its mask is then empty).
    """

    frames: torch.Tensor
    masks: torch.Tensor
    ids: torch.Tensor
    source: str = ""  # "synthetic" | "pseudo" | "gt"
    video_id: int | str = -1
    frame_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        T, C, H, W = self.frames.shape
        if C != 3 or self.frames.dtype != torch.uint8:
            raise ValueError(
                f"frames must be (T, 3, H, W) uint8, got {tuple(self.frames.shape)} {self.frames.dtype}"
            )
        if self.masks.ndim != 4 or self.masks.shape[1:] != (T, H, W):
            raise ValueError(f"masks must be (N, {T}, {H}, {W}), got {tuple(self.masks.shape)}")
        if self.ids.shape != self.masks.shape[:2]:
            raise ValueError(
                f"ids must be (N, T) = {tuple(self.masks.shape[:2])}, got {tuple(self.ids.shape)}"
            )

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[0]

    def pin_memory(self) -> Clip:
        """The same clip with its tensors in page-locked memory (the DataLoader calls this with
        ``pin_memory=True``), so that copies to a GPU can be asynchronous."""
        return dataclasses.replace(
            self, frames=self.frames.pin_memory(), masks=self.masks.pin_memory(), ids=self.ids.pin_memory()
        )


@dataclass
class Track:
    """One object through a video: per-frame RLE masks, ``None`` where the object is absent.

    ``score`` is the video-level confidence (1.0 for ground truth); ``predicted_iou`` the quality head's
    per-frame IoU estimate; ``selected`` the per-frame selection flags of a pseudo-label.
    """

    masks: list[RLE | None]
    score: float = 1.0
    category_id: int = 1
    predicted_iou: list[float] | None = None
    selected: list[bool] | None = None
    id: int | None = None
    iscrowd: int = 0
    annotated_areas: list[float | None] | None = None  # the file's own ``areas`` field (ground truth)

    @property
    def num_frames(self) -> int:
        return len(self.masks)

    def areas(self) -> np.ndarray:
        """(T,) float64 pixel count per frame; 0 where absent."""
        return np.array([0.0 if m is None else float(rle_utils.area(m)) for m in self.masks])

    def mean_area(self) -> float:
        """Mean per-frame area over the frames where the object is present (the YTVIS area rule).

        Ground truth read from a file with an ``areas`` field uses those values, as the official evaluator
        does."""
        if self.annotated_areas is not None:
            given = [float(a) for a in self.annotated_areas if a]
            return float(np.mean(given)) if given else 0.0
        areas = self.areas()
        present = areas > 0
        return float(areas[present].mean()) if present.any() else 0.0

    def present(self) -> np.ndarray:
        """(T,) bool: the object has a non-empty mask in the frame."""
        return self.areas() > 0

    def decode(self, t: int, hw: tuple[int, int] | None = None) -> np.ndarray:
        """(H, W) bool mask of frame t; an absent frame needs ``hw``."""
        m = self.masks[t]
        if m is None:
            if hw is None:
                raise ValueError(f"frame {t} is absent; pass hw to get an empty mask")
            return np.zeros(hw, dtype=bool)
        return rle_utils.decode(m)

    def quality(self) -> np.ndarray:
        """(T,) per-frame quality Q = score x predicted IoU (the AutoQ-VIS selection score)."""
        if self.predicted_iou is None:
            raise ValueError("this track has no predicted IoU; run a model with the quality head")
        return self.score * np.asarray(self.predicted_iou, dtype=np.float64)


@dataclass
class VideoInfo:
    """A video's metadata in YouTube-VIS terms. ``file_names`` are relative to the frames root."""

    id: int
    width: int
    height: int
    length: int
    file_names: list[str] = field(default_factory=list)
    name: str = ""


@dataclass
class VideoTracks:
    """A video and its tracks (ground truth, predictions or pseudo-labels)."""

    video: VideoInfo
    tracks: list[Track] = field(default_factory=list)


@dataclass
class Predictions:
    """Dense model output for one video, the top-k tracks.

    scores:        (K,) float32 video-level foreground confidence.
    masks:         (K, T, H, W) bool at the original frame size.
    predicted_iou: (K, T) float32 in [0, 1], or None without the quality head.
    query_index:   (K,) int64 which decoder query each track came from.
    """

    scores: np.ndarray
    masks: np.ndarray
    predicted_iou: np.ndarray | None = None
    query_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_tracks(self, drop_empty_frames: bool = False) -> list[Track]:
        """RLE tracks; with ``drop_empty_frames`` an empty frame becomes ``None`` (absent)."""
        tracks = []
        for k in range(len(self)):
            encoded = rle_utils.encode_stack(self.masks[k])
            if drop_empty_frames:
                encoded = [m if rle_utils.area(m) > 0 else None for m in encoded]
            ious = None if self.predicted_iou is None else [float(v) for v in self.predicted_iou[k]]
            tracks.append(Track(masks=encoded, score=float(self.scores[k]), predicted_iou=ious))
        return tracks


class RoundOutput(NamedTuple):
    """The predictions of one decoder round, B and T apart (a named tuple: DistributedDataParallel and
    ``torch.utils._pytree`` see its tensors)."""

    logits: torch.Tensor  # (B, Q, C) float class logits
    masks: torch.Tensor | None  # (B, Q, T, h, w) float mask logits; None where not computed (eval)
    quality: torch.Tensor | None  # (B, Q, T, 1) float raw predicted IoUs; None where the head did not run


class DecoderOutput(NamedTuple):
    """The video decoder's output: the final round's predictions, the query features, and the earlier rounds
    (``aux``, the first before any layer) for deep supervision."""

    logits: torch.Tensor  # (B, Q, C) float class logits of the final round
    masks: torch.Tensor  # (B, Q, T, h, w) float mask logits of the final round
    quality: torch.Tensor | None  # (B, Q, T, 1) float raw predicted IoUs of the final round, or None
    embeddings: torch.Tensor  # (B, Q, hidden) the normalised final query features
    aux: tuple[RoundOutput, ...] = ()  # the earlier rounds, first to last

    def rounds(self) -> list[RoundOutput]:
        """Every round, the final one last."""
        return [*self.aux, RoundOutput(self.logits, self.masks, self.quality)]
