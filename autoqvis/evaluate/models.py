"""Scoring a trained model on labelled videos: every metric the reports and the self-training loop use.

    evaluator = ModelEvaluator(gt_json, frames_root, cfg)
    scores = evaluator(model_folder)           # ModelScores
    scores.value("AP50"), scores.jf, scores.spearman_quality

:class:`ModelScores` holds the class-agnostic YouTube-VIS AP/AR with the tracks ranked by
``inference.track_score`` (``ytvis``) and under the other ranking (``ytvis_alt``, models with a quality
head), the DAVIS-2017 unsupervised J&F (the top 20 tracks as proposals), and the Spearman and Pearson
correlations of the quality Q = score x predicted IoU and of the confidence alone with each predicted mask's
true IoU (its track matched to the ground-truth track of highest video IoU), with those per-frame
:class:`QualitySamples` for the report's scatter plot. Q and the confidence always use the class score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from autoqvis import rle
from autoqvis.config import Config, ytvis_metric_names
from autoqvis.config.checks import choices
from autoqvis.config.sections import SelectMetric
from autoqvis.device import resolve_device
from autoqvis.evaluate.davis import DavisResult, evaluate_sequence_unsupervised
from autoqvis.evaluate.quality import pearson, spearman
from autoqvis.evaluate.ytvis import evaluate_tracks, track_ious
from autoqvis.io.video import FrameList
from autoqvis.io.ytvis import check_annotated, check_frame_sizes, load_ytvis
from autoqvis.model import load_model
from autoqvis.model.vit_backbone import TokenCache, use_token_cache
from autoqvis.predict.predict import check_track_score, finish_tracks, id_map, segment_video
from autoqvis.runs.fingerprint import content_identity, files_identity
from autoqvis.structures import Track

__all__ = ["METRICS", "SUMMARY", "ModelEvaluator", "ModelScores", "QualitySamples"]

METRICS = choices(SelectMetric)  # what a model can be selected by (the config's select_metric)


SUMMARY = ("AP", "AP50", "AP75", "AR10", "JF")  # the columns of a short table of models
_SCALARS = ("spearman_quality", "spearman_confidence", "pearson_quality", "pearson_confidence")
_HEADERS = {"JF": "J&F", "spearman_quality": "Spearman Q", "spearman_confidence": "Spearman s"}


def _header(column: str, alt: str | None) -> str:
    if column.startswith("alt:"):
        return f"{column[4:]} {alt}-ranked"
    return _HEADERS.get(column, column)


@dataclass
class QualitySamples:
    """One entry per non-empty predicted mask of the top-k tracks: Q, the confidence, the true IoU with its
    track's matched ground truth in that frame, and the mask's area in pixels."""

    quality: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    true_iou: list[float] = field(default_factory=list)
    area: list[float] = field(default_factory=list)

    def add(self, truth: list[Track], tracks: list[Track]) -> None:
        """The samples of one video (nothing without ground truth or without a quality head)."""
        if not tracks or not truth or tracks[0].predicted_iou is None:
            return
        best = track_ious(truth, tracks).argmax(axis=1)
        ious = rle.frame_ious([t.masks for t in tracks], [t.masks for t in truth])  # (K, G, T)
        for k, (track, g) in enumerate(zip(tracks, best, strict=True)):
            for t, m in enumerate(track.masks):
                area = 0 if m is None else rle.area(m)
                if area == 0:
                    continue
                self.true_iou.append(float(ious[k, g, t]))
                self.quality.append(track.score * track.predicted_iou[t])
                self.confidence.append(track.score)
                self.area.append(float(area))


@dataclass
class ModelScores:
    """A model's scores on a labelled set (see the module docstring); metrics x100, None where undefined."""

    ytvis: dict[str, float | None]
    jf: float | None = None
    ytvis_alt: dict[str, float | None] | None = None  # the same tracks under the other ranking
    alt_ranking: str | None = None  # "class" or "quality": the ranking of ytvis_alt
    spearman_quality: float | None = None
    spearman_confidence: float | None = None
    pearson_quality: float | None = None
    pearson_confidence: float | None = None
    samples: QualitySamples = field(default_factory=QualitySamples)

    def value(self, metric: str) -> float | None:
        """``metric``: ``JF`` or a YouTube-VIS metric these scores hold (:data:`METRICS` are the selectable
        ones)."""
        known = list(dict.fromkeys([*METRICS, *self.ytvis]))
        if metric not in known:
            raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(known)}")
        return self.jf if metric == "JF" else self.ytvis.get(metric)

    def column(self, name: str) -> float | None:
        """A table column: a YouTube-VIS metric, ``JF``, ``alt:<metric>`` (that metric under the other track
        ranking), or another score field (``spearman_quality``, ...)."""
        if name.startswith("alt:"):
            return (self.ytvis_alt or {}).get(name[4:])
        if name in self.ytvis or name == "JF":
            return self.value(name)
        if name in _SCALARS:
            return getattr(self, name)
        raise ValueError(
            f"unknown column {name!r}; expected a metric of {', '.join(self.ytvis)}, JF or {_SCALARS}"
        )

    @staticmethod
    def table(
        models: Sequence[tuple[str, ModelScores | None]],
        columns: Sequence[str] = SUMMARY,
        extra: Mapping[str, Sequence[object]] | None = None,
    ) -> str:
        """The one plain-text table of scores: a row per ``(name, scores)`` (``-`` where a model has no scores
        or a metric is undefined), a column per name in ``columns`` (see :meth:`column`; an ``alt:`` column
        is left out when no model has the other ranking), then the ``extra`` columns (``{header: one value per
        model}``, e.g. the pseudo-labels kept)."""
        alt = next((s.alt_ranking for _, s in models if s is not None and s.alt_ranking), None)
        columns = [c for c in columns if alt or not c.startswith("alt:")]
        headers = [_header(c, alt) for c in columns] + list(extra or {})
        widths = [max(6, len(h)) for h in headers]
        name_width = max([5, *(len(name) for name, _ in models)])
        lines = [f"{'model':{name_width}s} " + " ".join(f"{h:>{w}s}" for h, w in zip(headers, widths))]
        lines.append("-" * len(lines[0]))
        for i, (name, scores) in enumerate(models):
            values = [None if scores is None else scores.column(c) for c in columns]
            cells = [
                f"{'-':>{w}s}" if v is None else f"{v:{w}.{3 if c in _SCALARS else 2}f}"
                for v, w, c in zip(values, widths, columns)
            ]
            cells += [
                f"{'-' if v[i] is None else v[i]!s:>{w}s}"
                for v, w in zip((extra or {}).values(), widths[len(columns) :])
            ]
            lines.append(f"{name:{name_width}s} " + " ".join(cells))
        return "\n".join(lines)

    @staticmethod
    def metric_set(max_dets: Sequence[int]) -> list[str]:
        """What these scores hold, for ``evaluation.max_dets``: a cached ``metrics.json`` that holds another
        set (written before a metric was added) is scored again."""
        return [
            *ytvis_metric_names(tuple(max_dets)),
            *(f.name for f in fields(ModelScores) if f.name != "samples"),
        ]

    def to_json(self, samples: bool = True) -> dict:
        """The layout of a round's ``metrics.json`` (and, without the samples, of ``summary.json`` rows)."""
        names = [*self.ytvis, *(f.name for f in fields(ModelScores) if f.name != "samples")]
        out: dict = {"metric_set": names, "ytvis": self.ytvis}
        if self.ytvis_alt is not None:
            out["ytvis_alt"] = {"ranking": self.alt_ranking, **self.ytvis_alt}
        out |= {
            "jf": self.jf,
            "spearman_quality": self.spearman_quality,
            "spearman_confidence": self.spearman_confidence,
            "pearson_quality": self.pearson_quality,
            "pearson_confidence": self.pearson_confidence,
        }
        if samples:
            out["samples"] = asdict(self.samples)
        return out

    @classmethod
    def from_json(cls, data: dict) -> ModelScores:
        alt = dict(data["ytvis_alt"]) if data.get("ytvis_alt") else None
        ranking = alt.pop("ranking", None) if alt else None
        return cls(
            ytvis=data["ytvis"],
            jf=data.get("jf"),
            ytvis_alt=alt,
            alt_ranking=ranking,
            spearman_quality=data.get("spearman_quality"),
            spearman_confidence=data.get("spearman_confidence"),
            pearson_quality=data.get("pearson_quality"),
            pearson_confidence=data.get("pearson_confidence"),
            samples=QualitySamples(**data["samples"]) if data.get("samples") else QualitySamples(),
        )


class ModelEvaluator:
    """``ModelEvaluator(gt, frames_root, cfg)(model_folder) -> ModelScores`` (see the module docstring); models
    run on ``cfg.device``."""

    def __init__(self, gt_path: str | Path, frames_root: str | Path, cfg: Config):
        self.gt = load_ytvis(gt_path, frames_root=frames_root)
        check_annotated(self.gt, gt_path)
        check_frame_sizes(self.gt, gt_path)  # before any model is trained or run
        self.gt_path, self.frames_root = Path(gt_path), Path(frames_root)
        self.cfg = cfg
        self.device = str(resolve_device(cfg.device, "device"))  # chosen once: the command resolved it
        mb = cfg.inference.token_cache_mb  # every model it scores sees the same frames: one ViT pass each
        self.tokens = TokenCache(mb * 2**20) if mb > 0 else None

    def identity(self) -> dict:
        """The validation set (for the fingerprint of a cached score): the ground truth's content and its
        frames' names and contents."""
        frames = [name for info in self.gt.videos for name in info.file_names]
        return {
            "gt": content_identity(self.gt_path)["sha256"],
            "frames": files_identity(self.frames_root, frames),
        }

    def __call__(self, model_dir: str | Path) -> ModelScores:
        model = load_model(model_dir, model=self.cfg.model, device=self.device)
        return self.score(use_token_cache(model, self.tokens))

    def score(self, model) -> ModelScores:
        """The scores of a loaded model (a :class:`~autoqvis.model.vis.VideoMaskFormer` on ``device``)."""
        gt, inf = self.gt, self.cfg.inference
        check_track_score(model, inf.track_score)
        ev = self.cfg.evaluation
        max_proposals = ev.davis_max_proposals
        # every video's tracks under the configured ranking and the other one ("quality" for "class", else
        # "class"); the quality rankings only for models with a quality head
        other = "quality" if inf.track_score == "class" else "class"
        ranked: dict[str, dict[int, list[Track]]] = {inf.track_score: {}, other: {}}
        davis = DavisResult("2017-unsupervised")
        samples = QualitySamples()
        for info in gt.videos:
            source = FrameList(
                name=info.name or str(info.id),
                short_side=inf.short_side,
                max_size=inf.max_size,
                paths=gt.frame_paths(info.id),
            )
            by_class = segment_video(model, source, inf).tracks  # raw: in class-score order, not refined
            for ranking in ranked:
                if ranking == inf.track_score or all(t.predicted_iou is not None for t in by_class):
                    ranked[ranking][info.id] = finish_tracks(by_class, source, inf, ranking)
            tracks = ranked[inf.track_score][info.id]
            truth = gt.tracks.get(info.id, [])
            hw = (info.height, info.width)
            gt_ids = np.stack([id_map(truth, t, hw, 255) for t in range(info.length)])
            proposals = np.stack([id_map(tracks, t, hw, max_proposals) for t in range(info.length)])
            davis.objects.extend(
                evaluate_sequence_unsupervised(
                    info.name or str(info.id),
                    gt_ids,
                    proposals,
                    max_proposals=max_proposals,
                    bound_th=ev.davis_bound_th,
                )
            )
            samples.add(truth, by_class)
        summary = davis.summary()
        # the same tracks under the other ranking: what the quality head's rescoring is worth
        has_alt = len(ranked[other]) == len(gt.videos)
        q, s, true = samples.quality, samples.confidence, samples.true_iou
        # class-agnostic always: the model predicts one class (evaluation.class_agnostic is for --pred files)
        areas = {"area_small": ev.area_small, "area_large": ev.area_large, "max_dets": ev.max_dets}
        return ModelScores(
            ytvis=_clean(evaluate_tracks(gt.tracks, ranked[inf.track_score], **areas).metrics),
            jf=100 * summary["J&F-Mean"] if summary else None,
            ytvis_alt=_clean(evaluate_tracks(gt.tracks, ranked[other], **areas).metrics) if has_alt else None,
            alt_ranking=other if has_alt else None,
            spearman_quality=_clean_value(spearman(q, true)),
            spearman_confidence=_clean_value(spearman(s, true)),
            pearson_quality=_clean_value(pearson(q, true)),
            pearson_confidence=_clean_value(pearson(s, true)),
            samples=samples,
        )


def _clean_value(v: float | None) -> float | None:
    return None if v is None or v != v else float(v)


def _clean(metrics: dict) -> dict:
    return {k: _clean_value(v) for k, v in metrics.items()}
