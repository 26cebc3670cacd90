"""From one video's predictions to its selected pseudo-labels, counting what each step keeps.

    selected = select_video(tracks, cfg.selection, stats, regions=cfg.discovery)

``tracks`` are the top-k predictions of the current model (per-frame masks, score, per-frame predicted IoU).
The steps are those of :mod:`autoqvis.selftrain.select`; the counts feed the per-round selection statistics
(objects and non-empty object-frames after each step).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autoqvis.config import DiscoveryConfig, SelectionConfig
from autoqvis.io.ytvis import YTVISDataset
from autoqvis.selftrain.fuse import eligible_frames
from autoqvis.selftrain.select import (
    drop_disagreeing,
    drop_inconsistent,
    drop_rarely_selected,
    drop_transient,
    keep_confident,
    mark_selected,
    nms_any_frame,
    normalise_empty,
    unselect_regions,
)
from autoqvis.structures import Track, VideoInfo

__all__ = ["SELECTION_STEPS", "SelectionStats", "build_training_set", "eligibility_counts", "select_video"]

SELECTION_STEPS = ("predicted", "nms", "score", "quality", "min_frames")


@dataclass
class StepCount:
    videos: int = 0  # videos with at least one object left
    objects: int = 0
    frames: int = 0  # non-empty object-frames (for "quality" on: selected non-empty object-frames)

    def add(self, tracks: Sequence[Track], selected_only: bool = False) -> None:
        self.videos += bool(tracks)
        self.objects += len(tracks)
        for t in tracks:
            flags = t.selected if selected_only and t.selected is not None else [True] * t.num_frames
            self.frames += sum(m is not None and s for m, s in zip(t.masks, flags))


@dataclass
class SelectionStats:
    """Counts after each step for one round (see :data:`SELECTION_STEPS`), then fusion and eligibility."""

    steps: dict[str, StepCount] = field(default_factory=lambda: {s: StepCount() for s in SELECTION_STEPS})
    fused: StepCount = field(default_factory=StepCount)
    eligible: StepCount = field(default_factory=StepCount)
    eligible_frames: int = 0  # video frames eligible for training

    def to_json(self) -> dict:
        table = {name: vars(count) for name, count in self.steps.items()}
        table["fused"] = vars(self.fused)
        table["eligible"] = {**vars(self.eligible), "video_frames": self.eligible_frames}
        return table

    @classmethod
    def from_json(cls, data: Mapping) -> SelectionStats:
        stats = cls()
        for name in SELECTION_STEPS:
            stats.steps[name] = StepCount(**data[name])
        stats.fused = StepCount(**data["fused"])
        eligible = dict(data["eligible"])
        stats.eligible_frames = eligible.pop("video_frames")
        stats.eligible = StepCount(**eligible)
        return stats


def select_video(
    tracks: Sequence[Track],
    cfg: SelectionConfig,
    stats: SelectionStats | None = None,
    regions: DiscoveryConfig | None = None,
    teacher: Mapping[int, Sequence[dict]] | None = None,
) -> list[Track]:
    """NMS in any frame -> score >= score_min -> mark frames by quality (frames whose mask is a background
    region by the one region rule, ``regions.max_area`` / ``max_borders`` of the discovery section, unmarked;
    default: the section's, no rule) -> keep tracks selected often enough -> the track filters (the last needs
    ``teacher``, the MaskCut cuts of this video: frame index -> RLE masks, when ``min_teacher_iou`` > 0)."""
    if cfg.min_teacher_iou > 0 and teacher is None:
        raise ValueError("selection.min_teacher_iou > 0 needs the teacher's cuts of the video's frames")
    regions = regions or DiscoveryConfig()
    stats = stats or SelectionStats()
    tracks = [normalise_empty(t) for t in tracks]
    stats.steps["predicted"].add(tracks)
    tracks = nms_any_frame(tracks, cfg.nms_iou)
    stats.steps["nms"].add(tracks)
    tracks = keep_confident(tracks, cfg.score_min)
    stats.steps["score"].add(tracks)
    tracks = mark_selected(tracks, cfg.quality_min, cfg.selection_score)
    tracks = unselect_regions(tracks, regions.max_area, regions.max_borders)
    stats.steps["quality"].add(tracks, selected_only=True)
    tracks = drop_rarely_selected(tracks, cfg.min_frames)
    tracks = drop_transient(drop_inconsistent(tracks, cfg.min_consistency), cfg.min_persistence)
    tracks = drop_disagreeing(tracks, teacher or {}, cfg.min_teacher_iou)
    stats.steps["min_frames"].add(tracks)
    return tracks


def eligibility_counts(
    labels: Mapping[int, Sequence[Track]], min_frames: int, stats: SelectionStats
) -> dict[int, list[int]]:
    """Eligible frames per video (only videos with >= ``min_frames`` of them), counted into ``stats``."""
    eligible: dict[int, list[int]] = {}
    for video_id, tracks in labels.items():
        stats.fused.add(tracks)
        frames = eligible_frames(tracks)
        if len(frames) < min_frames:
            continue
        eligible[video_id] = frames
        stats.eligible_frames += len(frames)
        kept = [t for t in tracks if any(t.masks[f] is not None for f in frames)]
        stats.eligible.add(_restrict(kept, frames))
    return eligible


def _restrict(tracks: Iterable[Track], frames: Sequence[int]) -> list[Track]:
    return [Track(masks=[t.masks[f] for f in frames], score=t.score) for t in tracks]


def build_training_set(
    videos: YTVISDataset, labels: Mapping[int, Sequence[Track]], eligible: Mapping[int, list[int]]
) -> YTVISDataset:
    """The pseudo-labelled training videos: only their eligible frames (non-contiguous lists are fine), and
    the tracks present in at least one of them."""
    infos, tracks = [], {}
    for video_id, frames in eligible.items():
        info = videos.video(video_id)
        names = [info.file_names[f] for f in frames]
        infos.append(
            VideoInfo(
                id=video_id,
                width=info.width,
                height=info.height,
                length=len(frames),
                file_names=names,
                name=info.name,
            )
        )
        kept = [t for t in labels[video_id] if any(t.masks[f] is not None for f in frames)]
        tracks[video_id] = [
            Track(
                masks=[t.masks[f] for f in frames],
                score=t.score,
                predicted_iou=None if t.predicted_iou is None else [t.predicted_iou[f] for f in frames],
                selected=None if t.selected is None else [t.selected[f] for f in frames],
                id=i + 1,
            )
            for i, t in enumerate(kept)
        ]
    return YTVISDataset(
        videos=infos, tracks=tracks, frames_root=videos.frames_root, info={"kind": "pseudo-labels"}
    )
