"""``report.html`` of a self-training run (``autoqvis selftrain`` and ``autoqvis demo``): everything is read
from the run folder (``round_k/``) and the :class:`~autoqvis.selftrain.loop.ModelResult` list the run
returned."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from autoqvis import rle
from autoqvis.config import Config, config_to_dict
from autoqvis.evaluate.models import ModelScores
from autoqvis.io.tracks import read_tracks
from autoqvis.io.ytvis import load_ytvis
from autoqvis.report.html import (
    GalleryItem,
    ModelRow,
    QualityAnalysis,
    RunReport,
    render_report,
)
from autoqvis.selftrain.loop import ModelResult, SelfTrainRun

__all__ = ["write_run_report"]

FUNNEL_STEPS = ("predicted", "nms", "score", "quality", "min_frames", "fused", "eligible")


def write_run_report(
    path: str | Path,
    models: list[ModelResult],
    cfg: Config,
    run: SelfTrainRun,
    title: str,
    notes: list[str] | None = None,
    selected: str | None = None,
) -> Path:
    """The report of ``run``; ``models`` may include models of other runs (the demo's confidence-only
    ablation); ``selected`` names the model the run chose, marked in the table. The quality scatter uses
    the last round's scores on the validation set; without one, the distribution of Q in each round's
    pseudo-labelling predictions."""
    rows = [
        ModelRow(
            m.name,
            metrics=_table_metrics(m.scores),
            jf=m.scores.jf if m.scores else None,
            pseudo_labels=m.pseudo_labels,
            best=m.name == selected,
            label_free=m.label_free,
        )
        for m in models
    ]
    last = f"round {cfg.selftrain.num_rounds}"
    final = next((m for m in models if m.name == last), models[-1]).scores
    report = RunReport(
        title=title,
        models=rows,
        config_yaml=yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
        quality=_quality(final, cfg),
        quality_by_round={} if final else _quality_by_round(run, cfg),
        quality_threshold=cfg.selection.quality_min,
        funnels=_funnels(run, cfg),
        gallery=[GalleryItem(*item) for item in _gallery(run, cfg)],
        loss_curves=_loss_curves(run, cfg),
        notes=list(notes or []),
    )
    return render_report(report, path)


def _table_metrics(scores: ModelScores | None) -> dict | None:
    """The YouTube-VIS metrics of a model, with AP50 under the other track ranking when there is one."""
    if scores is None or not scores.ytvis:
        return None
    alt = scores.ytvis_alt or {}
    extra = {f"AP50 {scores.alt_ranking}-ranked": alt.get("AP50")} if scores.alt_ranking else {}
    return {**scores.ytvis, **extra}


def _rounds(cfg: Config) -> range:
    return range(1, cfg.selftrain.num_rounds + 1)


def _quality(scores: ModelScores | None, cfg: Config) -> QualityAnalysis | None:
    from autoqvis.evaluate.quality import calibration_by_size

    if scores is None or len(scores.samples.quality) < 2:
        return None
    samples = scores.samples
    q, s, true, area = (
        np.asarray(v, float) for v in (samples.quality, samples.confidence, samples.true_iou, samples.area)
    )
    by_size = calibration_by_size(q, true, area, (cfg.evaluation.area_small, cfg.evaluation.area_large))
    nan = float("nan")
    return QualityAnalysis(
        predicted=q,
        confidence=s,
        true_iou=true,
        spearman_quality=nan if scores.spearman_quality is None else scores.spearman_quality,
        spearman_confidence=nan if scores.spearman_confidence is None else scores.spearman_confidence,
        pearson_quality=nan if scores.pearson_quality is None else scores.pearson_quality,
        pearson_confidence=nan if scores.pearson_confidence is None else scores.pearson_confidence,
        calibration=[{"name": n, **{k: v for k, v in b.items() if k != "bins"}} for n, b in by_size.items()],
    )


def _quality_by_round(run, cfg: Config) -> dict[str, np.ndarray]:
    """Q of every non-empty predicted mask in each round's pseudo-labelling predictions."""
    out = {}
    for k in _rounds(cfg):
        values = []
        for path in sorted((run.layout.predictions(k)).glob("*.json")):
            for t in read_tracks(path):
                values += [t.score * v for v, m in zip(t.predicted_iou or [], t.masks, strict=False) if m]
        if values:
            out[f"round {k}"] = np.asarray(values)
    return out


def _funnels(run, cfg: Config) -> dict[str, list[tuple[str, int]]]:
    funnels = {}
    for k in _rounds(cfg):
        path = run.layout.selection(k)
        if path.is_file():
            stats = json.loads(path.read_text())
            funnels[f"round {k}"] = [(name, stats[name]["objects"]) for name in FUNNEL_STEPS]
    return funnels


def _loss_curves(run, cfg: Config) -> dict[str, tuple[list[int], list[float]]]:
    curves = {}
    folders = [("M0", run.layout.stage(0))] + [(f"round {k}", run.layout.stage(k)) for k in _rounds(cfg)]
    for name, folder in folders:
        metrics = folder / "metrics.jsonl"
        if metrics.is_file():
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            curves[name] = ([x["iteration"] for x in lines], [x["total"] for x in lines])
    return curves


def _gallery(run, cfg: Config, per_end: int = 2) -> list[tuple[str, float, bytes]]:
    """Pseudo-labelled clips of the last round, best and worst by mean quality, as animated GIFs."""
    from autoqvis.io.davis import DAVIS_PALETTE
    from autoqvis.io.video import read_image

    path = run.layout.pseudo_labels(cfg.selftrain.num_rounds)
    if not path.is_file():
        return []
    labels = load_ytvis(path, frames_root=run.videos.frames_root, check_frames=False)
    scored = []
    for info in labels.videos:
        qs = [
            t.score * v
            for t in labels.tracks[info.id]
            if t.predicted_iou
            for v, m in zip(t.predicted_iou, t.masks, strict=True)
            if m is not None
        ]
        if qs:
            scored.append((float(np.mean(qs)), info))
    scored.sort(key=lambda x: -x[0])
    chosen = scored[:per_end] + scored[-per_end:] if len(scored) > 2 * per_end else scored
    items = []
    for quality, info in chosen:
        frames = []
        for t, p in enumerate(run.videos.frame_paths(info.id)):
            img = read_image(p).astype(np.float32)
            for j, track in enumerate(labels.tracks[info.id]):
                m = track.masks[t]
                if m is not None:
                    mask = rle.decode(m)
                    img[mask] = 0.5 * img[mask] + 0.5 * DAVIS_PALETTE[j + 1]
            frames.append(Image.fromarray(img.astype(np.uint8)))
        buf = io.BytesIO()
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=250, loop=0)
        items.append((info.name or str(info.id), quality, buf.getvalue()))
    return items
