"""Real footage: the whole unsupervised pipeline on DAVIS-style roots, over several seeds, with controls.

Two pools of unlabeled training video (``--pool``):

- ``scored`` (transductive, the own-videos workflow): discovery, ImageCut2Video and the self-training rounds on
  the scored videos themselves (``--root``);
- ``train`` (inductive, the paper's setting): on the videos of ``--train-root`` (DAVIS-2016 train), every model
  scored on ``--root`` (DAVIS-2016 dev), which it never saw;
- ``both``: the two pools together.

Ground truth is used only for scoring and for the controls: the scored root's masks score every model; the
pool's masks measure the pseudo-labels' precision and make the control label sets (a model trained on them is
a control, never a result). Pipeline (``configs/small_data.yaml`` plus the sizes below):

1. discovery: MaskCut with the offline DINOv2-S features on every frame of each root (cached per root in
   ``--discovery-cache``, shared by all seeds and runs with the same discovery settings); the training pool is
   every ``--every``-th frame of the pool videos, without region-sized masks (the profile's region rule).
   Controls: masks per frame, their area and borders, IoU of the best mask with the truth;
2. per seed (``training.seed``): ImageCut2Video from the pool, the initial stage (M0), ``selftrain.num_rounds``
   self-training rounds on the pool videos; the label-free criteria and the model they pick. Controls: M0
   against its own MaskCut teacher (pool frames); each round's label precision and coverage; with
   ``--controls``, from the same M0 and at one round's budget: synthetic clips only (``rounds.mix_prob=0``; alone
   with ``--controls synthetic``), the supervised ceiling (true masks on every frame of the pool videos: the
   most any label can give this student at this budget; ``--controls ceiling``) and the oracle round (true
   masks on round 1's own frames; ``--controls all``, the default of ``--controls``).

Scores per model and sequence, J&F x100 (DAVIS-2016 protocol: first and last frame left out): the top-ranked
track (``inference.track_score``, with the profile's CRF refinement) as the foreground; the best of its top
``--best-of`` tracks (an oracle choice among its own tracks: ranking errors vs mask errors); and the DAVIS-2017
unsupervised protocol (up to 20 proposals matched to the truth; every frame). Over seeds: mean +- standard
error and paired differences (paired by seed). Every model's raw top-20 tracks are kept
(``seed_N/scores/<model>/raw/``) with per-track features and J&F, for ranking studies.

The report is printed as tables; the run folder keeps every seed's record (``seed_N/bench.json``, with the
inference settings it was scored under), ``results.json`` (everything) and ``davis.json`` (the summary in the
bench/ results format, :mod:`autoqvis.benchmark`). A kept seed scored under other inference settings than this
run's (after a ``--rescore``) is scored again from its kept raw tracks, never reported under these settings.

    python bench/studies/davis.py [--pool scored|train|both] [--root ROOT] [--train-root ROOT] [--seeds 3]
        [--first-seed 0] [--out runs/bench_davis] [--discovery-cache DIR] [--controls [synthetic|ceiling|all]] [--every 3]
        [--short-side 160] [--m0-iters N] [--round-iters N] [--m0-from RUN] [--threads N]
        [--config FILE ...] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from autoqvis.benchmark import hardware_line, standard_error, write_results
from autoqvis.config import Config, config_to_dict, load_config
from autoqvis.demo.pipeline import ensure_dinov2_weights
from autoqvis.errors import AutoqvisError
from autoqvis.evaluate.davis_bench import (
    MASKCUT,
    discover_frames,
    discovery_controls,
    label_controls,
    maskcut_baseline,
    masks_by_frame,
    mean_score,
    score_model,
    scored_record,
    scoring_settings,
    teacher_agreement,
    training_frames,
    training_pool,
    true_label_set,
    truth,
)
from autoqvis.io.tracks import read_tracks
from autoqvis.io.video import find_videos
from autoqvis.io.ytvis import load_ytvis
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.layout import MODEL_FILE, TRAIN_METRICS, SelfTrainLayout
from autoqvis.selftrain.loop import SelfTrainRun, round_training_config
from autoqvis.selftrain.run import self_train
from autoqvis.selftrain.videos import cache_videos
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages
from autoqvis.train.run import train_stage

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
PROFILE = "small_data"
CONTROL_NAMES = ("synthetic only", "oracle (true masks, round 1 frames)", "supervised ceiling (true masks)")


# ---------------------------------------------------------------------------------------------------
# configuration


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
    """A run folder holds one configuration: its seeds are reused only with it. ``--rescore`` may change the
    inference settings (each seed's record keeps the ones it was scored under), nothing else."""
    settings = {
        "config": config_to_dict(cfg),
        "root": str(args.root.resolve()),
        "pool": args.pool,
        "train_root": str(args.train_root.resolve()) if args.pool != "scored" else None,
        "every": args.every,
        "best_of": args.best_of,
    }
    path = args.out / "settings.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    if old is not None and args.rescore:  # the models' settings: all but the inference section
        old = old | {"config": old["config"] | {"inference": settings["config"]["inference"]}}
        old["best_of"] = settings["best_of"]
    if old is not None and old != settings:
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        changed += sorted(
            f"config.{k}" for k in settings["config"] if old["config"].get(k) != settings["config"][k]
        )
        raise SystemExit(
            f"{args.out} holds a run with other settings ({', '.join(changed)}); pass another --out"
            + (
                ""
                if args.rescore
                else " (or --rescore to score its models again with other inference settings)"
            )
        )
    if not args.rescore or not path.is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, settings)


def pool_roots(args: argparse.Namespace) -> list[Path]:
    return {"scored": [args.root], "train": [args.train_root], "both": [args.root, args.train_root]}[
        args.pool
    ]


# ---------------------------------------------------------------------------------------------------
# one seed


def run_seed(
    seed: int, args, cfg: Config, pool: Path, pool_masks: dict, scored_gts: dict, pool_gts: dict
) -> dict:
    out = args.out / f"seed_{seed}"
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=seed))
    times: dict[str, float] = {}
    start = time.perf_counter()
    synthetic = ImageCut2Video(PseudoMaskImages(pool), cfg.synthesis, seed=seed)
    inputs = [v for root in pool_roots(args) for v in find_videos(root)]
    videos, _ = cache_videos(inputs, args.out / "videos", None)  # one frame cache for every seed
    m0 = SelfTrainLayout(args.m0_from / f"seed_{seed}").model(0) if args.m0_from else None
    if m0 is not None and not (m0 / MODEL_FILE).is_file():
        raise SystemExit(f"--m0-from: {m0} holds no finished model; run that benchmark's seed {seed} first")
    training = self_train(cfg, out, videos, [synthetic], m0=m0)
    run, result, layout = training.run, training.result, SelfTrainLayout(out)
    times["self-training"] = time.perf_counter() - start
    record: dict = {"models": {}, "label_free": {}, "controls": {}, "seconds": times}
    models = {m.name: m.path for m in result.models}
    for m in result.models:
        record["label_free"][m.name] = m.label_free
        if m.round == 0:
            record["controls"]["M0 training curve"] = training_curve(m.path.parent / TRAIN_METRICS)
            first = layout.predictions(1)
            if first.is_dir():
                names = {v.id: v.name for v in videos.videos}
                predictions = {names[int(p.stem)]: read_tracks(p) for p in first.glob("*.json")}
                record["controls"]["M0 vs its MaskCut teacher (mean IoU, pool frames)"] = teacher_agreement(
                    predictions, pool_masks, args.every
                )
        else:
            if layout.training_set(m.round).is_file():
                record["controls"][f"round {m.round} labels"] = label_controls(
                    layout.pseudo_labels(m.round), layout.training_set(m.round), pool_gts
                )
    record["picked"] = result.selected_model.name
    if args.controls:
        start = time.perf_counter()
        models |= round_controls(run, result.models[0].path, cfg, pool_gts, args.controls)
        times["controls"] = time.perf_counter() - start
    start = time.perf_counter()
    for name, path in models.items():
        record["models"][name] = score_model(
            path, args.root, scored_gts, cfg, scores_folder(out, name), args.best_of
        )
    times["evaluation"] = time.perf_counter() - start
    return record


def scores_folder(seed_folder: Path, model: str) -> Path:
    """Where a model's raw tracks and scores on the scored videos are kept."""
    return seed_folder / "scores" / model.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")


def rescore(record: dict, seed_folder: Path, args, cfg: Config, gts: dict) -> dict:
    """The seed's models scored again from their kept raw tracks with this run's inference settings (the
    ranking, the CRF): no model is trained or run again."""
    for name in record["models"]:
        folder = scores_folder(seed_folder, name)
        record["models"][name] = score_model(
            None, args.root, gts, cfg, folder, args.best_of, reuse_scores=False
        )
    return record


def round_controls(
    run: SelfTrainRun, m0: Path, cfg: Config, gts: dict, which: str = "all"
) -> dict[str, Path]:
    """Retrainings from M0 at one round's budget (``which``, as ``--controls``): on synthetic clips only
    (always); with ``ceiling`` or ``all`` on the true masks of every pool frame (the supervised ceiling); with
    ``all`` also on the true masks of round 1's own frames (oracle; when round 1 kept any)."""
    out = {
        CONTROL_NAMES[0]: train_stage(
            cfg,
            run.synthetic,
            [1 / len(run.synthetic)] * len(run.synthetic),
            run.out / "control_synthetic_only",
            init=m0,
            training=round_training_config(cfg),
        )
    }
    if which == "synthetic":
        return out
    training_set = run.layout.training_set(1)
    if which == "all" and training_set.is_file() and load_ytvis(training_set, check_frames=False).videos:
        oracle = SelfTrainRun(cfg, run.out / "control_oracle", run.videos, run.synthetic)
        frames = training_frames(training_set)
        out[CONTROL_NAMES[1]] = oracle.retrain(1, true_label_set(run.videos, gts, frames), m0)
    ceiling = SelfTrainRun(cfg, run.out / "control_ceiling", run.videos, run.synthetic)
    out[CONTROL_NAMES[2]] = ceiling.retrain(1, true_label_set(run.videos, gts, None), m0)
    return out


def training_curve(path: Path) -> dict[str, float]:
    """Mean loss of the first and the last third of a training run's logged iterations."""
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


def mean_se(values: list[float]) -> str:
    return f"{100 * np.mean(values):6.1f} +- {100 * standard_error(values):4.1f}"


def report(
    seeds: dict[int, dict], baseline: dict | None, discovery: dict, seqs: list[str], best_of: int
) -> None:
    names = list(next(iter(seeds.values()))["models"])
    for root, controls in discovery.items():
        print(
            f"\n== discovery on {root} (every frame): {json.dumps({k: round(v, 3) for k, v in controls.items()})}"
        )
    print(f"\n== DAVIS-2016 J&F x100 on the scored videos, top-ranked track; mean over {len(seeds)} seed(s)")
    print(
        f"{'model':40s} "
        + " ".join(f"{q[:9]:>9s}" for q in seqs)
        + f"   J     F    J&F +- SE (seeds)   best of {best_of}     2017-unsup.     no CRF"
    )
    rows = ([(MASKCUT, [baseline])] if baseline else []) + [
        (n, [s["models"][n] for s in seeds.values() if n in s["models"]]) for n in names
    ]
    for name, runs in rows:
        cells = " ".join(f"{100 * np.mean([r[q]['J&F'] for r in runs]):9.1f}" for q in seqs)
        j, f = (np.mean([mean_score(r, k) for r in runs]) for k in ("J", "F"))
        extra = ""
        if name != MASKCUT:
            extra = f"  {mean_se([mean_score(r, f'best_of_{best_of}') for r in runs])}"
            extra += f"  {mean_se([mean_score(r, '2017') for r in runs])}"
            plain = [v for r in runs if (v := mean_score(r, "no_crf")) is not None]
            extra += f"  {mean_se(plain)}" if plain else ""
        print(
            f"{name:40s} {cells}  {100 * j:5.1f} {100 * f:5.1f}  {mean_se([mean_score(r) for r in runs])}{extra}"
        )
    print("\n== paired differences of mean J&F (x100), mean +- SE over seeds; per seed")

    def value(s: dict, name: str, key: str = "J&F") -> float | None:
        if name == MASKCUT:
            return mean_score(baseline, key) if baseline and key == "J&F" else None
        return mean_score(s["models"][name], key) if name in s["models"] else None

    def paired(a: str, b: str, key: str = "J&F") -> None:
        diffs = [
            va - vb
            for s in seeds.values()
            if (va := value(s, a, key)) is not None and (vb := value(s, b, key)) is not None
        ]
        if diffs:
            per = ", ".join(f"{100 * d:+.1f}" for d in diffs)
            label = f"{a} - {b}" + ("" if key == "J&F" else " (no CRF)")
            print(f"{label:78s} {mean_se(diffs)}   ({per})")

    m0 = names[0]
    rounds = [n for n in names if n.startswith("round")]
    if baseline:
        paired(m0, MASKCUT)
    for key in ("J&F", "no_crf"):
        for n in names[1:]:
            paired(n, m0, key)
        for control in CONTROL_NAMES:
            for n in rounds:
                paired(n, control, key)
        paired(CONTROL_NAMES[2], CONTROL_NAMES[0], key)  # the headroom: what true labels give over none
    m0s = [mean_score(s["models"][m0]) for s in seeds.values()]
    spread = 100 * np.std(m0s, ddof=1) if len(m0s) > 1 else 0.0
    print(f"M0 spread over seeds: std {spread:.1f}, range {100 * (max(m0s) - min(m0s)):.1f} J&F")
    print("\n== label-free pick (no ground truth): picked vs truly best model per seed")
    losses, picks = [], []
    for seed, s in seeds.items():
        jfs = {n: mean_score(s["models"][n]) for n in names if n == m0 or n.startswith("round")}
        best = max(jfs, key=jfs.get)
        losses.append(jfs[best] - jfs[s["picked"]])
        picks.append(jfs[s["picked"]] - jfs[m0])
        crit = {
            n: {k: (None if v is None else round(v, 3)) for k, v in (s["label_free"].get(n) or {}).items()}
            for n in jfs
        }
        print(
            f"seed {seed}: picked {s['picked']} ({100 * jfs[s['picked']]:.1f}), best {best} "
            f"({100 * jfs[best]:.1f}); criteria {crit}"
        )
    print(
        f"picked the best in {sum(v == 0 for v in losses)}/{len(losses)} seeds; mean loss "
        f"{100 * np.mean(losses):.1f} J&F; picked - M0 {mean_se(picks)}"
    )
    print("\n== controls per seed")
    for seed, s in seeds.items():
        for name, value_ in s["controls"].items():
            text = (
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in value_.items()})
                if isinstance(value_, dict)
                else f"{value_:.3f}"
            )
            print(f"seed {seed} {name}: {text}")
        print(f"seed {seed} seconds: {json.dumps({k: round(v) for k, v in s['seconds'].items()})}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=DATA / "davis2016-dev", help="the scored DAVIS-style root"
    )
    parser.add_argument(
        "--train-root", type=Path, default=DATA / "davis2016-train", help="the inductive pool"
    )
    parser.add_argument(
        "--pool",
        choices=("scored", "train", "both"),
        default="scored",
        help="the unlabeled training videos: the scored ones (transductive), --train-root (inductive) or both",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_davis"))
    parser.add_argument("--seeds", type=int, default=3, help="0: only the discovery (cached)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=3, help="training pool: every k-th frame")
    parser.add_argument("--fixed-size", type=int, default=320, help="MaskCut input size (official 480)")
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--m0-iters", type=int, help="default: the profile's training.max_iters")
    parser.add_argument("--round-iters", type=int, help="default: the profile's rounds.iters")
    parser.add_argument(
        "--best-of", type=int, default=5, help="the oracle choice among a model's top k tracks"
    )
    parser.add_argument(
        "--discovery-cache",
        type=Path,
        default=Path("runs/davis_discovery"),
        help="folder of the MaskCut results, one subfolder per root (shared by runs with the same discovery "
        "settings, the region filters aside)",
    )
    parser.add_argument(
        "--m0-from",
        type=Path,
        help="another run of this benchmark whose seed_N/m0 models are this run's M0s (to compare round "
        "settings on the same M0s, paired by seed; its M0 settings must be this run's)",
    )
    parser.add_argument("--skip-maskcut-baseline", action="store_true")
    parser.add_argument(
        "--controls",
        nargs="?",
        const="all",
        choices=["synthetic", "ceiling", "all"],
        help="retrainings from the same M0 at one round's budget: 'synthetic' (synthetic clips only), 'ceiling' "
        "(and the supervised ceiling) or 'all' (and the oracle round; slowest)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="score every finished seed again from its kept raw tracks with these inference settings (ranking, "
        "CRF); nothing is trained again",
    )
    parser.add_argument("--config", action="append", default=[], metavar="FILE")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    print(hardware_line(), flush=True)
    weights = ensure_dinov2_weights()
    cfg = bench_config(args, weights)
    check_same_settings(args, cfg)
    roots = {r.resolve().name: r for r in [args.root, *pool_roots(args)]}
    scored = args.root.resolve().name
    discoveries = {  # every frame of the scored videos (the MaskCut row), the training frames of the others
        name: discover_frames(r, args.discovery_cache, cfg, 1 if name == scored else args.every)
        for name, r in roots.items()
    }
    frames = {name: masks_by_frame(d) for name, d in discoveries.items()}
    truths = {name: truth(r) for name, r in roots.items()}
    in_pool = [r.resolve().name for r in pool_roots(args)]
    pool = training_pool({n: discoveries[n] for n in in_pool}, args.every, args.out, cfg)
    pool_gts = {q: gt for n in in_pool for q, gt in truths[n].items()}
    pool_masks = {k: v for n in in_pool for k, v in frames[n].items()}
    scored_gts = truths[scored]
    discovery = {n: discovery_controls(frames[n], truths[n]) for n in roots}
    baseline = None if args.skip_maskcut_baseline else maskcut_baseline(frames[scored], scored_gts)
    seeds = {}
    scoring = scoring_settings(cfg, args.best_of)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        folder = args.out / f"seed_{seed}"
        seeds[seed], how = scored_record(
            folder / "bench.json",
            scoring,
            run=lambda seed=seed: run_seed(seed, args, cfg, pool, pool_masks, scored_gts, pool_gts),
            score_again=lambda record, folder=folder: rescore(record, folder, args, cfg, scored_gts),
            rescore=args.rescore,
        )
        print(
            f"seed {seed} {how} ({sum(seeds[seed]['seconds'].values()):.0f} s): "
            + ", ".join(f"{n} {100 * mean_score(v):.1f}" for n, v in seeds[seed]["models"].items()),
            flush=True,
        )
    if not seeds:  # --seeds 0: the discovery (cached for later runs) and its controls only
        for name, controls in discovery.items():
            print(f"discovery on {name}: {json.dumps({k: round(v, 3) for k, v in controls.items()})}")
        return
    print(
        f"\nDAVIS-2016 protocol on {len(scored_gts)} sequences of {args.root}; pool {args.pool}; profile "
        f"{PROFILE} {args.config or ''} {args.overrides or ''}; short side {args.short_side}"
    )
    report(seeds, baseline, discovery, list(scored_gts), args.best_of)
    print(f"\nwall time {time.perf_counter() - start:.0f} s (cached seeds and discovery are reused)")
    atomic_write_json(
        args.out / "results.json",
        {"seeds": seeds, "baseline": baseline, "discovery": discovery, "scored_with": scoring},
    )
    write_results(args.out, "davis", summary(seeds, baseline, args))


def summary(seeds: dict[int, dict], baseline: dict | None, args: argparse.Namespace) -> dict:
    """The figures of the report's first table and of the label-free pick, for the results file."""
    names = list(next(iter(seeds.values()))["models"])
    models = {}
    for name in names:
        runs = [s["models"][name] for s in seeds.values() if name in s["models"]]
        row = {
            "J&F": float(np.mean([mean_score(r) for r in runs])),
            "se": standard_error([mean_score(r) for r in runs]),
        }
        row[f"best_of_{args.best_of}"] = float(
            np.mean([mean_score(r, f"best_of_{args.best_of}") for r in runs])
        )
        row["2017"] = float(np.mean([mean_score(r, "2017") for r in runs]))
        plain = [v for r in runs if (v := mean_score(r, "no_crf")) is not None]
        row["no_crf"] = float(np.mean(plain)) if plain else None
        models[name] = row
    return {
        "root": str(args.root),
        "pool": args.pool,
        "seeds": sorted(seeds),
        "maskcut_baseline_J&F": None if baseline is None else mean_score(baseline),
        "models": models,
        "picked": {str(k): s["picked"] for k, s in seeds.items()},
        "seconds": {str(k): s["seconds"] for k, s in seeds.items()},
    }


if __name__ == "__main__":
    try:
        main()
    except AutoqvisError as err:
        raise SystemExit(f"davis: {err}") from None
