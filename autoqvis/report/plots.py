"""Matplotlib figures for the run report, each returned as PNG bytes (Agg backend, no display needed)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["funnel_plot", "loss_curves", "metric_bars", "quality_histogram", "quality_scatter"]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def metric_bars(names: Sequence[str], metrics: Sequence[Mapping[str, float]], keys=("AP", "AP50")) -> bytes:
    """Grouped bars of ``keys`` for each model (NaN bars are left out)."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(names)), 3.2))
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for i, key in enumerate(keys):
        values = [m.get(key, math.nan) if m else math.nan for m in metrics]
        bars = ax.bar(x + (i - (len(keys) - 1) / 2) * width, values, width, label=key)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(x, names, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("score (x100)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def quality_scatter(
    true_iou: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, rho_q: float, rho_s: float
) -> bytes:
    """True IoU against the quality score Q and against the confidence s, with Spearman's rho."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
    for ax, x, name, rho in (
        (axes[0], predicted, "quality Q = s x IoU_hat", rho_q),
        (axes[1], confidence, "confidence s", rho_s),
    ):
        ax.scatter(x, true_iou, s=6, alpha=0.4)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel(name)
        ax.set_title(f"Spearman rho = {rho:.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("true IoU (per frame)")
    return _png(fig)


def quality_histogram(values_by_round: Mapping[str, np.ndarray], threshold: float) -> bytes:
    """Distribution of the per-frame quality Q of the pseudo-labels, with the selection threshold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    bins = np.linspace(0, 1, 26)
    for name, values in values_by_round.items():
        ax.hist(values, bins=bins, histtype="step", lw=1.5, label=f"{name} ({len(values)} frames)")
    ax.axvline(threshold, color="red", ls="--", lw=1, label=f"threshold {threshold}")
    ax.set_xlabel("per-frame quality Q")
    ax.set_ylabel("object-frames")
    ax.legend(fontsize=8)
    return _png(fig)


def funnel_plot(funnels: Mapping[str, Sequence[tuple[str, int]]], unit: str) -> bytes:
    """How many ``unit`` survive each selection step, one line per round."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    for name, steps in funnels.items():
        labels = [s for s, _ in steps]
        ax.plot(labels, [n for _, n in steps], marker="o", label=name)
    ax.set_ylabel(unit)
    ax.tick_params(axis="x", labelsize=8, rotation=15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def loss_curves(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> bytes:
    """Total training loss against iteration for each training stage."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    for name, (its, values) in curves.items():
        ax.plot(its, values, label=name, lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("total loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
