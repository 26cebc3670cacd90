"""Which track is the video's main object? Rankings of a model's tracks compared on DAVIS-style roots.

Reads what ``bench/davis.py`` (or ``--score-root`` below) kept for each model: every raw track's features
(:class:`autoqvis.predict.ranking.TrackFeatures`) and its J&F against the single foreground. For each ranking
rule it prints the mean J&F of the track it puts first (no CRF: the rules are compared on the same masks), next
to the oracle (the best of the tracks). The weights of ``main`` are searched on a grid on the ``--tune`` files and
reported on the ``--test`` files, so a rule is never judged on the sequences it was tuned on.

    python bench/studies/ranking_study.py --tune runs/A/seed_0/scores/*/scores.json \
        --test runs/B/seed_0/scores/*/scores.json [--out runs/bench]

``--score-root ROOT --model DIR --write-scores FILE`` first writes such a file for one model on another root
(e.g. the training videos' own ground truth, to tune on them).

Figures (``runs/bench/ranking_study.json``): the tuned weights, per file set and rule the mean top-1 J&F, and
the CRF study's J&F and CPU seconds per mask.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.io.tracks import read_tracks
from autoqvis.predict.ranking import TrackFeatures, main_object_score

GRID = {
    "quality_power": [0.0, 0.5, 1.0],
    "area_power": [0.0, 0.1, 0.25, 0.5],
    "persistence_power": [0.0, 1.0, 2.0],
    "border_penalty": [0.0, 0.5, 1.0],
    "max_area": [0.6, 1.0],
    "motion_power": [0.0, 0.5, 1.0],
}


def raw_folder(scores: Path) -> Path:
    """Where the raw tracks of a scores file are: ``raw/`` beside a benchmark's ``scores.json``, or
    ``<stem>_cache/raw`` beside a file written with ``--score-root``."""
    beside = scores.parent / "raw"
    return beside if beside.is_dir() else scores.with_name(scores.stem + "_cache") / "raw"


def load(paths: list[Path], roots: list[Path]) -> list[list[dict]]:
    """One list of tracks (features + J&F) per sequence, over every file; with the DAVIS ``roots`` the
    sequences' frames are found in, each track also gets its ``motion`` contrast (flow at short side 160,
    cached beside the scores file)."""
    sequences = []
    for path in paths:
        motion_file = path.with_name(path.stem + "_motion.json")
        motions = json.loads(motion_file.read_text()) if motion_file.is_file() else {}
        for name, value in json.loads(path.read_text()).items():
            if not value.get("tracks"):
                continue
            frames = next(
                (
                    r / "JPEGImages" / "480p" / name
                    for r in roots
                    if (r / "JPEGImages" / "480p" / name).is_dir()
                ),
                None,
            )
            if frames is not None and name not in motions:
                motions[name] = sequence_motion(raw_folder(path) / f"{name}.json", frames)
                motion_file.write_text(json.dumps(motions))
            for track, m in zip(value["tracks"], motions.get(name, []), strict=False):
                track["motion"] = m
            sequences.append(value["tracks"])
    return sequences


def sequence_motion(raw: Path, frames: Path) -> list[float]:
    from autoqvis.io.video import FrameFolder
    from autoqvis.predict.ranking import motion_contrast, video_flows

    tracks = read_tracks(raw)
    flows = video_flows(FrameFolder(frames, short_side=160))
    return [motion_contrast(t, flows) for t in tracks]


def features(track: dict) -> TrackFeatures:
    return TrackFeatures(**{k: track[k] for k in TrackFeatures.__dataclass_fields__})


def top_jf(sequences: list[list[dict]], key) -> float:
    """Mean J&F of the track each sequence ranks first under ``key`` (higher first; ties: the class order)."""
    return float(
        np.mean([max(enumerate(ts), key=lambda it: (key(it[1]), -it[0]))[1]["J&F"] for ts in sequences])
    )


def rules(weights: dict | None = None) -> dict:
    w = weights or {}
    return {
        "class": lambda t: t["score"],
        "quality": lambda t: t["score"] * t["quality"],
        "main": lambda t: main_object_score(features(t), motion=t.get("motion"), **w),
        "oracle (best track)": lambda t: t["J&F"],
    }


def search(sequences: list[list[dict]]) -> tuple[dict, float]:
    """The ``main`` weights with the best mean top-1 J&F on ``sequences`` (the first best on ties)."""
    best, best_value = {}, -1.0
    for values in itertools.product(*GRID.values()):
        w = dict(zip(GRID, values, strict=True))
        value = top_jf(sequences, lambda t, w=w: main_object_score(features(t), motion=t.get("motion"), **w))
        if value > best_value + 1e-9:
            best, best_value = w, value
    return best, best_value


def score_root(root: Path, model: Path, out: Path, short_side: int, crf_short_side: int) -> None:
    """Write the scores file of ``model`` on ``root`` (its tracks and their features, finished with the CRF at
    ``crf_short_side``; 0, this study's default, compares the rankings on the network's own masks)."""
    from autoqvis.config import load_config
    from autoqvis.evaluate.davis_bench import score_model, truth

    cfg = load_config(
        ["small_data"], [f"inference.short_side={short_side}", f"inference.crf_short_side={crf_short_side}"]
    )
    scores = score_model(model, root, truth(root), cfg, out.parent / (out.stem + "_cache"), best_of=5)
    out.write_text(json.dumps(scores))


def crf_study(
    paths: list[Path], roots: list[Path], weights: dict, sides: list[int], whole_frame: bool, rule_name: str
) -> dict:
    """J&F of the top track under ``rule_name`` of every sequence as predicted, and refined by the dense CRF at
    each short side (on the mask's box + margin, and on the whole frame), with the CPU seconds per mask."""
    import time

    from autoqvis.evaluate.davis_bench import dense, jf, truth
    from autoqvis.io.video import FrameFolder
    from autoqvis.predict import refine

    BOX_MARGIN = refine.CROP_MARGIN
    results: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for path in paths:
        for name, value in json.loads(path.read_text()).items():
            root = next((r for r in roots if (r / "JPEGImages" / "480p" / name).is_dir()), None)
            if root is None or not value.get("tracks"):
                continue
            gt = truth(root)[name]
            raw = read_tracks(raw_folder(path) / f"{name}.json")
            rule = rules(weights)[rule_name]
            best = max(range(len(raw)), key=lambda i: (rule(value["tracks"][i]), -i))
            track = raw[best]
            results.setdefault("as predicted", []).append(jf(name, gt, dense(track, gt.shape))["J&F"])
            source = FrameFolder(root / "JPEGImages" / "480p" / name)
            for side in sides:
                for label, margin in (("box", BOX_MARGIN), ("frame", 10**6))[: 2 if whole_frame else 1]:
                    key = f"CRF {side} ({label})"
                    refine.CROP_MARGIN = margin
                    start = time.process_time()
                    (refined,) = refine.crf_refine_tracks([track], source, side)
                    seconds[key] = seconds.get(key, 0.0) + (time.process_time() - start) / len(gt)
                    refine.CROP_MARGIN = BOX_MARGIN
                    results.setdefault(key, []).append(jf(name, gt, dense(refined, gt.shape))["J&F"])
    return {
        key: {"J&F": float(np.mean(values)), "sequences": len(values)}
        | ({"cpu_s_per_mask": seconds[key] / len(values)} if key in seconds else {})
        for key, values in results.items()
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--tune", type=Path, nargs="*", default=[])
    parser.add_argument("--test", type=Path, nargs="*", default=[])
    parser.add_argument(
        "--roots", type=Path, nargs="*", default=[], help="DAVIS roots: adds the motion feature"
    )
    parser.add_argument("--crf-sides", type=int, nargs="*", default=[], help="CRF study on the --test files")
    parser.add_argument("--whole-frame", action="store_true", help="the CRF study also on whole frames")
    parser.add_argument(
        "--rule", default="class", choices=("class", "quality", "main"), help="the CRF study's ranking"
    )
    parser.add_argument("--score-root", type=Path)
    parser.add_argument("--model", type=Path)
    parser.add_argument(
        "--write-scores", type=Path, metavar="FILE", help="with --score-root: the scores file"
    )
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument(
        "--crf-short-side",
        type=int,
        default=0,
        help="with --score-root: inference.crf_short_side of the scored tracks (default 0: the rankings are "
        "compared on the network's masks; the CRF has its own study, --crf-sides)",
    )
    args = parser.parse_args()
    if args.score_root:
        if args.model is None or args.write_scores is None:
            parser.error("--score-root needs --model DIR and --write-scores FILE")
        score_root(args.score_root, args.model, args.write_scores, args.short_side, args.crf_short_side)
        return
    tune, test = load(args.tune, args.roots), load(args.test, args.roots)
    if not tune and not test:
        parser.error("expected scores files (--tune FILE..., --test FILE...) or --score-root; found none")
    weights, value = search(tune) if tune else ({}, float("nan"))
    figures: dict = {"main_weights": weights, "tuned_top1_J&F": value, "tune_sequences": len(tune)}
    for name, sequences in (("tune", tune), ("test", test)):
        if sequences:  # mean J&F of the track each rule puts first
            figures[name] = {"sequences": len(sequences)} | {
                n: top_jf(sequences, k) for n, k in rules(weights).items()
            }
    if args.crf_sides:
        figures["crf"] = crf_study(
            args.test, args.roots, weights, args.crf_sides, args.whole_frame, args.rule
        )
    write_results(args.out, "ranking_study", figures)


if __name__ == "__main__":
    main()
