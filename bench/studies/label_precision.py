"""How precise are the pseudo-labels a round keeps, and which track filter makes them more precise?

On M0's pool predictions (``round_1/predictions``: what round 1 selects from), every variant of the selection
is applied and each kept object-frame (a selected, non-empty frame of a kept track) is scored against the truth
(used only to score):

- precision: the share of kept object-frames whose mask overlaps a true object at IoU >= 0.5;
- background: the share whose IoU is < 0.5 and whose mask lies less than half inside the true objects (as
  ``bench/davis_measures.py`` label_controls; the demo world annotates every object, so "background" here is
  background, not an unannotated object);
- kept: the kept object-frames as a share of those the official selection keeps, and the share of the pool's
  frames that hold at least one kept label (the pool: every frame of every unlabeled video).

Variants (each one switch on top of the run's selection): the quality threshold (``selection.quality_min``);
temporal consistency (``selection.min_consistency``: mean IoU of consecutive masks); persistence
(``selection.min_persistence``); agreement with the MaskCut teacher on the same frames (:func:`teacher_iou` >=
x; MaskCut on frames 1, 4, 7, ... of every pool video, cached in ``<seed>/label_precision_teacher.json``);
motion contrast against the camera (:func:`autoqvis.predict.ranking.motion_contrast` >= x, Farneback flow).

Runs on the seed folders of ``bench/studies/pick_regret.py`` (the demo world, whose unlabeled videos' true
tracks are generated again from the seed):

    python bench/studies/label_precision.py runs/pick_regret/seed_0 runs/pick_regret/seed_1 ... [--out DIR]

or on the seed folders of ``bench/studies/davis.py`` (real footage; the pool root's masks score the labels,
the discovery cache's MaskCut cuts are the teacher; ``--samples`` draws some background labels to look at):

    python bench/studies/label_precision.py runs/davis_inductive/seed_0 --davis-root DAVIS/davis2016-train \
        [--discovery-cache runs/davis_discovery] [--samples] [--out DIR]

Writes ``<out>/label_precision.json`` (autoqvis.benchmark format): per variant the figures pooled over seeds
and per seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from autoqvis import rle
from autoqvis.benchmark import write_results
from autoqvis.config import Config, load_config
from autoqvis.demo.pipeline import DemoPlan, demo_config, ensure_dinov2_weights
from autoqvis.evaluate.davis_bench import truth
from autoqvis.io.tracks import read_tracks
from autoqvis.io.video import read_image
from autoqvis.io.world import render_image, render_video
from autoqvis.io.ytvis import load_ytvis
from autoqvis.predict.ranking import motion_contrast, video_flows
from autoqvis.runs.layout import VIDEOS, DemoLayout, SelfTrainLayout
from autoqvis.selftrain.pick import teacher_cuts
from autoqvis.selftrain.pseudo_label import select_video
from autoqvis.selftrain.select import teacher_iou

# (name, selection overrides, extra track test: None or (feature, threshold))
VARIANTS = [
    ("official", {}, None),
    ("quality_min 0.4", {"quality_min": 0.4}, None),
    ("quality_min 0.5", {"quality_min": 0.5}, None),
    ("quality_min 0.6", {"quality_min": 0.6}, None),
    ("min_consistency 0.5", {"min_consistency": 0.5}, None),
    ("min_consistency 0.7", {"min_consistency": 0.7}, None),
    ("min_consistency 0.8", {"min_consistency": 0.8}, None),
    ("min_persistence 0.75", {"min_persistence": 0.75}, None),
    ("min_persistence 1.0", {"min_persistence": 1.0}, None),
    ("teacher_iou 0.3", {}, ("teacher", 0.3)),
    ("teacher_iou 0.5", {}, ("teacher", 0.5)),
    ("teacher_iou 0.6", {}, ("teacher", 0.6)),
    ("teacher_iou 0.7", {}, ("teacher", 0.7)),
    ("teacher_iou 0.8", {}, ("teacher", 0.8)),
    ("motion 1.0", {}, ("motion", 1.0)),
    ("motion 3.0", {}, ("motion", 3.0)),
    ("min_consistency 0.7 + teacher_iou 0.5", {"min_consistency": 0.7}, ("teacher", 0.5)),
]


def true_masks(plan: DemoPlan, seed: int) -> list[np.ndarray]:
    """(N, T, H, W) true masks of each unlabeled video, generated as ``make_world`` does."""
    rng = np.random.default_rng(seed)
    world = plan.world()
    for _ in range(plan.stills):
        render_image(rng, world)
    return [render_video(rng, world).masks for _ in range(plan.unlabeled_videos)]


def score_frame(mask: np.ndarray, truth: np.ndarray) -> tuple[bool, bool]:
    """(on an object at IoU >= 0.5, on background) for one kept mask against the frame's true objects."""
    best = max(((mask & g).sum() / max((mask | g).sum(), 1) for g in truth), default=0.0)
    inside = (mask & truth.any(axis=0)).sum() if len(truth) else 0
    return bool(best >= 0.5), bool(best < 0.5 and inside < 0.5 * mask.sum())


def study_seed(folder: Path, plan: DemoPlan, cfg: Config) -> dict[str, dict[str, float]]:
    seed = int(folder.name.split("_")[-1])
    if (folder / "plan.json").is_file():  # the plan the seed ran with (pick_regret.py writes it)
        plan = DemoPlan(**json.loads((folder / "plan.json").read_text()))
    run = DemoLayout(folder).selftrain.root
    videos = load_ytvis(run / "videos.json", run / "frames", check_frames=False)
    truth = true_masks(plan, seed)
    teacher = teacher_cuts(
        videos, [v.id for v in videos.videos], cfg.discovery, folder / "label_precision_teacher.json"
    )
    truths = {v.id: truth[int(v.name.split("_")[-1])] for v in videos.videos}
    return count_variants(videos, SelfTrainLayout(run).predictions(1), teacher, truths, cfg)


def study_davis_seed(
    folder: Path, root: Path, discovery: Path, cfg: Config, samples: Path | None = None
) -> dict[str, dict[str, float]]:
    """A seed folder of ``bench/studies/davis.py`` (its pool videos cached beside it in ``videos/``): the truth
    is the pool root's one annotated object per video, the teacher MaskCut's cuts of the discovery cache
    (``discovery``: frames 0, 3, 6, ... as the training pool took them), without the cuts the profile's region
    rule calls background regions, as the loop's teacher (``selection.min_teacher_iou``) has none."""
    videos = load_ytvis(
        folder.parent / "videos" / VIDEOS, folder.parent / "videos" / "frames", check_frames=False
    )
    gts = truth(root)
    cuts = json.loads(discovery.read_text())
    by_image = {im["id"]: Path(im["file_name"]) for im in cuts["images"]}
    ids = {v.name: v.id for v in videos.videos}
    teacher: dict[int, dict[int, list]] = {v.id: {} for v in videos.videos}
    for path in by_image.values():
        if path.parent.name in ids:
            teacher[ids[path.parent.name]].setdefault(int(path.stem), [])
    rule = cfg.discovery  # the teacher's cuts pass the profile's region rule, as the loop's teacher's do
    for a in cuts["annotations"]:
        path = by_image[a["image_id"]]
        region = rle.is_region_sized(rle.decode(a["segmentation"]), rule.max_area, rule.max_borders)
        if path.parent.name in ids and not region:
            teacher[ids[path.parent.name]][int(path.stem)].append(a["segmentation"])
    truths = {v.id: gts[v.name][None] for v in videos.videos if v.name in gts}
    return count_variants(videos, SelfTrainLayout(folder).predictions(1), teacher, truths, cfg, samples)


def count_variants(
    videos,
    predictions_folder: Path,
    teacher: dict[int, dict[int, list]],
    truths: dict[int, np.ndarray],
    cfg: Config,
    samples: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Per variant, the kept object-frames of M0's pool predictions scored against ``truths`` (video id ->
    (objects, T, H, W) true masks); with ``samples``, the official selection's background labels are drawn
    there (one image per label: the frame, the label in red, the truth in green), for a look at what they are."""
    features = {}  # (video id, track index) -> {"teacher": .., "motion": ..}
    predictions = {v.id: read_tracks(predictions_folder / f"{v.id}.json") for v in videos.videos}
    for v in videos.videos:
        flows = video_flows([read_image(p) for p in videos.frame_paths(v.id)])
        for i, t in enumerate(predictions[v.id]):
            features[v.id, i] = {
                "teacher": teacher_iou(t, teacher[v.id]) or 0.0,
                "motion": motion_contrast(t, flows),
            }
    pool_frames = sum(v.length for v in videos.videos if v.id in truths)
    out = {}
    for name, overrides, extra in VARIANTS:
        s = dataclasses.replace(cfg.selection, **overrides)
        on, background, kept, covered = 0, 0, 0, set()
        for v in videos.videos:
            if v.id not in truths:
                continue
            tagged = [
                dataclasses.replace(t, id=i) for i, t in enumerate(predictions[v.id])
            ]  # survives selection
            gt = truths[v.id]
            for t in select_video(tagged, s, regions=cfg.discovery):  # as the round selects
                if extra is not None and features[v.id, t.id][extra[0]] < extra[1]:
                    continue
                for f, (m, sel) in enumerate(zip(t.masks, t.selected, strict=True)):
                    if m is None or not sel:
                        continue
                    mask = rle.decode(m)
                    hit, bg = score_frame(mask, gt[:, f])
                    on, background, kept = on + hit, background + bg, kept + 1
                    covered.add((v.id, f))
                    if bg and samples is not None and name == "official" and (kept % 7 == 0):
                        draw_sample(
                            samples / f"{v.name}_{f:05d}_track{t.id}.png", videos, v, f, mask, gt[:, f]
                        )
        out[name] = {
            "object_frames": kept,
            "on_object": on,
            "on_background": background,
            "frames_covered": len(covered),
            "pool_frames": pool_frames,
        }
    return out


def draw_sample(path: Path, videos, video, frame: int, mask: np.ndarray, truth: np.ndarray) -> None:
    """The frame with the label (red) and the true objects (green) blended in."""
    from PIL import Image

    image = read_image(videos.frame_paths(video.id)[frame]).astype(np.float32)
    for m, colour in ((truth.any(axis=0), (0, 255, 0)), (mask, (255, 0, 0))):
        image[m] = 0.5 * image[m] + 0.5 * np.array(colour, np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(path)


def summarise(counts: dict[str, int], official: dict[str, int]) -> dict[str, float]:
    n = max(counts["object_frames"], 1)
    return {
        "precision": round(counts["on_object"] / n, 3),
        "background": round(counts["on_background"] / n, 3),
        "kept_of_official": round(counts["object_frames"] / max(official["object_frames"], 1), 3),
        "pool_frames_covered": round(counts["frames_covered"] / max(counts["pool_frames"], 1), 3),
        "object_frames": counts["object_frames"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "seeds",
        type=Path,
        nargs="+",
        help="seed folders of bench/studies/pick_regret.py (or, with --davis-root, of bench/studies/davis.py)",
    )
    parser.add_argument(
        "--davis-root",
        type=Path,
        help="the seeds are bench/studies/davis.py seeds whose pool is this DAVIS root (its masks score the labels)",
    )
    parser.add_argument(
        "--discovery-cache",
        type=Path,
        default=Path("runs/davis_discovery"),
        help="with --davis-root: davis.py's MaskCut cache (the teacher's cuts)",
    )
    parser.add_argument(
        "--samples", action="store_true", help="with --davis-root: draw background labels into OUT/samples/"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/label_precision"))
    parser.add_argument("--test-videos", type=int, default=160, help="the plan the seeds were run with")
    parser.add_argument("--quick", action="store_true", help="the seeds ran with the demo's quick sizes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    plan = DemoPlan.quick() if args.quick else DemoPlan(test_videos=args.test_videos)
    if args.davis_root:  # the selection of the small_data profile davis.py runs; the teacher from its cache
        cfg = load_config(["small_data"], args.overrides)
        found = [  # the cuts, not their fingerprint
            p
            for p in sorted(
                (args.discovery_cache / args.davis_root.resolve().name).glob("maskcut_every*.json")
            )
            if not p.name.endswith(".fingerprint.json")
        ]
        if not found:
            raise SystemExit(
                f"no MaskCut cache of {args.davis_root} in {args.discovery_cache}; run davis.py first"
            )
        samples = args.out / "samples" if args.samples else None
        per_seed = {f.name: study_davis_seed(f, args.davis_root, found[0], cfg, samples) for f in args.seeds}
    else:  # the demo's selection; MaskCut is run on the pool frames (cached per seed)
        weights = ensure_dinov2_weights()
        cfg = demo_config(plan, args.overrides)
        cfg = dataclasses.replace(cfg, discovery=dataclasses.replace(cfg.discovery, weights=str(weights)))
        per_seed = {folder.name: study_seed(folder, plan, cfg) for folder in args.seeds}
    pooled = {
        name: {k: sum(s[name][k] for s in per_seed.values()) for k in next(iter(per_seed.values()))[name]}
        for name, _, _ in VARIANTS
    }
    figures = {
        "source": (
            f"DAVIS pool {args.davis_root} (one annotated object per video: 'background' may be another object)"
            if args.davis_root
            else "demo world"
        )
        + ", M0's pool predictions (round_1/predictions), selection as the run's profile sets it",
        "pooled over seeds": {n: summarise(c, pooled["official"]) for n, c in pooled.items()},
        "per seed": {
            seed: {n: summarise(c, s["official"]) for n, c in s.items()} for seed, s in per_seed.items()
        },
    }
    write_results(args.out, "label_precision", figures, sys.argv)


if __name__ == "__main__":
    main()
