"""Parity of pseudo-label selection, fusion and eligible frames with the official AutoQ-VIS code.

The fixture (``tests/fixtures/selection_official/``, or ``$AUTOQVIS_FIXTURES/selection_official/`` when that
folder exists) was made by running the official functions on randomized two-round inputs; its README says how.
Every case named in its ``meta.json`` is replayed through our pipeline, as ``loop.py`` runs it:
``select_video`` per video -> round 1: the selection itself, round 2: ``fuse_labels(round 1, selection)`` ->
``eligibility_counts`` -> ``build_training_set``, and compared exactly.

Official structures -> ours:

- ``predictions[video][k]`` (the official model output of one video, in score order: ``pred_scores[k]``,
  ``pred_ious[k]`` (T x 1), ``pred_masks[k]`` stored as RLE) ->
  ``Track(masks, score, predicted_iou=[x[0] ...], id=k)``.
- ``kept_after_nms_and_score[video]``: indices surviving ``apply_nmsV2`` and the score threshold in
  ``get_iou_pred_iou`` -> the ``id`` of our tracks after ``nms_any_frame`` / ``keep_confident``.
- object-based dicts (``marked`` = ``construct_object_based_dict(mark_results(...))``, ``selected`` = after
  ``remove_low_quality_objects``, ``merged`` = after ``merge_object_based_results`` and the JSON round trip):
  ``{video: {object: {frame: frame_result}}}`` -> ``{video: [Track]}`` with the objects in dict order.
  Per frame: ``anno_info.segmentation`` (None when empty) -> ``Track.masks[t]``; ``marked`` ->
  ``Track.selected[t]``; ``metric`` -> ``Track.quality()[t]`` (or the score, confidence-only variant).
  ``frame_result["src"] = [round, k]`` is a provenance tag the generator added (no official function reads
  it): the prediction the frame came from, which gives the expected ``Track.predicted_iou[t]`` after fusion.
  A video without objects is absent from an official dict; ours may hold it with an empty list.
- ``training_set`` = ``build_total_info(filter_marked_results(construct_frame_based_dict(merged)))``: its
  ``videos`` (eligible frames as ``file_names``) -> ``eligibility_counts``; its ``annotations`` -> the tracks
  of ``build_training_set``. The official file also lists objects that are empty in every eligible frame
  (all segmentations None); the YTVIS loader drops those, and ``build_training_set`` leaves them out, so they
  are skipped here. Video order is not compared (the official order is: videos labelled earlier first).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from autoqvis import rle
from autoqvis.config import SelectionConfig
from autoqvis.io.ytvis import YTVISDataset
from autoqvis.selftrain.fuse import fuse_labels
from autoqvis.selftrain.pseudo_label import (
    SelectionStats,
    build_training_set,
    eligibility_counts,
    select_video,
)
from autoqvis.selftrain.select import keep_confident, mark_selected, nms_any_frame, normalise_empty
from autoqvis.structures import Track, VideoInfo

NAME = "selection_official"
COMMITTED = Path(__file__).resolve().parents[1] / "fixtures" / NAME
METRICS = {"score_ious": "quality", "scores": "confidence"}


def folder() -> Path:
    explicit = os.environ.get("AUTOQVIS_FIXTURES")
    if explicit and (Path(explicit) / NAME).is_dir():
        return Path(explicit) / NAME
    return COMMITTED


def _meta() -> dict:
    return json.loads((folder() / "meta.json").read_text())


@functools.cache
def load_case(name: str) -> dict:
    entry = next(c for c in _meta()["cases"] if c["name"] == name)
    return json.loads((folder() / entry.get("file", f"{name}.json")).read_text())


CASES = [c["name"] for c in _meta()["cases"]]


def config(params: dict) -> SelectionConfig:
    return SelectionConfig(
        nms_iou=params["nms_iou"],
        score_min=params["score_min"],
        quality_min=params["quality_min"],
        selection_score=METRICS[params["metric"]],
        min_frames=params["min_frames"],
        fuse_iou=params["fuse_iou"],
        min_eligible_frames=params["min_eligible_frames"],
    )


def predictions(case: dict, r: int) -> dict[int, list[Track]]:
    """Round r's model output per video, as our tracks (``id`` = index in the official input list)."""
    preds = case["rounds"][r]["predictions"]
    return {
        v["id"]: [
            Track(masks=p["masks"], score=p["score"], predicted_iou=[x[0] for x in p["pred_ious"]], id=k)
            for k, p in enumerate(preds[str(v["id"])])
        ]
        for v in case["videos"]
    }


def objects(official: dict, video_id: int) -> list[list[dict]]:
    """An official object-based dict's objects of one video, in order, each as its frame results in order."""
    out = []
    for frames in official.get(str(video_id), {}).values():
        keys = [int(f) for f in frames]
        assert keys == list(range(len(keys))), f"frames of an official object: {keys}"
        out.append(list(frames.values()))
    return out


def same_mask(ours: dict | None, theirs: dict | None) -> bool:
    if ours is None or theirs is None:
        return ours is None and theirs is None
    return bool(np.array_equal(rle.decode(ours), rle.decode(theirs)))


def assert_tracks(
    ours: list[Track], theirs: list[list[dict]], case: dict, where: str, metric: str | None = None
):
    """Object order, and per frame: mask, flag, source prediction (predicted IoU) and the official metric."""
    assert len(ours) == len(theirs), f"{where}: {len(ours)} objects, official {len(theirs)}"
    for n, (track, frames) in enumerate(zip(ours, theirs)):
        assert track.num_frames == len(frames), f"{where} object {n}: frame count"
        for t, fr in enumerate(frames):
            at = f"{where} object {n} frame {t}"
            assert same_mask(track.masks[t], fr["anno_info"]["segmentation"]), f"{at}: mask"
            assert track.selected[t] == fr["marked"], (
                f"{at}: selected {track.selected[t]}, official {fr['marked']}"
            )
            src_round, k = fr["src"]
            source = case["rounds"][src_round - 1]["predictions"][str(fr["video_id"])][k]
            assert track.predicted_iou[t] == source["pred_ious"][t][0], f"{at}: predicted IoU"
            if metric == "quality":
                assert track.quality()[t] == fr["metric"], (
                    f"{at}: quality {track.quality()[t]} != {fr['metric']}"
                )
            elif metric == "confidence":
                assert track.score == fr["metric"], f"{at}: score"


def run_rounds(case: dict) -> list[dict]:
    """Our pipeline on the case's rounds; per round: selection, fused labels, eligible frames, training
    set."""
    cfg = config(case["params"])
    videos = YTVISDataset(
        videos=[
            VideoInfo(
                id=v["id"],
                width=v["width"],
                height=v["height"],
                length=v["length"],
                file_names=v["file_names"],
            )
            for v in case["videos"]
        ]
    )
    out, labels = [], None
    for r in range(len(case["rounds"])):
        stats = SelectionStats()
        selected = {vid: select_video(tracks, cfg, stats) for vid, tracks in predictions(case, r).items()}
        labels = selected if labels is None else fuse_labels(labels, selected, cfg.fuse_iou)
        eligible = eligibility_counts(labels, cfg.min_eligible_frames, stats)
        out.append(
            {
                "selected": selected,
                "labels": labels,
                "eligible": eligible,
                "training_set": build_training_set(videos, labels, eligible),
            }
        )
    return out


@functools.cache
def ours(name: str) -> list[dict]:
    return run_rounds(load_case(name))


def test_meta_lists_cases():
    assert CASES, f"{folder() / 'meta.json'} lists no cases"
    for c in _meta()["cases"]:
        assert (folder() / c.get("file", f"{c['name']}.json")).is_file(), c["name"]


@pytest.mark.parametrize("name", CASES)
def test_nms_score_and_marking(name):
    """Which predictions survive NMS and the score threshold, in which order, and their per-frame flags."""
    case = load_case(name)
    cfg = config(case["params"])
    for r, rd in enumerate(case["rounds"]):
        for vid, tracks in predictions(case, r).items():
            where = f"round {r + 1} video {vid}"
            after_nms = nms_any_frame([normalise_empty(t) for t in tracks], cfg.nms_iou)
            kept = rd["kept_after_nms_and_score"][str(vid)]
            assert [t.id for t in after_nms] == kept["nms"], f"{where}: NMS"
            confident = keep_confident(after_nms, cfg.score_min)
            assert [t.id for t in confident] == kept["score"], f"{where}: score threshold"
            marked = mark_selected(confident, cfg.quality_min, cfg.selection_score)
            assert_tracks(marked, objects(rd["marked"], vid), case, f"{where} (marked)", cfg.selection_score)


@pytest.mark.parametrize("name", CASES)
def test_selected_objects(name):
    """``select_video`` == ``remove_low_quality_objects(construct_object_based_dict(mark_results(...)))``."""
    case = load_case(name)
    metric = METRICS[case["params"]["metric"]]
    for r, (rd, mine) in enumerate(zip(case["rounds"], ours(name))):
        for v in case["videos"]:
            where = f"round {r + 1} video {v['id']}"
            theirs = objects(rd["selected"], v["id"])
            assert [t.id for t in mine["selected"][v["id"]]] == [o[0]["src"][1] for o in theirs], (
                f"{where}: kept"
            )
            assert_tracks(mine["selected"][v["id"]], theirs, case, where, metric)


@pytest.mark.parametrize("name", CASES)
def test_fused_labels(name):
    """Round 1 labels are the selection; round 2 ``fuse_labels`` == ``merge_object_based_results``."""
    case = load_case(name)
    for r, (rd, mine) in enumerate(zip(case["rounds"], ours(name))):
        labelled = {vid for vid, tracks in mine["labels"].items() if tracks}
        assert labelled == {int(v) for v in rd["merged"]}, f"round {r + 1}: labelled videos"
        for vid in labelled:
            assert_tracks(
                mine["labels"][vid], objects(rd["merged"], vid), case, f"round {r + 1} video {vid} fused"
            )


@pytest.mark.parametrize("name", CASES)
def test_eligible_frames_and_training_set(name):
    """``eligibility_counts`` / ``build_training_set`` == ``filter_marked_results`` / ``build_total_info``."""
    case = load_case(name)
    names = {v["id"]: v["file_names"] for v in case["videos"]}
    for r, (rd, mine) in enumerate(zip(case["rounds"], ours(name))):
        official = rd["training_set"]
        frames = {v["id"]: [names[v["id"]].index(f) for f in v["file_names"]] for v in official["videos"]}
        assert mine["eligible"] == frames, f"round {r + 1}: eligible frames per video"
        train = mine["training_set"]
        assert {v.id for v in train.videos} == set(frames)
        for info in train.videos:
            where = f"round {r + 1} training video {info.id}"
            assert info.file_names == [names[info.id][f] for f in frames[info.id]], where
            assert info.length == len(frames[info.id]), where
            annotations = [
                a
                for a in official["annotations"]
                if a["video_id"] == info.id and any(s is not None for s in a["segmentations"])
            ]
            tracks = train.tracks[info.id]
            assert len(tracks) == len(annotations), (
                f"{where}: {len(tracks)} objects, official {len(annotations)}"
            )
            for n, (track, ann) in enumerate(zip(tracks, annotations)):
                assert len(track.masks) == len(ann["segmentations"])
                for t, (m, s) in enumerate(zip(track.masks, ann["segmentations"])):
                    assert same_mask(m, s), f"{where} object {n} frame {t}"
