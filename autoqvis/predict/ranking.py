"""How output tracks are ranked: by the class score (the official test), by score x predicted quality, or as
the video's main object.

``inference.track_score`` picks the rule:

- ``class``: the foreground probability of the track's query (official);
- ``quality``: that x the track's mean predicted IoU over its non-empty frames (Mask Scoring R-CNN's rescoring
  with the quality head);
- ``main``: ``quality`` x how much the track looks like the video's main object, from its masks alone
  (:class:`TrackFeatures`): present in most frames (``persistence``), not a background region (a mask that
  touches 3 or 4 image borders or covers most of the frame), not a speck. For single-object benchmarks
  (DAVIS-2016, the foreground is one object or group) where the top track is the answer; the weights are
  ``inference.main_*`` (see :func:`main_object_score`).

Every rule uses the tracks' own outputs (no ground truth, no extra model), so it runs inside ``predict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from autoqvis import rle
from autoqvis.config.checks import choices
from autoqvis.config.sections import TrackScore
from autoqvis.structures import Track

__all__ = [
    "TRACK_SCORES",
    "TrackFeatures",
    "main_object_score",
    "motion_contrast",
    "rank_tracks",
    "track_features",
    "video_flows",
]

TRACK_SCORES = choices(TrackScore)  # inference.track_score


@dataclass(frozen=True)
class TrackFeatures:
    """What a track's masks say about it (means over its non-empty frames unless said otherwise)."""

    score: float  # the class score
    quality: float  # mean predicted IoU (None-safe: 0 without a quality head's values)
    persistence: float  # fraction of all frames with a non-empty mask
    area: float  # mean mask area / frame area
    borders: float  # mean number of image borders (0-4) the mask's bounding box touches
    centre: float  # mean distance of the box centre from the frame centre, / half the diagonal (0-1)

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def track_features(track: Track, hw: tuple[int, int]) -> TrackFeatures:
    """The features of ``track`` (masks as RLE at ``hw`` = (H, W))."""
    H, W = hw
    present = [(t, m) for t, m in enumerate(track.masks) if m is not None and rle.area(m) > 0]
    quality = 0.0
    if track.predicted_iou is not None and present:
        quality = float(np.mean([track.predicted_iou[t] for t, _ in present]))
    if not present:
        return TrackFeatures(track.score, quality, 0.0, 0.0, 0.0, 1.0)
    areas, borders, centres = [], [], []
    half_diagonal = 0.5 * float(np.hypot(H, W))
    for _, m in present:
        x, y, w, h = mask_utils.toBbox(rle.to_pycocotools(m)).tolist()
        areas.append(rle.area(m) / (H * W))
        borders.append((x <= 0) + (y <= 0) + (x + w >= W) + (y + h >= H))
        centres.append(float(np.hypot(x + w / 2 - W / 2, y + h / 2 - H / 2)) / half_diagonal)
    return TrackFeatures(
        score=float(track.score),
        quality=quality,
        persistence=len(present) / len(track.masks),
        area=float(np.mean(areas)),
        borders=float(np.mean(borders)),
        centre=float(np.mean(centres)),
    )


def video_flows(frames) -> list[np.ndarray]:
    """Dense optical flow (Farneback) between consecutive (H, W, 3) uint8 frames: T - 1 maps (H, W, 2) in
    pixels. For :func:`motion_contrast`; compute it at a small size (the inference short side)."""
    import cv2

    flows, previous = [], None
    for frame in frames:
        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if previous is not None:
            flows.append(cv2.calcOpticalFlowFarneback(previous, gray, None, 0.5, 3, 15, 3, 5, 1.2, 0))
        previous = gray
    return flows


def motion_contrast(track: Track, flows: list[np.ndarray]) -> float:
    """How differently the track moves from the rest of the frame: the mean over frames of the distance
    between the median flow inside its mask and outside it, in units of the frame diagonal x 100 (a moving
    object, or a still one the camera follows, stands out from its background)."""
    import cv2

    values = []
    for t, flow in enumerate(flows, start=1):
        m = track.masks[t]
        if m is None or rle.area(m) == 0:
            continue
        h, w = flow.shape[:2]
        mask = cv2.resize(rle.decode(m).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        if mask.all() or not mask.any():
            continue
        inside = np.median(flow[mask], axis=0)
        outside = np.median(flow[~mask], axis=0)
        values.append(float(np.hypot(*(inside - outside))) / float(np.hypot(h, w)) * 100)
    return float(np.mean(values)) if values else 0.0


def main_object_score(
    f: TrackFeatures,
    quality_power: float = 1.0,
    area_power: float = 0.0,
    persistence_power: float = 1.0,
    border_penalty: float = 0.5,
    max_area: float = 0.6,
    motion: float | None = None,
    motion_power: float = 0.0,
) -> float:
    """score x quality^quality_power x persistence^persistence_power / area^area_power, divided by
    (1 + border_penalty) per image border touched beyond two, scaled down linearly past ``max_area`` of the
    frame (to 0 at the whole frame), and x (1 + motion)^motion_power when the track's motion contrast is given.

    ``area_power`` > 0 makes the quality fair to size: the quality head predicts higher IoUs for larger masks
    (a region around the object scores above the object itself), so dividing by a power of the area ranks
    the tracks by how good their masks are for their size."""
    value = f.score * f.quality**quality_power * f.persistence**persistence_power
    value /= max(f.area, 1e-4) ** area_power
    value /= (1.0 + border_penalty) ** max(0.0, f.borders - 2.0)
    if f.area > max_area and max_area < 1:
        value *= max(0.0, (1.0 - f.area) / (1.0 - max_area))
    if motion is not None and motion_power:
        value *= (1.0 + motion) ** motion_power
    return float(value)


def rank_tracks(
    tracks: list[Track],
    track_score: str = "class",
    hw: tuple[int, int] | None = None,
    main_weights: dict[str, float] | None = None,
) -> list[Track]:
    """The tracks best first, numbered 1..n, with ``score`` replaced by the ranking's value (``class`` keeps
    it). ``quality`` and ``main`` need the quality head's predicted IoUs; ``main`` needs the frame size ``hw``
    and takes :func:`main_object_score`'s keyword weights. The inputs are not modified."""
    if track_score not in TRACK_SCORES:
        raise ValueError(f"track_score must be one of {', '.join(TRACK_SCORES)}, got {track_score!r}")
    if track_score != "class" and any(t.predicted_iou is None for t in tracks):
        raise ValueError(
            f"inference.track_score={track_score} needs the quality head's predicted IoU; this model has no "
            "quality head (use inference.track_score=class)"
        )
    if track_score == "quality":
        tracks = [dataclasses.replace(t, score=t.score * _mean_predicted_iou(t)) for t in tracks]
    elif track_score == "main":
        if hw is None:
            raise ValueError("track_score=main needs the frame size")
        weights = main_weights or {}
        tracks = [
            dataclasses.replace(t, score=main_object_score(track_features(t, hw), **weights)) for t in tracks
        ]
    else:
        tracks = [dataclasses.replace(t) for t in tracks]
    tracks.sort(key=lambda t: -t.score)
    for k, t in enumerate(tracks):
        t.id = k + 1
    return tracks


def _mean_predicted_iou(track: Track) -> float:
    values = [
        p for m, p in zip(track.masks, track.predicted_iou, strict=True) if m is not None and rle.area(m) > 0
    ]
    return float(np.mean(values)) if values else 0.0
