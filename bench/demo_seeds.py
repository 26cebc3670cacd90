"""Is the self-training gain real? The demo over several seeds (world and training), with paired differences.

One demo run scores each model on 40 test videos, but a model trained twice with the same settings differs by
a few AP50 (threaded CPU kernels reorder float sums; different data draws then follow), so one run cannot
separate a +3 AP50 gain from noise. This runs ``autoqvis demo`` for ``--seeds`` seeds (each a new world and a
new training seed; 13-19 min each on 2 cores; finished seeds are reused) and prints per model the mean and
standard deviation of AP, AP50, AP75, AR10, J&F and the pseudo-labels kept, then the paired differences that
the paper's claims are about: round k - M0, and quality-guided - confidence-only round k.

    python bench/demo_seeds.py [--seeds 3] [--out runs/demo_seeds] [--quick] [--footage real|clean]
                               [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from stats import standard_error  # bench/stats.py (the script's folder is on sys.path)

from autoqvis.demo.pipeline import run_demo

KEYS = ("AP", "AP50", "AP75", "AR10")


def values(row: dict) -> dict[str, float]:
    m = row.get("metrics") or {}
    out = {k: (m.get("ytvis") or {}).get(k) for k in KEYS} | {"J&F": m.get("jf")}
    out["AP50 alt"] = (m.get("ytvis_alt") or {}).get(
        "AP50"
    )  # the other track ranking (the profile ranks by quality: class)
    out["labels"] = row.get("pseudo_labels")
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--footage", choices=("real", "clean"), default="real")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    runs: list[dict[str, dict[str, float]]] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        out = args.out / f"seed_{seed}"
        if not (out / "results.json").is_file():
            run_demo(
                out,
                quick=args.quick,
                seed=seed,
                footage=args.footage,
                overrides=[f"training.seed={seed}", *args.overrides],
            )
        rows = json.loads((out / "results.json").read_text())["rows"]
        runs.append({r["model"]: values(r) for r in rows})
    models = list(runs[0])
    columns = (*KEYS, "J&F", "AP50 alt", "labels")
    results = json.loads((args.out / f"seed_{args.first_seed}" / "results.json").read_text())
    ranking = ((results["rows"][0].get("metrics") or {}).get("ytvis_alt") or {}).get("ranking", "-")
    print(
        f"{len(runs)} seeds; mean +- std over seeds (AP50 alt: tracks ranked by the other score, {ranking})"
    )
    print(f"{'model':34s} " + " ".join(f"{c:>13s}" for c in columns))
    for name in models:
        cells = []
        for c in columns:
            v = np.array([r[name][c] for r in runs])
            cells.append("            -" if np.isnan(v).all() else f"{v.mean():6.2f} +-{v.std():5.2f}")
        print(f"{name:34s} " + " ".join(cells))

    def paired(a: str, b: str) -> None:
        if a not in models or b not in models:
            return
        diffs = {c: np.array([r[a][c] - r[b][c] for r in runs]) for c in (*KEYS, "J&F", "AP50 alt")}
        wins = int((diffs["AP50"] > 0).sum())
        print(
            f"{a + ' - ' + b:60s} "
            + " ".join(f"{c} {d.mean():+6.2f} +-{standard_error(d):5.2f}" for c, d in diffs.items())
            + f"  (AP50 higher in {wins}/{len(runs)})"
        )

    print("paired differences (mean +- standard error over seeds, paired by seed):")
    for k in (1, 2):
        paired(f"round {k}", "M0 (synthetic only)")
    for k in (1, 2):
        paired(f"round {k}", f"confidence-only, round {k}")


if __name__ == "__main__":
    main()
