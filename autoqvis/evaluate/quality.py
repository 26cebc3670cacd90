"""How well the quality predictor knows its own masks: correlation and calibration of predicted vs true IoU.

Inputs are flat arrays over (track, frame) samples: the predicted quality (the IoU head's output, or score x
predicted IoU) and the true per-frame IoU with the matched ground truth; the size bins use the ground-truth
(or predicted) mask area, with the YouTube-VIS thresholds 128^2 and 256^2 by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = ["CalibrationBin", "calibration", "calibration_by_size", "pearson", "spearman"]


def _pair(predicted: Sequence[float], true: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(predicted, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"{x.size} predicted values but {y.size} true values")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def pearson(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Pearson correlation; NaN with fewer than 2 samples or a constant input."""
    x, y = _pair(predicted, true)
    if x.size < 2:
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y / denom) if denom > 0 else float("nan")


def spearman(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Spearman rank correlation (ties get their average rank); NaN when undefined."""
    x, y = _pair(predicted, true)
    if x.size < 2:
        return float("nan")
    return pearson(rankdata(x), rankdata(y))


@dataclass(frozen=True)
class CalibrationBin:
    """Samples whose predicted quality falls in [lo, hi): their count and mean predicted and true IoU."""

    lo: float
    hi: float
    count: int
    mean_predicted: float
    mean_true: float

    @property
    def gap(self) -> float:
        """Mean predicted minus mean true IoU (> 0: over-confident)."""
        return self.mean_predicted - self.mean_true


def calibration(predicted: Sequence[float], true: Sequence[float], bins: int = 10) -> list[CalibrationBin]:
    """Reliability table over equal-width bins of predicted quality in [0, 1]; the last bin includes 1."""
    x, y = _pair(predicted, true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = index == b
        n = int(sel.sum())
        out.append(
            CalibrationBin(
                float(edges[b]),
                float(edges[b + 1]),
                n,
                float(x[sel].mean()) if n else float("nan"),
                float(y[sel].mean()) if n else float("nan"),
            )
        )
    return out


def calibration_by_size(
    predicted: Sequence[float],
    true: Sequence[float],
    areas: Sequence[float],
    thresholds: Sequence[float] = (128.0**2, 256.0**2),
    bins: int = 10,
) -> dict[str, dict]:
    """Per size bin (small < 128^2 <= medium < 256^2 <= large by default) and over all samples: count,
    Pearson, Spearman, mean absolute error, mean predicted and mean true value, and the reliability table."""
    x, y = np.asarray(predicted, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    a = np.asarray(areas, np.float64).ravel()
    if not (x.shape == y.shape == a.shape):
        raise ValueError(f"predicted ({x.size}), true ({y.size}) and areas ({a.size}) must have equal length")
    names = (
        ["small", "medium", "large"]
        if len(thresholds) == 2
        else [f"bin{i}" for i in range(len(thresholds) + 1)]
    )
    which = np.searchsorted(np.asarray(thresholds, np.float64), a, side="right")
    out: dict[str, dict] = {}
    for i, name in enumerate(["all", *names]):
        sel = np.ones_like(a, bool) if name == "all" else which == i - 1
        xs, ys = x[sel], y[sel]
        out[name] = {
            "count": int(sel.sum()),
            "pearson": pearson(xs, ys),
            "spearman": spearman(xs, ys),
            "mae": float(np.abs(xs - ys).mean()) if sel.any() else float("nan"),
            "mean_predicted": float(xs.mean()) if sel.any() else float("nan"),
            "mean_true": float(ys.mean()) if sel.any() else float("nan"),
            "bins": calibration(xs, ys, bins),
        }
    return out
