"""Pseudo-label selection for one video, one small named step each (official
``train_Mask2former.py`` scoring and ``apply_nmsV2``; ``infer_utils.py``: ``mark_results``,
``remove_low_quality_objects``).

A video's predictions arrive as top-k tracks sorted by score (``Track.masks`` per frame, empty frames as
``None`` or an empty RLE; ``score``; per-frame ``predicted_iou``). The steps, in the official order:

1. :func:`nms_any_frame`    suppress a track whose mask IoU with a kept, higher-scoring one is >= ``nms_iou`` in any
                            frame
2. :func:`keep_confident`   keep tracks with score >= ``score_min``
3. :func:`mark_selected`    frame t of a track is selected iff its quality Q_t = s * IoU_hat_t >= tau (or the
                            frame is empty); the confidence-only ablation thresholds s instead (tau: ``quality_min``)
4. :func:`drop_rarely_selected` keep a track only if selected in >= ``min_frames`` non-empty frames (paper: 1)

Every threshold defaults to its :class:`~autoqvis.config.SelectionConfig` field (official values there).

Track filters, not in the official code (each off at 0; measured in ``bench/studies/label_precision.py``):
:func:`drop_inconsistent` (mean IoU of consecutive masks, ``selection.min_consistency``),
:func:`drop_transient` (fraction of frames with a mask, ``selection.min_persistence``),
:func:`drop_disagreeing` (:func:`teacher_iou`: agreement with the MaskCut masks of the same frames,
``selection.min_teacher_iou``; the self-training loop runs the teacher); and, for the study only (it needs the
frames' flow): :func:`autoqvis.predict.ranking.motion_contrast`.

Retained tracks keep all their frames with the per-frame flags in ``Track.selected``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from autoqvis import rle as rle_utils
from autoqvis.config import DiscoveryConfig, SelectionConfig
from autoqvis.structures import Track

__all__ = [
    "consistency",
    "drop_disagreeing",
    "drop_inconsistent",
    "drop_rarely_selected",
    "drop_transient",
    "frame_ious",
    "keep_confident",
    "mark_selected",
    "max_frame_iou",
    "nms_any_frame",
    "normalise_empty",
    "persistence",
    "teacher_iou",
    "unselect_regions",
]


def normalise_empty(track: Track) -> Track:
    """Empty masks become ``None`` (the official ``get_one_anno_info``: area < 1 -> no segmentation)."""
    masks = [m if m is not None and rle_utils.area(m) > 0 else None for m in track.masks]
    return replace(track, masks=masks)


def frame_ious(a: Sequence[Track], b: Sequence[Track]) -> np.ndarray:
    """(len(a), len(b), T) per-frame mask IoU; 0 where either mask is absent or the union is empty."""
    return rle_utils.frame_ious([t.masks for t in a], [t.masks for t in b])


def max_frame_iou(a: Sequence[Track], b: Sequence[Track]) -> np.ndarray:
    """(len(a), len(b)) the largest per-frame IoU of each pair (the 'IoU in any frame' test)."""
    ious = frame_ious(a, b)
    return ious.max(axis=2) if ious.shape[2] else np.zeros(ious.shape[:2])


def nms_any_frame(tracks: Sequence[Track], iou_threshold: float = SelectionConfig.nms_iou) -> list[Track]:
    """Spatio-temporal NMS (``apply_nmsV2``): in descending score order, drop every track whose IoU with a
    kept track is >= ``iou_threshold`` in at least one frame."""
    order = sorted(range(len(tracks)), key=lambda i: -tracks[i].score)  # stable: ties keep input order
    ordered = [tracks[i] for i in order]
    overlap = max_frame_iou(ordered, ordered)
    keep: list[int] = []
    suppressed = np.zeros(len(ordered), dtype=bool)
    for i in range(len(ordered)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed[i + 1 :] |= overlap[i, i + 1 :] >= iou_threshold
    return [ordered[i] for i in keep]


def keep_confident(tracks: Sequence[Track], score_min: float = SelectionConfig.score_min) -> list[Track]:
    """Tracks with video-level confidence >= ``score_min``."""
    return [t for t in tracks if t.score >= score_min]


def mark_selected(
    tracks: Sequence[Track],
    threshold: float = SelectionConfig.quality_min,
    score: Literal["quality", "confidence"] = SelectionConfig.selection_score,
) -> list[Track]:
    """Set ``Track.selected``: frame t is selected iff the mask is empty or the metric >= ``threshold``.

    The metric is the quality ``Q_t = s * IoU_hat_t`` (AutoQ-VIS) or the confidence ``s`` (the ablation
    without the quality predictor).
    """
    out = []
    for track in tracks:
        metric = track.quality() if score == "quality" else np.full(track.num_frames, track.score)
        selected = [m is None or bool(q >= threshold) for m, q in zip(track.masks, metric)]
        out.append(replace(track, selected=selected))
    return out


def unselect_regions(
    tracks: Sequence[Track],
    max_area: float = DiscoveryConfig.max_area,
    max_borders: int = DiscoveryConfig.max_borders,
) -> list[Track]:
    """Frames whose mask is region-sized (more than ``max_area`` of the frame, or touching more than
    ``max_borders`` of its borders) are not selected, however high their quality: a confident background
    region is not an object (the one region rule: ``discovery.max_area`` / ``max_borders``). Not in the official
    code; the defaults switch it off."""
    if max_area >= 1.0 and max_borders >= 4:
        return list(tracks)
    out = []
    for track in tracks:
        flags = [
            s and (m is None or not rle_utils.is_region_sized(rle_utils.decode(m), max_area, max_borders))
            for s, m in zip(track.selected, track.masks, strict=True)
        ]
        out.append(replace(track, selected=flags))
    return out


def drop_rarely_selected(
    tracks: Sequence[Track], min_frames: int = SelectionConfig.min_frames
) -> list[Track]:
    """Keep a track only if it is selected in at least ``min_frames`` non-empty frames."""
    return [
        t for t in tracks if sum(s and m is not None for s, m in zip(t.selected or [], t.masks)) >= min_frames
    ]


def consistency(track: Track) -> float:
    """Mean IoU of the track's masks in consecutive frames where both are non-empty (1.0 with no such pair:
    nothing to contradict it)."""
    pairs = [(a, b) for a, b in zip(track.masks[:-1], track.masks[1:]) if a is not None and b is not None]
    if not pairs:
        return 1.0
    ious = rle_utils.frame_ious([[a for a, _ in pairs]], [[b for _, b in pairs]])[0, 0]
    return float(np.mean(ious))


def persistence(track: Track) -> float:
    """Fraction of the video's frames in which the track has a non-empty mask."""
    return sum(m is not None for m in track.masks) / max(1, len(track.masks))


def drop_inconsistent(tracks: Sequence[Track], min_consistency: float = 0.0) -> list[Track]:
    """Keep a track only if :func:`consistency` >= ``min_consistency`` (0: every track)."""
    if min_consistency <= 0:
        return list(tracks)
    return [t for t in tracks if consistency(t) >= min_consistency]


def drop_transient(tracks: Sequence[Track], min_persistence: float = 0.0) -> list[Track]:
    """Keep a track only if :func:`persistence` >= ``min_persistence`` (0: every track)."""
    if min_persistence <= 0:
        return list(tracks)
    return [t for t in tracks if persistence(t) >= min_persistence]


def teacher_iou(track: Track, teacher: dict[int, Sequence[dict]]) -> float | None:
    """Mean, over the frames the teacher cut (frame index -> its RLE masks) where the track has a mask, of the
    IoU of that mask with the teacher's best-matching one (0 with no teacher mask); None with no such frame."""
    values = []
    for t, cuts in teacher.items():
        if t >= len(track.masks) or track.masks[t] is None:
            continue
        if not cuts:
            values.append(0.0)
            continue
        values.append(float(rle_utils.frame_ious([[track.masks[t]]], [[c] for c in cuts])[0, :, 0].max()))
    return float(np.mean(values)) if values else None


def drop_disagreeing(
    tracks: Sequence[Track], teacher: dict[int, Sequence[dict]], min_iou: float = 0.0
) -> list[Track]:
    """Keep a track only if :func:`teacher_iou` with ``teacher`` (frame index -> the teacher's RLE cuts) is >=
    ``min_iou`` (0: every track); a track with no mask on any frame the teacher cut cannot agree and is
    dropped."""
    if min_iou <= 0:
        return list(tracks)
    return [t for t in tracks if (v := teacher_iou(t, teacher)) is not None and v >= min_iou]
