"""``report.html``: one self-contained page (images embedded as data URIs) a person opens in a browser.

Sections: the per-round table, AP/AP50 per round, the quality predictor against the true IoU (or the
distribution of Q without ground truth), the selection funnel per round, a gallery of pseudo-labelled clips
(animated overlays, best and worst by quality), training-loss curves and the configuration.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoqvis.evaluate.models import SUMMARY
from autoqvis.report import plots
from autoqvis.runs.atomic import atomic_write_text

__all__ = ["GalleryItem", "ModelRow", "QualityAnalysis", "RunReport", "render_report"]

TABLE_KEYS = tuple(k for k in SUMMARY if k != "JF")  # the commands' columns (J&F has its own below)


@dataclass
class ModelRow:
    name: str
    metrics: dict[str, float] | None = None  # YTVIS metrics x100
    jf: float | None = None  # DAVIS J&F x100
    pseudo_labels: int | None = None  # pseudo-label tracks the model was trained on
    best: bool = False  # the model the run selected (by the validation metric, else the label-free pick)
    label_free: dict[str, float] | None = None  # criteria on the unlabeled videos (selftrain/pick.py)


@dataclass
class QualityAnalysis:
    """Per object-frame: the quality Q, the confidence s, and the true IoU with the matched ground truth."""

    predicted: np.ndarray
    confidence: np.ndarray
    true_iou: np.ndarray
    spearman_quality: float
    spearman_confidence: float
    pearson_quality: float
    pearson_confidence: float
    calibration: list[dict] = field(
        default_factory=list
    )  # per size bin: name, count, mean predicted, mean true


@dataclass
class GalleryItem:
    title: str
    quality: float
    gif: bytes


@dataclass
class RunReport:
    title: str
    models: list[ModelRow]
    config_yaml: str
    quality: QualityAnalysis | None = None
    quality_by_round: dict[str, np.ndarray] = field(default_factory=dict)
    quality_threshold: float = 0.75
    funnels: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    gallery: list[GalleryItem] = field(default_factory=list)
    loss_curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def render_report(report: RunReport, path: str | Path) -> Path:
    """Write the report atomically and return its path."""
    parts = [_header(report.title), _notes(report.notes), _table(report.models)]
    with_metrics = [m for m in report.models if m.metrics]
    if with_metrics:
        png = plots.metric_bars([m.name for m in with_metrics], [m.metrics for m in with_metrics])
        parts.append(_section("AP and AP50 per model", _img(png, "AP and AP50 per model")))
    parts.append(_quality_section(report))
    if report.funnels:
        parts.append(_funnel_section(report.funnels))
    if report.gallery:
        parts.append(_gallery(report.gallery))
    if report.loss_curves:
        parts.append(
            _section("Training loss", _img(plots.loss_curves(report.loss_curves), "training loss curves"))
        )
    parts.append(_section("Configuration", f"<pre>{html.escape(report.config_yaml)}</pre>"))
    page = "\n".join(parts) + "\n</body>\n</html>\n"
    return atomic_write_text(path, page)


def _header(title: str) -> str:
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}h2{border-bottom:1px solid #ddd;padding-bottom:4px}"
        "figure{display:inline-block;margin:6px;text-align:center;font-size:12px}pre{background:#f6f6f6;"
        "padding:1em;overflow:auto;font-size:12px}.note{color:#555}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{style}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>"
    )


def _notes(notes: Sequence[str]) -> str:
    return "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}"


def _img(png: bytes, alt: str, mime: str = "image/png") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{base64.b64encode(png).decode("ascii")}">'


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _table(models: Sequence[ModelRow]) -> str:
    extra = sorted({k for m in models for k in (m.metrics or {}) if k.endswith("-ranked")})
    keys = TABLE_KEYS + tuple(extra)  # e.g. "AP50 quality-ranked": the other track ranking
    criteria = list(dict.fromkeys(k for m in models for k in (m.label_free or {})))
    head = (
        "<tr><th>model</th>"
        + "".join(f"<th>{k}</th>" for k in keys)
        + "<th>J&amp;F</th><th>pseudo-labels</th>"
        + "".join(f"<th>{html.escape(c)} (no labels)</th>" for c in criteria)
        + "</tr>"
    )
    rows = []
    for m in models:
        cells = [_fmt((m.metrics or {}).get(k)) for k in keys]
        cells += [_fmt(m.jf), "–" if m.pseudo_labels is None else str(m.pseudo_labels)]
        cells += [_fmt((m.label_free or {}).get(c), 3) for c in criteria]
        name = html.escape(m.name) + (" <strong>(selected)</strong>" if m.best else "")
        rows.append(f"<tr><td>{name}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return _section("Models", "<table>" + head + "".join(rows) + "</table>")


def _quality_section(report: RunReport) -> str:
    q = report.quality
    if q is not None and len(q.true_iou):
        png = plots.quality_scatter(
            q.true_iou, q.predicted, q.confidence, q.spearman_quality, q.spearman_confidence
        )
        text = (
            f"<p>Correlation with the true per-frame IoU over {len(q.true_iou)} object-frames: quality Q "
            f"Spearman {q.spearman_quality:.3f} / Pearson {q.pearson_quality:.3f}; confidence s Spearman "
            f"{q.spearman_confidence:.3f} / Pearson {q.pearson_confidence:.3f} (the paper: 0.57 vs 0.42).</p>"
        )
        if q.calibration:
            rows = "".join(
                f"<tr><td>{html.escape(str(b['name']))}</td><td>{b['count']}</td><td>{_fmt(b['mean_predicted'], 3)}</td>"
                f"<td>{_fmt(b['mean_true'], 3)}</td></tr>"
                for b in q.calibration
            )
            text += (
                "<table><tr><th>size</th><th>object-frames</th><th>mean Q</th><th>mean true IoU</th></tr>"
                + rows
                + "</table>"
            )
        return _section("Quality predictor", text + _img(png, "quality against true IoU"))
    if report.quality_by_round:
        png = plots.quality_histogram(report.quality_by_round, report.quality_threshold)
        return _section("Quality of the pseudo-labels (no ground truth)", _img(png, "distribution of Q"))
    return ""


def _funnel_section(funnels: dict[str, list[tuple[str, int]]]) -> str:
    png = plots.funnel_plot(funnels, "objects")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{html.escape(s)}: {n}</td>" for s, n in steps)
        + "</tr>"
        for name, steps in funnels.items()
    )
    return _section("Pseudo-label selection funnel", _img(png, "selection funnel") + f"<table>{rows}</table>")


def _gallery(items: Sequence[GalleryItem]) -> str:
    figures = "".join(
        f"<figure>{_img(item.gif, item.title, 'image/gif')}<figcaption>{html.escape(item.title)} "
        f"(Q {item.quality:.2f})</figcaption></figure>"
        for item in items
    )
    return _section("Pseudo-labelled clips, best and worst by quality", figures)
