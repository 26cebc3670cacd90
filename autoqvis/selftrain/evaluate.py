"""Scoring a model of the self-training loop on a labelled validation set, and picking the best round.

``ModelEvaluator(gt, frames_root, cfg)(model_dir)`` returns the dict every round's ``metrics.json`` holds:
``ytvis`` (class-agnostic YouTube-VIS AP/AR, tracks ranked by ``inference.track_score``), ``ytvis_alt``
(the same tracks under the other ranking, ``ranking`` says which; models with a quality head), ``jf``
(DAVIS-2017 unsupervised J&F, the top 20 tracks as proposals), the Spearman and Pearson correlations of
the quality Q = score x predicted IoU and of the confidence alone with each predicted mask's true IoU (its
track matched to the ground-truth track of highest video IoU), and those per-frame ``samples`` for the
report's scatter plot. Q and the confidence always use the class score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoqvis.config import Config
from autoqvis.io import rle
from autoqvis.io.ytvis import load_ytvis
from autoqvis.structures import Track

__all__ = ["ModelEvaluator", "metric_value", "pick_best"]

METRICS = ("AP", "AP50", "AP75", "AR1", "AR10", "JF")


class ModelEvaluator:
    def __init__(self, gt_path: str | Path, frames_root: str | Path, cfg: Config, device: str = "cpu"):
        self.gt = load_ytvis(gt_path, frames_root=frames_root)
        self.cfg = cfg
        self.device = device

    def __call__(self, model_dir: str | Path) -> dict:
        from autoqvis.eval.davis import DavisResult, evaluate_sequence_unsupervised
        from autoqvis.eval.quality import pearson, spearman
        from autoqvis.eval.ytvis import evaluate_tracks
        from autoqvis.inference.predict import PredictOptions, id_map, rank_tracks, segment_video
        from autoqvis.io.video import FrameList
        from autoqvis.model import load_model

        gt, inf = self.gt, self.cfg.inference
        model = load_model(model_dir, device=self.device)
        options = PredictOptions.from_config(inf, self.device, track_score="class")
        max_proposals = self.cfg.evaluation.davis_max_proposals
        # every video's tracks under each ranking; "quality" only for models with a quality head
        ranked: dict[str, dict[int, list[Track]]] = {"class": {}, "quality": {}}
        davis = DavisResult("2017-unsupervised")
        samples: dict[str, list[float]] = {"quality": [], "confidence": [], "true_iou": [], "area": []}
        for info in gt.videos:
            source = FrameList(
                name=info.name or str(info.id),
                short_side=inf.short_side,
                max_size=inf.max_size,
                paths=gt.frame_paths(info.id),
            )
            by_class = ranked["class"][info.id] = segment_video(model, source, options).tracks
            if inf.track_score == "quality" or all(t.predicted_iou is not None for t in by_class):
                ranked["quality"][info.id] = rank_tracks(by_class, "quality")
            tracks = ranked[inf.track_score][info.id]
            truth = gt.tracks.get(info.id, [])
            hw = (info.height, info.width)
            gt_ids = np.stack([id_map(truth, t, hw, 255) for t in range(info.length)])
            proposals = np.stack([id_map(tracks, t, hw, max_proposals) for t in range(info.length)])
            davis.objects.extend(evaluate_sequence_unsupervised(info.name or str(info.id), gt_ids, proposals))
            _quality_samples(truth, by_class, hw, samples)
        ytvis = evaluate_tracks(gt.tracks, ranked[inf.track_score])
        summary = davis.summary()
        q, s, true = samples["quality"], samples["confidence"], samples["true_iou"]
        extra = {}
        other = "class" if inf.track_score == "quality" else "quality"
        if len(ranked[other]) == len(gt.videos):
            # the same tracks under the other ranking: what the quality head's rescoring is worth
            alt = evaluate_tracks(gt.tracks, ranked[other]).metrics
            extra["ytvis_alt"] = {"ranking": other, **_clean(alt)}
        return {
            "ytvis": _clean(ytvis.metrics),
            **extra,
            "jf": 100 * summary["J&F-Mean"] if summary else None,
            "spearman_quality": spearman(q, true),
            "spearman_confidence": spearman(s, true),
            "pearson_quality": pearson(q, true),
            "pearson_confidence": pearson(s, true),
            "samples": samples,
        }


def _clean(metrics: dict) -> dict:
    return {k: (None if v != v else v) for k, v in metrics.items()}


def _quality_samples(
    truth: list[Track], tracks: list[Track], hw: tuple[int, int], samples: dict[str, list[float]]
) -> None:
    """Per non-empty predicted mask: Q, the score, the true IoU with its matched ground truth, the area."""
    from autoqvis.eval.ytvis import track_ious

    if not tracks or not truth or tracks[0].predicted_iou is None:
        return
    best = track_ious(truth, tracks).argmax(axis=1)
    empty = np.zeros(hw, bool)
    for track, g in zip(tracks, best, strict=True):
        for t, m in enumerate(track.masks):
            if m is None or rle.area(m) == 0:
                continue
            a = rle.decode(m)
            b = rle.decode(truth[g].masks[t]) if truth[g].masks[t] is not None else empty
            samples["true_iou"].append(float((a & b).sum() / max((a | b).sum(), 1)))
            samples["quality"].append(track.score * track.predicted_iou[t])
            samples["confidence"].append(track.score)
            samples["area"].append(float(a.sum()))


def metric_value(metrics: dict | None, name: str) -> float | None:
    """``name`` (AP, AP50, AP75, AR1, AR10 or JF) from a :class:`ModelEvaluator` result."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
    if not metrics:
        return None
    return metrics.get("jf") if name == "JF" else (metrics.get("ytvis") or {}).get(name)


def pick_best(rows: list[dict], metric: str) -> int:
    """Index of the row with the highest ``metric`` (the first on ties); the last row when none is scored."""
    values = [metric_value(r.get("metrics"), metric) for r in rows]
    scored = [(v, -i) for i, v in enumerate(values) if v is not None]
    return -max(scored)[1] if scored else len(rows) - 1
