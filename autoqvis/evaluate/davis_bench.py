"""What the DAVIS benchmark (``bench/studies/davis.py``) and its studies measure on DAVIS-style roots: the
truth, MaskCut discovery and its controls, every model's tracks on the scored videos (single foreground, best
of the top k, DAVIS-2017 unsupervised), the pseudo-labels' precision against the truth, and the label sets of
the controls (oracle, supervised ceiling).

Ground truth (``Annotations/480p/<seq>/*.png``, every non-zero pixel is the foreground, as DAVIS-2016) is read
only for scoring and for the control label sets. A seed's scores are stored with the settings they were made
under (:func:`scoring_settings`, :func:`scored_record`): scores made under other settings are never reported
as this run's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autoqvis import rle
from autoqvis.config import Config, config_to_dict, inference_settings
from autoqvis.errors import DataError, StaleOutputError
from autoqvis.evaluate.davis import evaluate_sequence_2016, evaluate_sequence_unsupervised
from autoqvis.io.davis import annotation_folder, read_id_masks, sequence_names
from autoqvis.io.tracks import read_tracks, write_tracks
from autoqvis.io.video import FrameList
from autoqvis.io.ytvis import YTVISDataset, load_ytvis
from autoqvis.model import load_model
from autoqvis.model.vit_backbone import TokenCache, use_token_cache
from autoqvis.predict.predict import finish_tracks, id_map, segment_video
from autoqvis.predict.ranking import rank_tracks, track_features
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.structures import Track

__all__ = [
    "MASKCUT",
    "RAW_TOP_K",
    "dense",
    "discover_frames",
    "discovery_controls",
    "frame_paths",
    "iou",
    "jf",
    "label_controls",
    "maskcut_baseline",
    "masks_by_frame",
    "mean_score",
    "raw_tracks",
    "score_model",
    "score_tracks",
    "scored_record",
    "scoring_settings",
    "teacher_agreement",
    "training_frames",
    "training_pool",
    "true_label_set",
    "truth",
]

MASKCUT = "MaskCut per frame (first mask)"
RAW_TOP_K = 20  # tracks kept per sequence for the DAVIS-2017 protocol and the ranking studies
TOKENS = TokenCache(2**30)  # the frozen ViT's tokens of the scored frames, shared by every model scored


# ---------------------------------------------------------------------------------------------------
# truth and discovery


def truth(root: Path) -> dict[str, np.ndarray]:
    """(T, H, W) bool foreground of every sequence."""
    ann = annotation_folder(root)
    return {q: read_id_masks(ann / q)[0] > 0 for q in sequence_names(ann)}


def frame_paths(root: Path, sequence: str) -> list[Path]:
    return sorted((root / "JPEGImages" / "480p" / sequence).glob("*.jpg"))


def unfiltered(cfg: Config):
    """The discovery settings without the region filters: MaskCut as the official code runs it (the filters
    are applied to the training pool afterwards, so that runs differing only in them share one cache)."""
    return dataclasses.replace(cfg.discovery, max_area=1.0, max_borders=4)


def discover_frames(root: Path, cache: Path, cfg: Config, every: int = 1) -> dict:
    """MaskCut on every ``every``-th frame of ``root`` into ``cache/<root name>/`` (resumable; reused while
    its settings are the same): every frame of a scored root (the MaskCut baseline), a pool root's training
    frames."""
    from autoqvis.discover.run import discover, video_items
    from autoqvis.model.vit import load_vit

    out = cache / root.resolve().name
    path = out / f"maskcut_every{every}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("info", {}).get("discovery") == config_to_dict(unfiltered(cfg)):
            return cached
        raise StaleOutputError(
            f"{path} was made with other discovery settings than these; pass another discovery cache folder"
        )
    frames_root = (out / "frames").resolve()
    vit = load_vit(cfg.discovery.arch, cfg.discovery.weights)
    return discover(
        video_items(root, every, frames_root),
        path,
        unfiltered(cfg),
        vit,
        source=f"davis-every{every}:{root.resolve()}",
        frames_root=frames_root,
    )


def training_pool(parts: dict[str, dict], every: int, out: Path, cfg: Config) -> Path:
    """The pseudo-mask JSON ImageCut2Video trains on: every ``every``-th frame of each discovery result in
    ``parts`` (root name -> MaskCut on every frame of that root), without the region-sized masks the
    profile's ``discovery.max_area`` / ``max_borders`` reject (as discovery itself does with them set; the
    cache holds MaskCut unfiltered). Frames are reached through ``out/pool_frames/<root name>``, a link to each
    root's cached frames."""
    links = out / "pool_frames"
    links.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    d = cfg.discovery
    for name, all_frames in parts.items():
        link = links / name
        if not link.exists():
            link.symlink_to(Path(all_frames["info"]["frames_root"]).resolve(), target_is_directory=True)
        ids = {}
        for im in all_frames["images"]:
            if int(Path(im["file_name"]).stem) % every == 0:
                ids[im["id"]] = len(images) + 1
                images.append(im | {"id": len(images) + 1, "file_name": f"{name}/{im['file_name']}"})
        for a in all_frames["annotations"]:
            if a["image_id"] in ids and not rle.is_region_sized(
                rle.decode(a["segmentation"]), d.max_area, d.max_borders
            ):
                annotations.append(a | {"id": len(annotations) + 1, "image_id": ids[a["image_id"]]})
    first = next(iter(parts.values()))
    pool = dict(first) | {"images": images, "annotations": annotations}
    pool["info"] = dict(first["info"]) | {"frames_root": str(links.resolve())}
    path = out / f"pseudo_masks_every{every}.json"
    atomic_write_json(path, pool)
    return path


def masks_by_frame(all_frames: dict) -> dict[tuple[str, int], list[np.ndarray]]:
    """(sequence, frame index) -> that frame's MaskCut masks in cut order."""
    by_image = {im["id"]: im for im in all_frames["images"]}
    out: dict[tuple[str, int], list[np.ndarray]] = {}
    for im in all_frames["images"]:
        out[(Path(im["file_name"]).parent.name, int(Path(im["file_name"]).stem))] = []
    for a in all_frames["annotations"]:
        im = by_image[a["image_id"]]
        out[(Path(im["file_name"]).parent.name, int(Path(im["file_name"]).stem))].append(
            rle.decode(a["segmentation"])
        )
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def discovery_controls(masks: dict, gts: dict[str, np.ndarray]) -> dict[str, float]:
    """Masks per frame, their area and border statistics, and IoU of the best mask with the truth."""
    from autoqvis.rle import touched_borders

    counts, areas, borders, best, first = [], [], [], [], []
    for (q, t), ms in masks.items():
        gt = gts[q][t]
        counts.append(len(ms))
        areas += [float(m.mean()) for m in ms]
        borders += [touched_borders(m) for m in ms]
        best.append(max((iou(m, gt) for m in ms), default=0.0))
        first.append(iou(ms[0], gt) if ms else 0.0)
    areas, borders, best = np.array(areas), np.array(borders), np.array(best)
    return {
        "frames": len(counts),
        "masks_per_frame": float(np.mean(counts)),
        "frames_without_mask": float(np.mean(np.array(counts) == 0)),
        "mean_area": float(areas.mean()) if areas.size else 0.0,
        "share_area_over_half": float((areas > 0.5).mean()) if areas.size else 0.0,
        "share_3_or_4_borders": float((borders >= 3).mean()) if borders.size else 0.0,
        "best_mask_iou": float(best.mean()),
        "best_mask_iou_over_half": float((best >= 0.5).mean()),
        "first_mask_iou": float(np.mean(first)),
    }


def maskcut_baseline(masks: dict, gts: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """J, F, J&F per sequence with the first MaskCut mask of each frame as the foreground."""
    out = {}
    for q, gt in gts.items():
        pred = np.stack(
            [masks[(q, t)][0] if masks[(q, t)] else np.zeros(gt.shape[1:], bool) for t in range(len(gt))]
        )
        out[q] = jf(q, gt, pred)
    return out


def jf(name: str, gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    stats = evaluate_sequence_2016(name, gt, pred).stats()
    return {"J": stats["J-Mean"], "F": stats["F-Mean"], "J&F": (stats["J-Mean"] + stats["F-Mean"]) / 2}


# ---------------------------------------------------------------------------------------------------
# models on the scored videos


def dense(track: Track | None, shape: tuple[int, ...]) -> np.ndarray:
    if track is None:
        return np.zeros(shape, bool)
    return np.stack([rle.decode(m) if m is not None else np.zeros(shape[1:], bool) for m in track.masks])


def raw_tracks(
    model_dir: Path | None, root: Path, gts: dict, cfg: Config, cache: Path
) -> dict[str, list[Track]]:
    """The model's top ``RAW_TOP_K`` tracks per sequence by class score, without refinement (cached in
    ``cache/<seq>.json``): every ranking and the CRF are applied to these."""
    net = None
    options = dataclasses.replace(cfg.inference, top_k=RAW_TOP_K)  # raw: ranked and refined by score_tracks
    out = {}
    for q in gts:
        path = cache / f"{q}.json"
        if path.is_file():
            out[q] = read_tracks(path)
            continue
        if model_dir is None:
            raise DataError(
                f"{path}: expected the kept raw tracks of {q} to score again, found none; "
                "run this seed without --rescore (it predicts them)"
            )
        net = net or use_token_cache(load_model(model_dir, model=cfg.model), TOKENS)
        source = FrameList(name=q, short_side=cfg.inference.short_side, paths=frame_paths(root, q))
        out[q] = segment_video(net, source, options).tracks
        write_tracks(path, out[q])
    return out


def score_tracks(
    raw: dict[str, list[Track]], root: Path, gts: dict, cfg: Config, best_of: int
) -> dict[str, dict]:
    """Per sequence: J, F, J&F of the top track of the configured ranking (with the configured CRF
    refinement; ``no_crf``: the same ranking's top track unrefined), the best J&F among its first ``best_of``
    tracks, the DAVIS-2017 unsupervised J&F of its first 20, and every raw track's features and J&F (for
    ranking studies)."""
    options = cfg.inference
    out = {}
    for q, gt in gts.items():
        source = FrameList(name=q, short_side=cfg.inference.short_side, paths=frame_paths(root, q))
        final = finish_tracks(raw[q], source, options)
        raw_jf = [jf(q, gt, dense(t, gt.shape)) for t in raw[q]]
        known = {id(t.masks): s for t, s in zip(raw[q], raw_jf, strict=True)}  # unrefined tracks share masks
        scores = [known.get(id(t.masks)) or jf(q, gt, dense(t, gt.shape)) for t in final[:best_of]]
        top = scores[0] if scores else jf(q, gt, np.zeros_like(gt))
        hw = gt.shape[1:]
        proposals = np.stack([id_map(final, t, hw, RAW_TOP_K) for t in range(len(gt))])
        (u,) = evaluate_sequence_unsupervised(q, gt.astype(np.uint8), proposals, max_proposals=RAW_TOP_K)
        per_track = [s["J&F"] for s in scores]
        plain = rank_tracks(raw[q], options.track_score, source.frame_size())  # the ranking, no CRF
        out[q] = top | {
            "no_crf": known.get(id(plain[0].masks)) if plain else jf(q, gt, np.zeros_like(gt)),
            f"best_of_{best_of}": max(per_track, default=0.0),
            "2017": (float(u.j.mean()) + float(u.f.mean())) / 2,
            "tracks": [
                track_features(t, hw).to_json() | {"J&F": s["J&F"]}
                for t, s in zip(raw[q], raw_jf, strict=True)
            ],
        }
    return out


def mean_score(per_sequence: dict[str, dict], key: str = "J&F") -> float | None:
    """Mean over sequences of one figure of a :func:`score_tracks` record: ``key`` per sequence, or with
    ``no_crf`` the J&F of the top track without the CRF (None for a record scored before it was kept)."""
    if key == "no_crf":
        values = [v["no_crf"]["J&F"] for v in per_sequence.values() if v.get("no_crf")]
        return float(np.mean(values)) if len(values) == len(per_sequence) else None
    return float(np.mean([v[key] for v in per_sequence.values()]))


def score_model(
    model_dir: Path | None,
    root: Path,
    gts: dict,
    cfg: Config,
    cache: Path,
    best_of: int,
    reuse_scores: bool = True,
) -> dict:
    """:func:`score_tracks` of the model's tracks (cached raw tracks and scores in ``cache``). With
    ``model_dir=None`` only the kept raw tracks are scored; ``reuse_scores=False`` scores them again and
    replaces ``scores.json`` once the new scores are complete."""
    path = cache / "scores.json"
    if reuse_scores and path.is_file():
        return json.loads(path.read_text())
    raw = raw_tracks(model_dir, root, gts, cfg, cache / "raw")
    scores = score_tracks(raw, root, gts, cfg, best_of)
    atomic_write_json(path, scores)
    return scores


def teacher_agreement(predictions: dict[str, list[Track]], masks: dict, every: int) -> float:
    """Mean IoU of a model's top class-ranked track with its MaskCut teacher's first mask on the
    training-pool frames (``predictions``: sequence name -> the model's tracks on that pool video)."""
    values = []
    for q, tracks in predictions.items():
        if not tracks:
            continue
        for t, m in enumerate(tracks[0].masks):
            if t % every == 0 and masks.get((q, t)):
                mask = rle.decode(m) if m is not None else np.zeros_like(masks[(q, t)][0])
                values.append(iou(mask, masks[(q, t)][0]))
    return float(np.mean(values)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------
# pseudo-labels and the control label sets


def label_controls(labels_path: Path, train_path: Path, gts: dict[str, np.ndarray]) -> dict[str, float]:
    """Precision and coverage of a round's selected labels against the truth: per selected object-frame the
    IoU with the true object; the share of labels that are background, parts of it or bloated around it; the
    share of truth frames (in the training set) that a selected label covers at IoU >= 0.5."""
    labels = load_ytvis(labels_path, check_frames=False)
    training = load_ytvis(train_path, check_frames=False)
    ious, background, part, bloated, areas = [], 0, 0, 0, []
    eligible = {v.name: {int(Path(f).stem) for f in v.file_names} for v in training.videos if v.name in gts}
    covered, truth_frames = 0, 0
    for info in labels.videos:
        if info.name not in gts:  # a video without ground truth
            continue
        gt = gts[info.name]
        for t in eligible.get(info.name, set()):
            truth_frames += bool(gt[t].any())
            hits = []
            for track in labels.tracks.get(info.id, []):
                m = track.masks[t]
                if m is None or not track.selected[t]:
                    continue
                mask = rle.decode(m)
                inter = np.logical_and(mask, gt[t]).sum()
                value = iou(mask, gt[t])
                ious.append(value)
                areas.append(float(mask.mean()))
                hits.append(value)
                if value < 0.5:
                    background += inter < 0.5 * mask.sum()
                    part += inter >= 0.8 * mask.sum()
                    bloated += gt[t].sum() > 0 and inter >= 0.8 * gt[t].sum()
            covered += bool(hits) and max(hits) >= 0.5
    n = max(len(ious), 1)
    return {
        "selected_object_frames": len(ious),
        "training_frames": sum(len(f) for f in eligible.values()),
        "mean_iou": float(np.mean(ious)) if ious else float("nan"),
        "share_iou_over_half": float(np.mean(np.array(ious) >= 0.5)) if ious else float("nan"),
        "share_background": background / n,
        "share_parts": part / n,
        "share_bloated": bloated / n,
        "mean_area": float(np.mean(areas)) if areas else float("nan"),
        "truth_frames_covered": covered / max(truth_frames, 1),
    }


def true_label_set(
    videos: YTVISDataset, gts: dict[str, np.ndarray], frames: dict[str, set[int]] | None
) -> YTVISDataset:
    """The videos with the true object as their only label: on ``frames`` (name -> frame indices, the oracle
    control: a round's own training frames) or on every frame (``None``: the supervised ceiling). Videos
    without ground truth are left out."""
    kept, tracks = [], {}
    for info in videos.videos:
        if info.name not in gts:
            continue
        gt = gts[info.name]
        indices = [int(Path(f).stem) for f in info.file_names]
        if frames is not None:
            wanted = frames.get(info.name, set())
            keep = [i for i, t in enumerate(indices) if t in wanted]
            info = dataclasses.replace(info, file_names=[info.file_names[i] for i in keep], length=len(keep))
            indices = [indices[i] for i in keep]
        if info.length < 2:
            continue
        masks = [rle.encode(gt[t]) if gt[t].any() else None for t in indices]
        if any(m is not None for m in masks):
            kept.append(info)
            tracks[info.id] = [Track(masks=masks, id=1)]
    return YTVISDataset(videos=kept, tracks=tracks, frames_root=videos.frames_root)


def training_frames(train_path: Path) -> dict[str, set[int]]:
    """Video name -> the frame indices of a round's training set."""
    training = load_ytvis(train_path, check_frames=False)
    return {v.name: {int(Path(f).stem) for f in v.file_names} for v in training.videos}


# ---------------------------------------------------------------------------------------------------
# scores and the settings they were made under


def scoring_settings(cfg: Config, best_of: int) -> dict:
    """What a model's scores depend on beyond its weights and the truth: the inference settings (ranking,
    CRF, sizes) and the best-of-k oracle's k."""
    return {"inference": inference_settings(cfg.inference), "best_of": best_of}


def scored_record(
    path: Path,
    scoring: dict,
    run: Callable[[], dict],
    score_again: Callable[[dict], dict],
    rescore: bool = False,
) -> tuple[dict, str]:
    """A seed's record (``path``, JSON) with scores made under ``scoring``, and how it came to be: ``run()``
    makes it when there is none ("run"); a kept one is reused when it was scored under ``scoring``
    ("reused"), else (or with ``rescore``) its models are scored again by ``score_again(record)``
    ("rescored"). The record is written with ``scored_with: scoring``, in one atomic write, so scores and their
    settings never part."""
    if path.is_file():
        record = json.loads(path.read_text())
        if not rescore and record.get("scored_with") == scoring:
            return record, "reused"
        record, how = score_again(record), "rescored"
    else:
        record, how = run(), "run"
    record["scored_with"] = scoring
    atomic_write_json(path, record)
    return record, how
