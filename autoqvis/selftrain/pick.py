"""Choosing among M0 and the rounds without labels: criteria computed on the unlabeled videos alone.

Each model's top-k tracks on every unlabeled video (the same predictions the next round pseudo-labels from,
and one more pass for the last model) give, per model:

- ``quality``: the mean quality Q = score x predicted IoU over the non-empty frames of the tracks that
  survive the selection's NMS and score threshold, averaged over videos. The quality head is frozen during
  self-training, so every model is judged by the same predictor of mask IoU;
- ``stability``: the mean IoU of each such track's masks in consecutive frames (a model whose masks flicker
  or jump between objects is worse; objects move little between frames);
- ``agreement``: the mean video IoU between this model's tracks and the other models' best-matching ones
  (the model nearest the consensus of all).

``last`` is the last round whatever it is worth (what the loop did before). The chosen criterion (``selftrain
.label_free_pick``) picks the model with the highest value, the earlier model on ties.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from autoqvis import rle
from autoqvis.config import SelectionConfig
from autoqvis.selftrain.select import keep_confident, nms_any_frame, normalise_empty
from autoqvis.structures import Track

__all__ = ["CRITERIA", "label_free_scores", "pick_label_free"]

CRITERIA = ("quality", "stability", "agreement")

Predictions = Mapping[int, Sequence[Track]]  # video id -> top-k tracks, best first


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


def label_free_scores(
    predictions: Sequence[Predictions], cfg: SelectionConfig
) -> list[dict[str, float | None]]:
    """Every criterion for every model (``predictions[i]``: model i's tracks per unlabeled video)."""
    objects = [{vid: _objects(tracks, cfg) for vid, tracks in p.items()} for p in predictions]
    scores = []
    for i, own in enumerate(objects):
        per_video: dict[str, list[float]] = {c: [] for c in CRITERIA}
        for vid, tracks in own.items():
            others = [o.get(vid, []) for j, o in enumerate(objects) if j != i]
            for name, value in (
                ("quality", _quality(tracks)),
                ("stability", _stability(tracks)),
                ("agreement", _agreement(tracks, others)),
            ):
                if value is not None:
                    per_video[name].append(value)
        scores.append({c: (float(np.mean(v)) if v else None) for c, v in per_video.items()})
    return scores


def pick_label_free(scores: Sequence[Mapping[str, float | None]], criterion: str) -> int:
    """Index of the model with the highest ``criterion`` (the earliest on ties; ``last``: the last model)."""
    if criterion == "last" or not scores:
        return len(scores) - 1
    if criterion not in CRITERIA:
        raise ValueError(f"unknown label-free criterion {criterion!r}; expected last or one of {CRITERIA}")
    values = [s.get(criterion) for s in scores]
    scored = [(v, -i) for i, v in enumerate(values) if v is not None]
    return -max(scored)[1] if scored else len(scores) - 1
