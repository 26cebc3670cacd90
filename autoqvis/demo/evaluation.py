"""The evaluation demo: a generated example with known tracks, scored with every metric autoqvis computes.

Until the model and self-training stages land, ``autoqvis demo`` runs this. It renders videos of the demo world
(textured, articulated objects; camera motion; occlusion), writes them as a YouTube-VIS dataset (JPEG frames +
``gt.json``) and as DAVIS palette PNGs, then scores three *simulated* predictors whose errors are made on
purpose (jittered and eroded masks, dropped frames, duplicates, false positives, miscalibrated scores and a
noisy quality estimate) with YouTube-VIS AP/AR, DAVIS-2017 unsupervised J&F and the quality-predictor
analysis, and writes ``metrics.json`` and ``report.html``. The predictions are simulated, not a model's output,
and the report says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from autoqvis.config import Config, config_to_dict, save_config
from autoqvis.demo.world import WorldConfig, render_video
from autoqvis.eval.davis import evaluate_davis_folders
from autoqvis.eval.quality import calibration_by_size, pearson, spearman
from autoqvis.eval.ytvis import evaluate_files, format_table
from autoqvis.io import rle
from autoqvis.io.atomic import atomic_path, atomic_write_json
from autoqvis.io.davis import write_sequence_masks
from autoqvis.io.ytvis import YTVISDataset, save_predictions, save_ytvis
from autoqvis.progress import progress_bar
from autoqvis.report.html import ModelRow, QualityAnalysis, RunReport, render_report
from autoqvis.structures import Track, VideoInfo

__all__ = ["PREDICTORS", "SimulatedPredictor", "run_evaluation_demo"]

log = logging.getLogger("autoqvis")


@dataclass(frozen=True)
class SimulatedPredictor:
    """How badly a simulated predictor errs."""

    name: str
    shift: float  # pixels of per-track jitter (std)
    erode: int  # max erosion/dilation radius
    drop: float  # chance a frame of a found object is missing
    miss: float  # chance an object is not found at all
    false_positives: float  # mean number of spurious tracks per video
    score_noise: float  # noise of the score around the true quality


PREDICTORS = (
    SimulatedPredictor(
        "simulated: strong", shift=1.0, erode=1, drop=0.02, miss=0.05, false_positives=0.5, score_noise=0.1
    ),
    SimulatedPredictor(
        "simulated: medium", shift=3.0, erode=2, drop=0.1, miss=0.15, false_positives=1.5, score_noise=0.2
    ),
    SimulatedPredictor(
        "simulated: weak", shift=6.0, erode=4, drop=0.25, miss=0.3, false_positives=3.0, score_noise=0.35
    ),
)


def _perturb(rng: np.random.Generator, mask: np.ndarray, dx: float, dy: float, radius: int) -> np.ndarray:
    moved = np.roll(mask, (round(dy), round(dx)), axis=(0, 1))
    r = int(rng.integers(-radius, radius + 1))
    if r == 0:
        return moved
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
    op = cv2.dilate if r > 0 else cv2.erode
    return op(moved.astype(np.uint8), kernel).astype(bool)


def _simulate(
    rng: np.random.Generator, gt_masks: np.ndarray, p: SimulatedPredictor
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """(masks (T, H, W), score, per-frame predicted IoU) for each simulated prediction of one video."""
    N, T, H, W = gt_masks.shape
    out = []
    for k in range(N):
        if rng.random() < p.miss:
            continue
        dx, dy = rng.normal(0, p.shift, 2)
        masks = np.zeros((T, H, W), bool)
        for t in range(T):
            if gt_masks[k, t].any() and rng.random() >= p.drop:
                masks[t] = _perturb(
                    rng, gt_masks[k, t], dx + rng.normal(0, 0.5), dy + rng.normal(0, 0.5), p.erode
                )
        out.append(masks)
        if rng.random() < p.false_positives / 4:  # a duplicate, shifted further
            out.append(np.stack([_perturb(rng, m, 2 * dx + 3, 2 * dy, p.erode) for m in masks]))
    for _ in range(rng.poisson(p.false_positives)):
        cy, cx = rng.uniform(0.2, 0.8) * H, rng.uniform(0.2, 0.8) * W
        ry, rx = rng.uniform(0.05, 0.2) * H, rng.uniform(0.05, 0.2) * W
        ys, xs = np.ogrid[:H, :W]
        blob = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
        start = int(rng.integers(0, T))
        out.append(np.stack([blob if t >= start else np.zeros_like(blob) for t in range(T)]))
    results = []
    for masks in out:
        true = np.array([_best_frame_iou(masks[t], gt_masks[:, t]) for t in range(T)])
        present = masks.any(axis=(1, 2))
        quality = float(true[present].mean()) if present.any() else 0.0
        score = float(np.clip(quality + rng.normal(0, p.score_noise), 0.01, 0.99))
        predicted_iou = np.clip(true + rng.normal(0, p.score_noise / 2, T), 0.0, 1.0)
        results.append((masks, score, predicted_iou))
    return results


def _best_frame_iou(mask: np.ndarray, gts: np.ndarray) -> float:
    if not mask.any():
        return 0.0
    inter = (gts & mask).sum((1, 2))
    union = (gts | mask).sum((1, 2))
    return float((inter / np.maximum(union, 1)).max(initial=0.0))


def run_evaluation_demo(
    out: str | Path, quick: bool = False, seed: int = 0, cfg: Config | None = None
) -> dict:
    """Generate the example, score the simulated predictors, write metrics.json and report.html in ``out``."""
    out = Path(out)
    cfg = cfg or Config()
    world = (
        WorldConfig(height=128, width=160, num_frames=12)
        if quick
        else WorldConfig(height=240, width=320, num_frames=24)
    )
    num_videos = 4 if quick else 12
    rng = np.random.default_rng(seed)
    save_config(cfg, out)

    videos, gt_tracks, gt_arrays = [], {}, {}
    with progress_bar("render example videos", total=num_videos) as bar:
        for v in range(1, num_videos + 1):
            rendered = render_video(rng, world)
            names = [f"video{v:03d}/{t:05d}.jpg" for t in range(world.num_frames)]
            for name, frame in zip(names, rendered.frames, strict=True):
                with atomic_path(out / "example" / "frames" / name, suffix=".jpg") as tmp:
                    cv2.imwrite(str(tmp), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            videos.append(
                VideoInfo(
                    id=v, width=world.width, height=world.height, length=world.num_frames, file_names=names
                )
            )
            masks = rendered.masks[rendered.present.any(axis=1)]
            gt_arrays[v] = masks
            gt_tracks[v] = [Track(masks=[rle.encode(m) if m.any() else None for m in obj]) for obj in masks]
            ids = np.zeros(masks.shape[1:], np.uint8)
            for k, obj in enumerate(masks):
                ids[obj] = k + 1
            write_sequence_masks(
                out / "example" / "davis" / "Annotations" / "480p",
                f"video{v:03d}",
                [f"{t:05d}" for t in range(world.num_frames)],
                ids,
            )
            bar.advance()
    gt_path = save_ytvis(
        YTVISDataset(videos=videos, tracks=gt_tracks, frames_root=out / "example" / "frames"),
        out / "example" / "gt.json",
    )

    rows, metrics, quality = [], {}, None
    with progress_bar("score simulated predictors", total=len(PREDICTORS)) as bar:
        for i, predictor in enumerate(PREDICTORS):
            slug = predictor.name.split(": ")[1]
            predictions, samples = {}, []
            pred_root = out / "predictions" / slug
            for v, gt_masks in gt_arrays.items():
                sims = sorted(_simulate(rng, gt_masks, predictor), key=lambda s: -s[1])
                predictions[v] = [
                    Track(masks=rle.encode_stack(m), score=s, predicted_iou=q.tolist()) for m, s, q in sims
                ]
                ids = np.zeros(gt_masks.shape[1:], np.uint8)
                for k, (m, _, _) in reversed(list(enumerate(sims[: cfg.evaluation.davis_max_proposals]))):
                    ids[m] = k + 1  # higher-scoring proposals painted last, on top
                write_sequence_masks(
                    pred_root, f"video{v:03d}", [f"{t:05d}" for t in range(world.num_frames)], ids
                )
                for m, s, q in sims:
                    for t in range(len(m)):
                        if m[t].any():
                            samples.append(
                                (s * q[t], s, _best_frame_iou(m[t], gt_masks[:, t]), float(m[t].sum()))
                            )
            pred_path = save_predictions(predictions, pred_root / "predictions.json")
            ev = cfg.evaluation
            ytvis = evaluate_files(
                gt_path, pred_path, area_small=ev.area_small, area_large=ev.area_large, max_dets=ev.max_dets
            )
            davis = evaluate_davis_folders(
                out / "example" / "davis", pred_root, protocol="2017-unsupervised", config=ev
            )
            jf = davis.summary()["J&F-Mean"] * 100
            metrics[predictor.name] = {"ytvis": ytvis.to_json(), "davis_2017_unsupervised": davis.summary()}
            rows.append(ModelRow(predictor.name, metrics=ytvis.metrics, jf=jf))
            print(format_table(ytvis, title=f"{predictor.name}  (DAVIS-2017 unsupervised J&F {jf:.1f})"))
            if i == 1:
                q, s, true, area = (np.array(x) for x in zip(*samples, strict=True))
                by_size = calibration_by_size(q, true, area, (ev.area_small, ev.area_large))
                quality = QualityAnalysis(
                    predicted=q,
                    confidence=s,
                    true_iou=true,
                    spearman_quality=spearman(q, true),
                    spearman_confidence=spearman(s, true),
                    pearson_quality=pearson(q, true),
                    pearson_confidence=pearson(s, true),
                    calibration=[{"name": name, **b} for name, b in by_size.items()],
                )
                metrics[predictor.name]["quality"] = {
                    name: {k: v for k, v in b.items() if k != "bins"} for name, b in by_size.items()
                }
            bar.advance()
    atomic_write_json(out / "metrics.json", metrics, indent=1)
    report = RunReport(
        title="autoqvis evaluation demo (generated example, simulated predictions)",
        models=rows,
        config_yaml=yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
        quality=quality,
        notes=[
            f"{num_videos} generated videos of {world.num_frames} frames at {world.height}x{world.width} with known tracks.",
            "The three predictors are SIMULATED (ground truth with deliberate errors), not a trained model: this "
            "demo exercises the evaluation (YouTube-VIS AP/AR, DAVIS J&F, quality analysis) end to end.",
            "The quality analysis uses the medium predictor: Q = score x simulated predicted IoU.",
        ],
    )
    path = render_report(report, out / "report.html")
    log.info("wrote %s and %s", out / "metrics.json", path)
    return metrics
