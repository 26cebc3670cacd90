"""Choosing among M0 and the rounds without labels: criteria computed on the unlabeled videos alone.

Each model's top-k tracks on every unlabeled video (the same predictions the next round pseudo-labels from,
and one more pass for the last model) give, per model and video:

- ``teacher`` (the default): agreement with the MaskCut teacher on *held-out* videos. A fraction
  ``selftrain.holdout`` of the unlabeled videos (chosen by a hash of the video's name: the same videos in every
  run) gives no pseudo-label to any round; MaskCut is run on every third frame of them (frames 1, 4, 7, ...;
  ``autoqvis discover`` and the benchmarks take frames 0, 3, 6, ...), and a model scores the mean best-match
  IoU between its objects' masks and the teacher's masks of those frames, both ways (each teacher mask with
  its best object, each object with its best teacher mask: a track on background the teacher does not cut
  costs as much as a missed object). No model trained on these frames' labels, so a round is not rated by its
  own confident output; the teacher is the one every model started from;
- ``quality``: the mean quality Q = score x predicted IoU over the non-empty frames of the tracks that
  survive the selection's NMS and score threshold. The quality head is frozen during self-training, so every
  model is judged by the same predictor of mask IoU;
- ``stability``: the mean IoU of each such track's masks in consecutive frames;
- ``agreement``: the mean video IoU between this model's tracks and the other models' best-matching ones.

The last three are computed on the videos that gave pseudo-labels; the rounds train on their own confident
output there, so all three lean towards the rounds (README, "Choosing a model without labels").

The pick (:func:`pick_safe`, ``selftrain.pick_margin`` = z > 0): a round replaces M0 only when its per-video
criterion beats M0's, paired by video, by more than z standard errors of the mean difference (and the mean
difference is positive); among such rounds the one with the largest mean difference. Otherwise M0 is kept and
the rule says "no criterion could tell; kept M0". ``pick_margin`` = 0: the highest mean criterion (the rule
before; :func:`pick_label_free`). ``last`` is the last round whatever it is worth.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

from autoqvis import rle
from autoqvis.config import SelectionConfig
from autoqvis.selftrain.select import keep_confident, nms_any_frame, normalise_empty
from autoqvis.structures import Track

__all__ = [
    "CRITERIA",
    "KEPT_M0",
    "TEACHER_EVERY",
    "TEACHER_OFFSET",
    "holdout_names",
    "label_free_per_video",
    "label_free_scores",
    "mean_scores",
    "pick_label_free",
    "pick_safe",
    "teacher_agreement",
    "teacher_cuts",
]

CRITERIA = ("teacher", "quality", "stability", "agreement")
KEPT_M0 = "no criterion could tell; kept M0"
TEACHER_EVERY, TEACHER_OFFSET = 3, 1  # the held-out frames the teacher cuts: t % 3 == 1

Predictions = Mapping[int, Sequence[Track]]  # video id -> top-k tracks, best first
Teacher = Mapping[int, Mapping[int, Sequence[dict]]]  # video id -> frame index -> the teacher's RLE masks


def holdout_names(names: Sequence[str], fraction: float) -> set[str]:
    """The videos held out of every round's pseudo-labels: those whose name hashes below ``fraction`` (the
    same in every run and on every machine), at least one when ``fraction`` > 0, at most ``ceil(fraction x
    n)`` (the lowest hashes: a few videos may hash low together) and never all of them."""
    if fraction <= 0 or len(names) < 2:
        return set()
    rank = {n: int(hashlib.sha256(n.encode()).hexdigest()[:12], 16) / 16**12 for n in names}
    ordered = sorted(set(names), key=rank.get)
    # (- 1e-9: a product such as 0.7 x 10 = 7.000000000000001 must not round up to 8)
    most = min(max(math.ceil(fraction * len(ordered) - 1e-9), 1), len(ordered) - 1)
    return set(ordered[: min(max(sum(rank[n] < fraction for n in ordered), 1), most)])


def _objects(tracks: Sequence[Track], cfg: SelectionConfig) -> list[Track]:
    """The tracks a model puts forward as objects: the selection's NMS and score threshold."""
    return keep_confident(nms_any_frame([normalise_empty(t) for t in tracks], cfg.nms_iou), cfg.score_min)


def _quality(objects: Sequence[Track]) -> float | None:
    values = [
        t.score * q
        for t in objects
        if t.predicted_iou
        for m, q in zip(t.masks, t.predicted_iou)
        if m is not None
    ]
    return float(np.mean(values)) if values else None


def _stability(objects: Sequence[Track]) -> float | None:
    values = []
    for t in objects:
        ious = rle.frame_ious([t.masks[:-1]], [t.masks[1:]])[0, 0] if t.num_frames > 1 else np.zeros(0)
        both = [a is not None and b is not None for a, b in zip(t.masks[:-1], t.masks[1:])]
        values += [float(v) for v, ok in zip(ious, both) if ok]
    return float(np.mean(values)) if values else None


def _agreement(objects: Sequence[Track], others: Sequence[Sequence[Track]]) -> float | None:
    values = []
    for other in others:
        if not objects or not other:
            continue
        ious = rle.video_ious([t.masks for t in objects], [t.masks for t in other])
        values.append(float(ious.max(axis=1).mean()))
    return float(np.mean(values)) if values else None


def teacher_agreement(objects: Sequence[Track], teacher: Mapping[int, Sequence[dict]]) -> float | None:
    """Mean best-match IoU between a model's object masks and the teacher's masks, over the frames the teacher
    cut (``teacher``: frame index -> RLE masks): every teacher mask counts its best object's IoU and every
    non-empty object mask its best teacher mask's IoU (0 where the other side has none). None when neither
    side has a mask in those frames."""
    values: list[float] = []
    for t, cuts in sorted(teacher.items()):
        ours = [tr.masks[t] for tr in objects if t < tr.num_frames and tr.masks[t] is not None]
        cuts = list(cuts)
        if not ours or not cuts:
            values += [0.0] * (len(ours) + len(cuts))
            continue
        ious = rle.frame_ious([[m] for m in ours], [[c] for c in cuts])[:, :, 0]
        values += [float(v) for v in ious.max(axis=1)] + [float(v) for v in ious.max(axis=0)]
    return float(np.mean(values)) if values else None


def label_free_per_video(
    predictions: Sequence[Predictions],
    cfg: SelectionConfig,
    teacher: Teacher | None = None,
    held_out: Sequence[int] = (),
) -> list[dict[str, dict[int, float]]]:
    """Every criterion for every model, per video (``predictions[i]``: model i's tracks per unlabeled video).
    ``teacher`` is scored on the ``held_out`` videos it covers, the other criteria on the remaining videos."""
    held = set(held_out)
    objects = [{vid: _objects(tracks, cfg) for vid, tracks in p.items()} for p in predictions]
    out = []
    for i, own in enumerate(objects):
        per_video: dict[str, dict[int, float]] = {c: {} for c in CRITERIA}
        for vid, tracks in own.items():
            if vid in held:
                value = teacher_agreement(tracks, teacher[vid]) if teacher and vid in teacher else None
                if value is not None:
                    per_video["teacher"][vid] = value
                continue
            others = [o.get(vid, []) for j, o in enumerate(objects) if j != i]
            for name, value in (
                ("quality", _quality(tracks)),
                ("stability", _stability(tracks)),
                ("agreement", _agreement(tracks, others)),
            ):
                if value is not None:
                    per_video[name][vid] = value
        out.append(per_video)
    return out


def label_free_scores(
    predictions: Sequence[Predictions],
    cfg: SelectionConfig,
    teacher: Teacher | None = None,
    held_out: Sequence[int] = (),
) -> list[dict[str, float | None]]:
    """Every criterion for every model, the mean over its videos (None where no video gave a value)."""
    return [mean_scores(m) for m in label_free_per_video(predictions, cfg, teacher, held_out)]


def mean_scores(per_video: Mapping[str, Mapping[int, float]]) -> dict[str, float | None]:
    """One model's criteria (``criterion -> video -> value``) as the mean over its videos (None: no video)."""
    return {c: (float(np.mean(list(v.values()))) if v else None) for c, v in per_video.items()}


def pick_label_free(scores: Sequence[Mapping[str, float | None]], criterion: str) -> int:
    """Index of the model with the highest ``criterion`` (the earliest on ties; ``last``: the last model)."""
    if criterion == "last" or not scores:
        return len(scores) - 1
    if criterion not in CRITERIA:
        raise ValueError(f"unknown label-free criterion {criterion!r}; expected last or one of {CRITERIA}")
    values = [s.get(criterion) for s in scores]
    scored = [(v, -i) for i, v in enumerate(values) if v is not None]
    return -max(scored)[1] if scored else len(scores) - 1


def pick_safe(per_video: Sequence[Mapping[int, float]], margin: float = 2.0) -> tuple[int, str]:
    """(index, why): model 0 (M0) unless a later model's per-video values beat M0's, paired by video, by a
    positive mean difference of more than ``margin`` standard errors (over at least 2 shared videos); among
    those the largest mean difference. ``per_video[i]``: model i's value per video."""
    if not per_video:
        return 0, KEPT_M0
    base = per_video[0]
    best, best_gain, lines = 0, 0.0, []
    for i, own in enumerate(per_video[1:], start=1):
        shared = sorted(set(base) & set(own))
        if len(shared) < 2:
            lines.append(f"model {i}: {len(shared)} shared video(s)")
            continue
        d = np.array([own[v] - base[v] for v in shared])
        mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
        lines.append(f"model {i}: {mean:+.3f} +- {se:.3f} on {len(d)} videos")
        if mean > 0 and mean > margin * se and mean > best_gain:
            best, best_gain = i, mean
    detail = "; ".join(lines) or "no value"
    if best == 0:
        return 0, f"{KEPT_M0} ({detail}; a round needs > {margin:g} standard errors over M0)"
    return best, f"model {best} beats M0 by more than {margin:g} standard errors ({detail})"


def teacher_frames(num_frames: int) -> list[int]:
    """The frames of a held-out video the teacher cuts (t % TEACHER_EVERY == TEACHER_OFFSET; frame 0 for a
    one-frame video)."""
    frames = [t for t in range(num_frames) if t % TEACHER_EVERY == TEACHER_OFFSET]
    return frames or list(range(min(1, num_frames)))


def teacher_cuts(videos, ids: Sequence[int], cfg, path, device: str = "cpu") -> dict[int, dict[int, list]]:
    """MaskCut (``cfg``: the discovery section, its region rule included) on :func:`teacher_frames` of the
    videos ``ids`` of ``videos`` (a :class:`~autoqvis.io.ytvis.YTVISDataset` frame cache; the held-out videos
    for the teacher criterion, the others for ``selection.min_teacher_iou``): video id -> frame -> RLE masks.
    Written to ``path`` and reused while the settings, videos and frames are the same."""
    import json
    from pathlib import Path

    from autoqvis.config import config_to_dict
    from autoqvis.discover.maskcut import maskcut_batch
    from autoqvis.io.video import read_image
    from autoqvis.model.vit import load_vit
    from autoqvis.runs.atomic import atomic_write_json

    path = Path(path)
    by_id = {v.id: v for v in videos.videos}
    wanted = {vid: teacher_frames(by_id[vid].length) for vid in sorted(ids)}
    fingerprint = {
        "discovery": config_to_dict(cfg),
        "videos": videos.content_hash(),
        "frames": {str(v): f for v, f in wanted.items()},
    }
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("fingerprint") == fingerprint:
            return {int(v): {int(t): m for t, m in f.items()} for v, f in cached["teacher"].items()}
    vit = load_vit(cfg.arch, cfg.weights, device=device)
    teacher: dict[int, dict[int, list]] = {}
    for vid, frames in wanted.items():
        paths = videos.frame_paths(vid)
        results = maskcut_batch([read_image(paths[t]) for t in frames], vit, cfg)
        teacher[vid] = {t: [rle.encode(m) for m in r.masks] for t, r in zip(frames, results, strict=True)}
    atomic_write_json(
        path,
        {
            "fingerprint": fingerprint,
            "teacher": {str(v): {str(t): m for t, m in f.items()} for v, f in teacher.items()},
        },
    )
    return teacher
