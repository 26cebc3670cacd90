"""Real footage: the whole unsupervised pipeline on a DAVIS-style root, over several seeds, with controls.

The ground truth (``Annotations/480p/<seq>/*.png``, every non-zero pixel is the foreground object, as in
DAVIS-2016) is used only for scoring. Pipeline (``configs/small_data.yaml`` plus the sizes below):

1. discovery: MaskCut with the offline DINOv2-S features on every frame of the videos (cached, shared by all
   seeds); the training pool is every ``--every``-th frame. Controls: masks per frame, their area and the
   image borders they touch, IoU of the best mask with the true object;
2. per seed (``training.seed``): ImageCut2Video from the pool, the initial stage (M0) and
   ``selftrain.num_rounds`` self-training rounds on the videos themselves; the label-free criteria of every
   model and the model they pick. Controls: M0 against its own MaskCut teacher; each round's label precision
   and coverage against the truth; with ``--controls``, an oracle round (true masks on the same frames) and a
   synthetic-only round (``rounds.mix_prob=0``) from the same M0.

Scores: DAVIS-2016 J, F and J&F (first and last frame excluded) with the top-scoring track as the foreground,
per sequence and mean; over seeds the mean +- standard error and the paired differences (paired by seed).

    python bench/davis.py [--root ROOT] [--seeds 3] [--first-seed 0] [--out runs/bench_davis]
        [--skip-maskcut-baseline] [--controls] [--every 3] [--extra-videos DIR] [--short-side 160] [--m0-iters N]
        [--round-iters N] [--config FILE ...] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from stats import standard_error  # bench/stats.py (the script's folder is on sys.path)

from autoqvis import rle
from autoqvis.config import Config, load_config
from autoqvis.demo.pipeline import ensure_dinov2_weights
from autoqvis.eval.davis import evaluate_sequence_2016
from autoqvis.inference.predict import segment_video
from autoqvis.io.atomic import atomic_write_json
from autoqvis.io.davis import annotation_folder, read_id_masks, sequence_names
from autoqvis.io.video import FrameList, find_videos
from autoqvis.io.ytvis import YTVISDataset, load_ytvis
from autoqvis.model import load_model
from autoqvis.selftrain.loop import SelfTrainRun
from autoqvis.selftrain.videos import cache_videos
from autoqvis.structures import Track
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "davis2016-dev"
PROFILE = "small_data"
MASKCUT = "MaskCut per frame (first mask)"


# ---------------------------------------------------------------------------------------------------
# configuration and data


def bench_config(args: argparse.Namespace, weights: Path) -> Config:
    """The small-data profile with this benchmark's sizes, then the user's files and overrides."""
    s = args.short_side
    sizes = [
        f"synthesis.short_sides=[{s}]",
        f"synthesis.crop_min={int(s * 1.2)}",
        f"synthesis.crop_max={int(s * 1.6)}",
        f"inference.short_side={s}",
        f"discovery.fixed_size={args.fixed_size}",
        f"discovery.weights={weights}",
        f"model.vit_weights={weights}",
    ]
    if args.m0_iters:
        sizes.append(f"training.max_iters={args.m0_iters}")
    if args.round_iters:
        sizes.append(f"rounds.iters={args.round_iters}")
    return load_config([PROFILE, *args.config], sizes + args.overrides)


def check_same_settings(args: argparse.Namespace, cfg: Config) -> None:
    """A run folder holds one configuration: its cached discovery and seeds are reused only with it."""
    from autoqvis.config import config_to_dict

    settings = {
        "config": config_to_dict(cfg),
        "root": str(args.root.resolve()),
        "every": args.every,
        "extra": str(args.extra_videos.resolve()) if args.extra_videos else None,
    }
    path = args.out / "settings.json"
    if path.is_file() and json.loads(path.read_text()) != settings:
        raise SystemExit(f"{args.out} holds a run with other settings; pass another --out (or delete it)")
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, settings)


def truth(root: Path) -> dict[str, np.ndarray]:
    """(T, H, W) bool foreground of every sequence."""
    ann = annotation_folder(root)
    return {q: read_id_masks(ann / q)[0] > 0 for q in sequence_names(ann)}


# ---------------------------------------------------------------------------------------------------
# discovery and its controls


def unfiltered(cfg: Config):
    """The discovery settings without the region filters: MaskCut as the official code runs it (the filters
    are applied to the training pool afterwards, so that runs differing only in them share one cache)."""
    return dataclasses.replace(cfg.discovery, max_area=1.0, max_borders=4)


def discover_all_frames(root: Path, out: Path, cfg: Config) -> dict:
    """MaskCut on every frame (resumable; reused while its settings are the same); the training pool is a
    subset of these results."""
    from autoqvis.config import config_to_dict
    from autoqvis.discover.run import discover, video_items
    from autoqvis.model.vit import load_vit

    path = out / "maskcut_all_frames.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("info", {}).get("discovery") == config_to_dict(unfiltered(cfg)):
            return cached
        raise SystemExit(f"{path} was made with other discovery settings; pass another --discovery-cache")
    frames_root = (out / "frames").resolve()
    vit = load_vit(cfg.discovery.arch, cfg.discovery.weights)
    return discover(
        video_items(root, 1, frames_root),
        path,
        unfiltered(cfg),
        vit,
        source=f"davis-all:{root.resolve()}",
        frames_root=frames_root,
    )


def discover_extra(extra: Path, every: int, out: Path, cfg: Config) -> dict:
    """MaskCut on every ``every``-th frame of the unscored extra videos (resumable)."""
    from autoqvis.discover.run import discover, video_items
    from autoqvis.model.vit import load_vit

    path = out / f"maskcut_extra_every{every}.json"
    if path.is_file():
        return json.loads(path.read_text())
    frames_root = (out / "frames").resolve()
    vit = load_vit(cfg.discovery.arch, cfg.discovery.weights)
    return discover(
        video_items(extra, every, frames_root),
        path,
        unfiltered(cfg),
        vit,
        source=f"extra:{extra.resolve()}:{every}",
        frames_root=frames_root,
    )


def training_pool(all_frames: dict, every: int, out: Path, cfg: Config, extra: dict | None = None) -> Path:
    """The pseudo-mask JSON of every ``every``-th frame (what ImageCut2Video trains on), with the extra
    videos' frames (already every ``every``-th) appended, and without the region-sized masks the profile's
    ``discovery.max_area`` / ``max_borders`` reject (as discovery itself does with them set)."""
    path = out / f"pseudo_masks_every{every}.json"
    keep = {im["id"] for im in all_frames["images"] if int(Path(im["file_name"]).stem) % every == 0}
    subset = dict(all_frames)
    subset["images"] = [im for im in all_frames["images"] if im["id"] in keep]
    subset["annotations"] = [a for a in all_frames["annotations"] if a["image_id"] in keep]
    if extra:
        image_offset = max(im["id"] for im in all_frames["images"]) + 1
        ann_offset = max((a["id"] for a in all_frames["annotations"]), default=0) + 1
        subset["images"] += [im | {"id": im["id"] + image_offset} for im in extra["images"]]
        subset["annotations"] += [
            a | {"id": a["id"] + ann_offset, "image_id": a["image_id"] + image_offset}
            for a in extra["annotations"]
        ]
    atomic_write_json(path, subset)
    return path


def masks_by_frame(all_frames: dict) -> dict[tuple[str, int], list[np.ndarray]]:
    """(sequence, frame index) -> that frame's MaskCut masks in cut order."""
    by_image = {im["id"]: im for im in all_frames["images"]}
    out: dict[tuple[str, int], list[np.ndarray]] = {}
    for im in all_frames["images"]:
        out[(Path(im["file_name"]).parent.name, int(Path(im["file_name"]).stem))] = []
    for a in all_frames["annotations"]:
        im = by_image[a["image_id"]]
        key = (Path(im["file_name"]).parent.name, int(Path(im["file_name"]).stem))
        out[key].append(rle.decode(a["segmentation"]))
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
# models and their controls


def dense(track: Track | None, shape: tuple[int, ...]) -> np.ndarray:
    if track is None:
        return np.zeros(shape, bool)
    return np.stack([rle.decode(m) if m is not None else np.zeros(shape[1:], bool) for m in track.masks])


def score_model(model_dir: Path, root: Path, gts: dict[str, np.ndarray], cfg: Config) -> dict:
    """J, F, J&F per sequence with the model's top-scoring track as the foreground (and the track itself)."""
    net = load_model(model_dir, model=cfg.model)
    frames = root / "JPEGImages" / "480p"
    per, tops = {}, {}
    for q, gt in gts.items():
        source = FrameList(
            name=q, short_side=cfg.inference.short_side, paths=sorted((frames / q).glob("*.jpg"))
        )
        tracks = segment_video(net, source, cfg.inference).tracks
        tops[q] = dense(tracks[0] if tracks else None, gt.shape)
        per[q] = jf(q, gt, tops[q])
    return {"per_sequence": per, "top_tracks": tops}


def teacher_agreement(tops: dict[str, np.ndarray], masks: dict, every: int) -> float:
    """Mean IoU of M0's top track with its MaskCut teacher's first mask on the training-pool frames."""
    values = [
        iou(top[t], masks[(q, t)][0])
        for q, top in tops.items()
        for t in range(0, len(top), every)
        if masks.get((q, t))
    ]
    return float(np.mean(values)) if values else float("nan")


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
        if info.name not in gts:  # an unscored extra video
            continue
        gt = gts[info.name]
        frames = eligible.get(info.name, set())
        for t in frames:
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


def oracle_set(train_path: Path, videos: YTVISDataset, gts: dict[str, np.ndarray]) -> YTVISDataset:
    """The round's training frames with the true object as the only label (the oracle control)."""
    training = load_ytvis(train_path, videos.frames_root, check_frames=False)
    tracks, kept = {}, [v for v in training.videos if v.name in gts]
    for info in kept:
        gt = gts[info.name]
        masks = [
            rle.encode(gt[int(Path(f).stem)]) if gt[int(Path(f).stem)].any() else None
            for f in info.file_names
        ]
        tracks[info.id] = [Track(masks=masks, id=1)] if any(m is not None for m in masks) else []
    return YTVISDataset(videos=kept, tracks=tracks, frames_root=videos.frames_root)


# ---------------------------------------------------------------------------------------------------
# one seed


def run_seed(seed: int, args, cfg: Config, pool: Path, masks: dict, gts: dict) -> dict:
    out = args.out / f"seed_{seed}"
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=seed))
    times: dict[str, float] = {}
    start = time.perf_counter()
    synthetic = ImageCut2Video(PseudoMaskImages(pool), cfg.synthesis, seed=seed)
    inputs = find_videos(args.root) + (find_videos(args.extra_videos) if args.extra_videos else [])
    videos, _ = cache_videos(inputs, args.out / "videos", None)
    run = SelfTrainRun(cfg, out, videos, [synthetic])
    m0 = args.m0_from / f"seed_{seed}" / "m0" / "model" if args.m0_from else None
    if m0 is not None and not (m0 / "model.json").is_file():
        raise SystemExit(f"--m0-from: {m0} holds no finished model; run that benchmark's seed {seed} first")
    result = run.run(m0=m0)
    times["self-training"] = time.perf_counter() - start
    record: dict = {"models": {}, "label_free": {}, "controls": {}, "seconds": times}
    start = time.perf_counter()
    for m in result.models:
        scored = score_model(m.path, args.root, gts, cfg)
        record["models"][m.name] = scored["per_sequence"]
        record["label_free"][m.name] = m.label_free
        if m.round == 0:
            record["controls"]["M0 vs its MaskCut teacher (mean IoU, pool frames)"] = teacher_agreement(
                scored["top_tracks"], masks, args.every
            )
            record["controls"]["M0 training curve"] = training_curve(m.path.parent / "metrics.jsonl")
        else:
            folder = out / f"round_{m.round}"
            record["controls"][f"round {m.round} labels"] = label_controls(
                folder / "pseudo_labels.json", folder / "training_set.json", gts
            )
    record["picked"] = result.selected_model.name
    times["evaluation"] = time.perf_counter() - start
    if args.controls:
        record["models"].update(round_controls(run, result, cfg, args, gts))
    return record


def round_controls(run: SelfTrainRun, result, cfg: Config, args, gts: dict) -> dict:
    """Round 1 retrained from M0 on the true masks of its frames, and on synthetic clips only."""
    m0, folder = result.models[0].path, run.out / "round_1"
    if not (folder / "training_set.json").is_file():
        return {}
    training = load_ytvis(folder / "training_set.json", run.videos.frames_root, check_frames=False)
    oracle = SelfTrainRun(cfg, run.out / "control_oracle", run.videos, run.synthetic)
    oracle_model = oracle.retrain(1, oracle_set(folder / "training_set.json", run.videos, gts), m0)
    synth_cfg = dataclasses.replace(cfg, rounds=dataclasses.replace(cfg.rounds, mix_prob=0.0))
    synth = SelfTrainRun(synth_cfg, run.out / "control_synthetic_only", run.videos, run.synthetic)
    synth_model = synth.retrain(1, training, m0)
    return {
        "oracle round 1 (true masks)": score_model(oracle_model, args.root, gts, cfg)["per_sequence"],
        "round 1 on synthetic only": score_model(synth_model, args.root, gts, cfg)["per_sequence"],
    }


def training_curve(path: Path) -> dict[str, float]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    if not lines:
        return {}
    third = max(len(lines) // 3, 1)
    return {
        "first_third_loss": float(np.mean([x["total"] for x in lines[:third]])),
        "last_third_loss": float(np.mean([x["total"] for x in lines[-third:]])),
        "iterations": lines[-1]["iteration"],
    }


# ---------------------------------------------------------------------------------------------------
# report


def mean_jf(per_sequence: dict[str, dict[str, float]], key: str = "J&F") -> float:
    return float(np.mean([v[key] for v in per_sequence.values()]))


def mean_se(values: list[float]) -> str:
    return f"{100 * np.mean(values):6.1f} +- {100 * standard_error(values):4.1f}"


def report(seeds: dict[int, dict], baseline: dict | None, discovery: dict, seqs: list[str]) -> None:
    names = list(next(iter(seeds.values()))["models"])
    print(f"\n== discovery (every frame): {json.dumps({k: round(v, 3) for k, v in discovery.items()})}")
    print(f"\n== DAVIS-2016 J&F x100, top-scoring track; mean over {len(seeds)} seed(s) per sequence")
    print(
        f"{'model':34s} "
        + " ".join(f"{q[:10]:>10s}" for q in seqs)
        + "   J mean  F mean  J&F mean +- SE (seeds)"
    )
    rows = ([(MASKCUT, [baseline])] if baseline else []) + [
        (n, [s["models"][n] for s in seeds.values()]) for n in names
    ]
    for name, runs in rows:
        cells = " ".join(f"{100 * np.mean([r[q]['J&F'] for r in runs]):10.1f}" for q in seqs)
        j = np.mean([mean_jf(r, "J") for r in runs])
        f = np.mean([mean_jf(r, "F") for r in runs])
        print(f"{name:34s} {cells}   {100 * j:6.1f}  {100 * f:6.1f}  {mean_se([mean_jf(r) for r in runs])}")
    print("\n== paired differences of mean J&F (x100), mean +- SE over seeds; per seed")

    def paired(a: str, b: str) -> None:
        diffs = []
        for s in seeds.values():
            va = mean_jf(baseline) if a == MASKCUT else mean_jf(s["models"][a]) if a in s["models"] else None
            vb = mean_jf(baseline) if b == MASKCUT else mean_jf(s["models"][b]) if b in s["models"] else None
            if va is not None and vb is not None:
                diffs.append(va - vb)
        if diffs:
            per = ", ".join(f"{100 * d:+.1f}" for d in diffs)
            print(f"{a + ' - ' + b:58s} {mean_se(diffs)}   ({per})")

    m0 = names[0]
    if baseline:
        paired(m0, MASKCUT)
    for n in names[1:]:
        paired(n, m0)
    m0s = [mean_jf(s["models"][m0]) for s in seeds.values()]
    print(
        f"M0 spread over seeds: std {100 * np.std(m0s, ddof=1) if len(m0s) > 1 else 0:.1f}, "
        f"range {100 * (max(m0s) - min(m0s)):.1f} J&F"
    )
    print("\n== label-free pick (no ground truth): picked vs truly best model per seed")
    losses = []
    for seed, s in seeds.items():
        jfs = {n: mean_jf(s["models"][n]) for n in names if not n.startswith(("oracle", "round 1 on"))}
        best = max(jfs, key=jfs.get)
        losses.append(jfs[best] - jfs[s["picked"]])
        crit = {
            n: {k: (None if v is None else round(v, 3)) for k, v in (s["label_free"].get(n) or {}).items()}
            for n in jfs
        }
        print(
            f"seed {seed}: picked {s['picked']} ({100 * jfs[s['picked']]:.1f}), best {best} ({100 * jfs[best]:.1f}); criteria {crit}"
        )
    picks = [mean_jf(s["models"][s["picked"]]) - mean_jf(s["models"][m0]) for s in seeds.values()]
    print(
        f"picked the best in {sum(v == 0 for v in losses)}/{len(losses)} seeds; mean loss {100 * np.mean(losses):.1f} J&F; "
        f"picked - M0 {mean_se(picks)}"
    )
    print("\n== controls per seed")
    for seed, s in seeds.items():
        for name, value in s["controls"].items():
            text = (
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in value.items()})
                if isinstance(value, dict)
                else f"{value:.3f}"
            )
            print(f"seed {seed} {name}: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=DATA, help="DAVIS-style root (JPEGImages/480p, Annotations/480p)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_davis"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=3, help="training pool: every k-th frame")
    parser.add_argument("--fixed-size", type=int, default=320, help="MaskCut input size (official 480)")
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--m0-iters", type=int, help="default: the profile's training.max_iters")
    parser.add_argument("--round-iters", type=int, help="default: the profile's rounds.iters")
    parser.add_argument(
        "--extra-videos",
        type=Path,
        help="more unlabeled videos for the training pool and the rounds (not scored), e.g. a larger pool",
    )
    parser.add_argument(
        "--discovery-cache",
        type=Path,
        help="folder of the MaskCut results (default OUT/discovery); runs with the same discovery settings "
        "(the region filters aside) can share one",
    )
    parser.add_argument(
        "--m0-from",
        type=Path,
        help="another run of this benchmark whose seed_N/m0 models are this run's M0s (to compare round "
        "settings on the same M0s, paired by seed; its M0 settings must be this run's)",
    )
    parser.add_argument("--skip-maskcut-baseline", action="store_true")
    parser.add_argument("--controls", action="store_true", help="oracle and synthetic-only rounds (slower)")
    parser.add_argument("--config", action="append", default=[], metavar="FILE")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    start = time.perf_counter()
    weights = ensure_dinov2_weights()
    cfg = bench_config(args, weights)
    check_same_settings(args, cfg)
    gts = truth(args.root)
    cache = args.discovery_cache or args.out / "discovery"
    all_frames = discover_all_frames(args.root, cache, cfg)
    masks = masks_by_frame(all_frames)
    extra = discover_extra(args.extra_videos, args.every, cache, cfg) if args.extra_videos else None
    pool = training_pool(all_frames, args.every, args.out, cfg, extra)
    discovery = discovery_controls(masks, gts)
    baseline = None if args.skip_maskcut_baseline else maskcut_baseline(masks, gts)
    seeds = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cached = args.out / f"seed_{seed}" / "bench.json"
        if cached.is_file():
            seeds[seed] = json.loads(cached.read_text())
        else:
            seeds[seed] = run_seed(seed, args, cfg, pool, masks, gts)
            atomic_write_json(cached, seeds[seed])
        print(
            f"seed {seed} done: "
            + ", ".join(f"{n} {100 * mean_jf(v):.1f}" for n, v in seeds[seed]["models"].items()),
            flush=True,
        )
    print(
        f"\nDAVIS-2016 protocol on {len(gts)} sequences of {args.root}; profile {PROFILE} "
        f"{args.config or ''} {args.overrides or ''}; short side {args.short_side}"
    )
    report(seeds, baseline, discovery, list(gts))
    print(f"\nwall time {time.perf_counter() - start:.0f} s (cached seeds and discovery are reused)")
    atomic_write_json(
        args.out / "results.json", {"seeds": seeds, "baseline": baseline, "discovery": discovery}
    )


if __name__ == "__main__":
    main()
