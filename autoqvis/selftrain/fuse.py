"""Adaptive fusion of pseudo-labels across rounds and the eligible-frame rule (official ``infer_utils.py``:
``merge_object_based_results``, ``filter_marked_results``).

Pseudo-labels are tracks per video id with per-frame ``selected`` flags (see :mod:`.select`).

- :func:`fuse_labels`: old ⊕ new. A new track that overlaps an old one (IoU >= ``fuse_iou`` in some frame where both
  are present) is the same object and is fused frame by frame: the old frame is kept iff it was selected
  and the new one is not; otherwise the new frame (and its flag) wins. Unmatched new tracks are appended;
  old tracks persist; a video with no old tracks takes its new tracks as they are. ``replace_labels`` is
  the ablation without fusion.
- :func:`eligible_frames`: a frame can be trained on iff every track of the video is selected (or empty) in
  it; a video is used only with >= ``min_eligible_frames`` of them (thresholds: :class:`~autoqvis.config.SelectionConfig`).

Labels come out without track ids: the file they are written to numbers them (:func:`autoqvis.io.ytvis.
save_ytvis`). Earlier labels read back from a file (a resumed run) carry that file's ids, which the new tracks
would collide with; dropping them makes a resumed round's labels the same as an uninterrupted one's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from autoqvis.config import SelectionConfig
from autoqvis.selftrain.select import max_frame_iou
from autoqvis.structures import Track

__all__ = ["eligible_frames", "fuse_labels", "fuse_track", "replace_labels"]

Labels = dict[int, list[Track]]  # video id -> tracks


def fuse_track(old: Track, new: Track) -> Track:
    """Frame-wise fusion of two tracks of the same object."""
    masks, selected, ious = [], [], []
    old_ious = old.predicted_iou or [0.0] * old.num_frames
    new_ious = new.predicted_iou or [0.0] * new.num_frames
    for t in range(new.num_frames):
        keep_old = old.selected[t] and not new.selected[t]
        src, src_ious = (old, old_ious) if keep_old else (new, new_ious)
        masks.append(src.masks[t])
        selected.append(src.selected[t])
        ious.append(src_ious[t])
    return Track(
        masks=masks, score=new.score, predicted_iou=ious, selected=selected, category_id=new.category_id
    )


def fuse_labels(
    old: Mapping[int, Sequence[Track]],
    new: Mapping[int, Sequence[Track]],
    iou: float = SelectionConfig.fuse_iou,
) -> Labels:
    """``merge_object_based_results``: returns the fused labels (inputs are not modified).

    Each new track is compared, in order, with the video's current tracks (old ones, fused ones and new
    ones appended earlier in this call) and fused into the first one it overlaps. A video without old tracks
    (absent from ``old`` or with an empty list) takes the new tracks as they are, without comparing them with
    each other, as the official code does for a video it has no labels of (``infer_utils.py`` L1308-1309).
    """
    merged: Labels = {vid: [_copy(t) for t in tracks] for vid, tracks in old.items()}
    for video_id, new_tracks in new.items():
        if not merged.get(video_id):
            merged[video_id] = [_copy(t) for t in new_tracks]
            continue
        current = merged[video_id]
        for track in new_tracks:
            _check_lengths(current, track, video_id)
            overlap = max_frame_iou(current, [track])[:, 0] if current else []
            match = next((i for i, value in enumerate(overlap) if value >= iou), None)
            if match is None:
                current.append(_copy(track))
            else:
                current[match] = fuse_track(current[match], track)
    return merged


def replace_labels(old: Mapping[int, Sequence[Track]], new: Mapping[int, Sequence[Track]]) -> Labels:
    """The ablation without fusion: this round's labels replace the earlier ones."""
    return {vid: [_copy(t) for t in tracks] for vid, tracks in new.items()}


def _copy(track: Track) -> Track:
    """A copy without the track id (see the module docstring)."""
    copied = copy.deepcopy(track)
    copied.id = None
    return copied


def eligible_frames(tracks: Sequence[Track]) -> list[int]:
    """Frames in which every track is selected (an empty frame counts as selected)."""
    if not tracks:
        return []
    T = tracks[0].num_frames
    return [t for t in range(T) if all(track.selected[t] for track in tracks)]


def _check_lengths(current: Sequence[Track], track: Track, video_id: int) -> None:
    for other in current:
        if other.num_frames != track.num_frames:
            raise ValueError(
                f"video {video_id}: pseudo-labels of {other.num_frames} and {track.num_frames} frames cannot be "
                "fused; the video changed between rounds"
            )
