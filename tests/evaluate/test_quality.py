import numpy as np
import pytest
from scipy import stats

from autoqvis.evaluate.quality import calibration, calibration_by_size, pearson, spearman


def test_correlations_match_scipy_and_handle_degenerate_input():
    rng = np.random.default_rng(0)
    x = rng.random(200)
    y = 0.5 * x + 0.2 * rng.random(200)
    y[:10] = y[10]  # ties
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    assert np.isnan(pearson([1.0], [1.0])) and np.isnan(pearson([1, 1, 1], [0, 1, 2]))
    assert pearson([0, 1, np.nan, 3], [0, 1, 5, 3]) == pytest.approx(1.0)  # NaN samples dropped
    with pytest.raises(ValueError, match="3 predicted values but 2"):
        pearson([1, 2, 3], [1, 2])


def test_calibration_bins_and_size_split():
    predicted = np.array([0.05, 0.15, 0.95, 1.0, 0.55])
    true = np.array([0.0, 0.2, 0.9, 0.8, 0.5])
    table = calibration(predicted, true, bins=10)
    assert [b.count for b in table] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert table[9].mean_predicted == pytest.approx(0.975) and table[9].gap == pytest.approx(0.125)
    areas = np.array([100.0, 128.0**2, 200.0**2, 300.0**2, 500.0])
    split = calibration_by_size(predicted, true, areas)
    assert [split[k]["count"] for k in ("all", "small", "medium", "large")] == [5, 2, 2, 1]
    assert split["all"]["mae"] == pytest.approx(np.abs(predicted - true).mean())
