"""Statistics the benchmarks share: the standard error of a mean over seeds or draws."""

from __future__ import annotations

import numpy as np


def standard_error(values) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)); nan for fewer than two values."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
