"""YouTube-VIS evaluation: parity with the official evaluator on every fixture pair, plus hand cases."""

import json
import math

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.cli import main
from autoqvis.errors import DataError
from autoqvis.evaluate.ytvis import METRIC_NAMES, evaluate_files, evaluate_tracks, format_table, track_ious
from autoqvis.io.ytvis import load_json
from autoqvis.structures import Track
from tests.conftest import fixture_file


def _pairs():
    expected = load_json(fixture_file("ytvis_eval", "expected_results.json"))
    assert expected, "expected_results.json lists no pairs"
    return expected


def test_every_fixture_pair_matches_the_official_evaluator():
    for name, case in _pairs().items():
        gt = fixture_file("ytvis_eval", case["gt_file"])
        pred = fixture_file("ytvis_eval", case["pred_file"])
        result = evaluate_files(gt, pred)
        np.testing.assert_allclose(result.stats, case["stats_raw_12"], rtol=0, atol=1e-6, err_msg=name)
        for metric, value in case["results_x100"].items():
            got = result.metrics[metric]
            if value is None:
                assert math.isnan(got), (name, metric, got)
            else:
                assert got == pytest.approx(value, abs=1e-6), (name, metric)


def test_cli_reproduces_a_fixture_pair_and_writes_json(tmp_path, capsys):
    case = next(iter(_pairs().values()))
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--gt",
            str(fixture_file("ytvis_eval", case["gt_file"])),
            "--pred",
            str(fixture_file("ytvis_eval", case["pred_file"])),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "AP50" in printed and f"{case['results_x100']['AP50']:6.2f}" in printed
    written = json.loads((out / "metrics.json").read_text())
    np.testing.assert_allclose(written["stats_raw_12"], case["stats_raw_12"], atol=1e-6)
    for metric, value in case["results_x100"].items():  # the evaluator's NaN is written as null
        got = written["metrics"][metric]
        assert got is None if value is None else got == pytest.approx(value, abs=1e-6), metric
    assert (out / "config.yaml").is_file()


def _track(masks, score=1.0, category=1):
    return Track(
        masks=[None if m is None else rle.encode(m) for m in masks], score=score, category_id=category
    )


def _box(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_track_ious_match_brute_force_sums():
    rng = np.random.default_rng(0)
    T, h, w = 5, 20, 24
    gts, preds = [], []
    for _ in range(3):
        gts.append([None if rng.random() < 0.2 else rng.random((h, w)) < 0.3 for _ in range(T)])
    for _ in range(4):
        preds.append([None if rng.random() < 0.2 else rng.random((h, w)) < 0.3 for _ in range(T)])
    got = track_ious([_track(g) for g in gts], [_track(p) for p in preds])
    z = np.zeros((h, w), bool)
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            inter = sum(
                np.sum((a if a is not None else z) & (b if b is not None else z)) for a, b in zip(p, g)
            )
            union = sum(
                np.sum((a if a is not None else z) | (b if b is not None else z)) for a, b in zip(p, g)
            )
            assert got[i, j] == pytest.approx(inter / union if union else 0.0)


def test_perfect_missing_and_class_aware_cases():
    h, w = 40, 60
    a = [_box(h, w, 2, 2, 12, 12), _box(h, w, 3, 3, 13, 13), None]
    b = [None, _box(h, w, 20, 30, 35, 50), _box(h, w, 21, 31, 36, 51)]
    gt = {1: [_track(a, category=1), _track(b, category=2)]}
    perfect = evaluate_tracks(gt, {1: [_track(a, 0.9, 1), _track(b, 0.8, 2)]})
    assert perfect.metrics["AP"] == pytest.approx(100.0) and perfect.metrics["AR1"] == pytest.approx(50.0)
    assert math.isnan(perfect.metrics["APm"]) and math.isnan(perfect.metrics["APl"])
    nothing = evaluate_tracks(gt, {})
    assert nothing.metrics["AP"] == 0.0 and nothing.metrics["AR10"] == 0.0
    # class-aware: swapping categories turns both into false positives; class-agnostic ignores it
    swapped = {1: [_track(a, 0.9, 2), _track(b, 0.8, 1)]}
    assert evaluate_tracks(gt, swapped, class_agnostic=False).metrics["AP"] == 0.0
    assert evaluate_tracks(gt, swapped).metrics["AP"] == pytest.approx(100.0)
    # a half-overlapping prediction counts at IoU 0.5 only
    half = [_box(h, w, 2, 2, 12, 7), _box(h, w, 3, 3, 13, 8), None]
    r = evaluate_tracks({1: [_track(a)]}, {1: [_track(half)]})
    assert r.metrics["AP50"] == pytest.approx(100.0) and r.metrics["AP75"] == 0.0
    assert r.metrics["AP"] == pytest.approx(10.0)
    assert "AP50" in format_table(r) and len(METRIC_NAMES) == 8


def test_predictions_for_unknown_videos_are_an_error(tmp_path):
    h, w = 8, 8
    gt = {1: [_track([_box(h, w, 0, 0, 4, 4)])]}
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluate_tracks(gt, {7: [_track([_box(h, w, 0, 0, 4, 4)])]})


def test_cli_needs_both_files(capsys, tmp_path):
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json")]) == 2
    assert "needs both" in capsys.readouterr().err
    assert main(["evaluate", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "p.json")]) == 2
    assert "not found" in capsys.readouterr().err


def test_recall_columns_are_labelled_by_their_number_of_detections():
    """AR<a> and AR<b> follow evaluation.max_dets (a, b, c): no column labelled AR1 that holds AR@2."""
    gt = {1: [Track(masks=[rle.encode(np.pad(np.ones((4, 4), bool), 2))])]}
    miss = rle.encode(np.zeros((8, 8), bool))
    hit = rle.encode(np.pad(np.ones((4, 4), bool), 2))
    # the best-scored prediction misses, the second one hits: recall 0 at 1 detection, 1 at 2
    pred = {1: [Track(masks=[miss], score=0.9), Track(masks=[hit], score=0.8)]}
    default = evaluate_tracks(gt, pred)
    assert tuple(default.metrics) == METRIC_NAMES and default.metrics["AR1"] == 0.0
    other = evaluate_tracks(gt, pred, max_dets=(2, 20, 100))
    assert tuple(other.metrics)[-2:] == ("AR2", "AR20") and "AR1" not in other.metrics
    assert other.metrics["AR2"] == 100.0
    assert "AR2" in format_table(other) and "AR1 " not in format_table(other)
