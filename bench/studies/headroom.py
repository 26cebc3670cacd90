"""Does this student turn labels into J&F? The headroom of finished ``bench/studies/davis.py`` runs, side by side.

Each run folder (``davis.py --controls ceiling``, one student: a profile, its sizes and overrides) holds, per
seed, M0 and two retrainings from it at one round's budget: on synthetic clips only, and on the true masks of
every pool frame (the supervised ceiling: the most any pseudo-label could give). The headroom is

    ceiling - synthetic-only   (paired by seed: what true labels give over no labels at all)

and a student for which labels matter has a headroom of several J&F. For every run this prints the student
(short side, M0 and round iterations, the settings that differ from the first run), each model's J&F with the
CRF and without it (the CRF lifts everything by ~8 and may hide differences), the paired differences, and the
training cost: iterations and the wall minutes the run's record measured (wall minutes depend on what else ran
on the machine; ``bench/speed/train_speed.py`` gives seconds per iteration on an idle one).

    python bench/studies/headroom.py runs/h160 runs/h224 runs/h160_lr1 [--out runs/bench]

Writes ``<out>/headroom.json`` (autoqvis.benchmark format): per run the student and its figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from autoqvis.benchmark import bench_parser, flat_items, paired_difference, standard_error, write_results
from autoqvis.evaluate.davis_bench import mean_score
from autoqvis.selftrain.loop import M0_NAME

M0, SYNTHETIC, CEILING = M0_NAME, "synthetic only", "supervised ceiling (true masks)"  # davis.py's names


def student(run: Path) -> dict[str, object]:
    """The run's configuration, flattened (``section.key`` -> value)."""
    path = run / "settings.json"
    if not path.is_file():
        raise SystemExit(f"{run}: no settings.json; expected a bench/studies/davis.py run folder")
    return dict(flat_items(json.loads(path.read_text())["config"]))


def seeds_of(run: Path) -> dict[int, dict]:
    records = {}
    for path in sorted(run.glob("seed_*/bench.json")):
        record = json.loads(path.read_text())
        if CEILING in record.get("models", {}):
            records[int(path.parent.name.split("_")[1])] = record
    return records


def figures_of(run: Path, first: dict[str, object]) -> dict:
    config, seeds = student(run), seeds_of(run)
    if not seeds:
        raise SystemExit(
            f"{run}: no finished seed with the ceiling control (run davis.py --controls ceiling)"
        )
    out: dict = {
        "short_side": config["inference.short_side"],
        "m0_iters": config["training.max_iters"],
        "round_iters": config["rounds.iters"],
        "differs_from_first": {k: v for k, v in config.items() if first.get(k) != v and "weights" not in k},
        "seeds": sorted(seeds),
        "wall_minutes": {s: round(sum(r["seconds"].values()) / 60, 1) for s, r in seeds.items()},
    }
    for key, figure in (("crf", "J&F"), ("no_crf", "no_crf")):  # the top track with the CRF, and without it
        scores = {
            m: [mean_score(r["models"][m], figure) for r in seeds.values()] for m in (M0, SYNTHETIC, CEILING)
        }
        if any(v is None for vs in scores.values() for v in vs):
            continue
        values = {m: [100 * v for v in vs] for m, vs in scores.items()}
        out[key] = {m: {"mean": float(np.mean(v)), "se": standard_error(v)} for m, v in values.items()}
        for a, b in ((CEILING, SYNTHETIC), (CEILING, M0), (SYNTHETIC, M0)):
            mean, se = paired_difference(values[a], values[b])
            out[key][f"{a} - {b}"] = {
                "mean": mean,
                "se": se,
                "per_seed": [x - y for x, y in zip(values[a], values[b])],
            }
    return out


def row(figures: dict, key: str) -> str:
    """M0, synthetic-only, ceiling and the headroom, with the CRF (``crf``) or without it (``no_crf``)."""
    if key not in figures:
        return "not kept"
    v = figures[key]
    d = v[f"{CEILING} - {SYNTHETIC}"]
    models = " ".join(f"{v[m]['mean']:5.1f}" for m in (M0, SYNTHETIC, CEILING))
    return f"{models}  {d['mean']:+6.1f} +- {d['se']:.1f}"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="bench/studies/davis.py run folders")
    args = parser.parse_args()
    first = student(args.runs[0])
    figures = {run.name: figures_of(run, first) for run in args.runs}
    print(
        f"{'run':18s} {'side':>4s} {'M0 it':>6s} {'rd it':>6s}  {'M0':>5s} {'synth':>5s} {'ceil':>5s}  "
        f"{'ceil-synth':>12s}  (no CRF: M0 synth ceil, ceil-synth)"
    )
    for name, f in figures.items():
        print(
            f"{name:18s} {f['short_side']:4d} {f['m0_iters']:6d} {f['round_iters']:6d}  {row(f, 'crf')}  "
            f"({row(f, 'no_crf')})"
        )
    write_results(args.out, "headroom", figures, sys.argv)


if __name__ == "__main__":
    main()
