"""Regret of the label-free pick on the demo world, where the truth is known: per seed, each criterion's
regret = the true score (AP50 on the test videos) of the truly best model - that of the model it picks.

Each seed (a new world and a new training seed) runs the demo's stages (world, discovery on the stills,
ImageCut2Video, M0 and ``selftrain.num_rounds`` rounds with ``selftrain.holdout`` of the unlabeled videos held
out of the pseudo-labels, every model scored on the test videos; the confidence-only ablation of ``autoqvis
demo`` is not run), then reads ``selftrain/label_free.json`` (every criterion per model and unlabeled video)
and applies every criterion with two rules: ``max`` (the highest mean, the rule before) and ``safe`` (a round
replaces M0 only if it beats M0, paired by video, by more than ``selftrain.pick_margin`` standard errors).
``last`` is the last round. The test videos' truth is used only to score.

    python bench/studies/pick_regret.py [--seeds 3] [--first-seed 0] [--out runs/pick_regret]
        [--test-videos 160] [--m0-iters 500] [--round-iters 250] [--quick] [--set key=value ...]

Writes ``<out>/pick_regret.json`` (autoqvis.benchmark format): per criterion and rule the regret per seed and
its mean, the pick per seed, the worst seed's picked - M0 (the rule's safety), and each model's true AP50 per
seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from autoqvis.benchmark import write_results
from autoqvis.demo.pipeline import (
    DemoPlan,
    demo_config,
    discover_stills,
    ensure_dinov2_weights,
    make_world,
    synthesize,
)
from autoqvis.io.video import find_videos
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.layout import DemoLayout, SelfTrainLayout
from autoqvis.selftrain.pick import CRITERIA, pick_label_free, pick_safe
from autoqvis.selftrain.run import self_train
from autoqvis.selftrain.videos import cache_videos

METRIC = "AP50"


def run_seed(out: Path, plan: DemoPlan, seed: int, overrides: list[str]) -> Path:
    """The demo's stages without the ablation; returns the self-training run folder."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "plan.json", dataclasses.asdict(plan))  # for bench/studies/label_precision.py
    cfg = demo_config(plan, [f"training.seed={seed}", *overrides])
    layout = DemoLayout(out)
    inputs = make_world(layout.data, plan, seed)
    weights = ensure_dinov2_weights()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vit_weights=str(weights)))
    cfg = dataclasses.replace(cfg, discovery=dataclasses.replace(cfg.discovery, weights=str(weights)))
    pseudo = discover_stills(inputs.stills, layout.discovery, cfg, weights)
    synthetic = synthesize(pseudo, inputs.stills, layout.synthetic_previews, cfg, seed)
    videos, _ = cache_videos(find_videos(inputs.unlabeled), layout.selftrain.root, None)
    self_train(cfg, layout.selftrain.root, videos, [synthetic], val=(inputs.gt, inputs.test))
    return layout.selftrain.root


def picks(run: Path, margin: float) -> tuple[dict[str, float], dict[str, int]]:
    """Each model's true score, and each criterion's pick under each rule (index into the models)."""
    layout = SelfTrainLayout(run)
    rows = json.loads(layout.summary.read_text())
    truth = {r["model"]: float(r["metrics"]["ytvis"][METRIC]) for r in rows}
    names = [r["model"] for r in rows]
    per = json.loads(layout.label_free.read_text())["models"]
    chosen = {"last": len(names) - 1}
    for c in CRITERIA:
        per_video = [{int(v): x for v, x in per[n][c].items()} for n in names]
        means = [{c: (float(np.mean(list(p.values()))) if p else None)} for p in per_video]
        chosen[f"{c} max"] = pick_label_free(means, c)
        chosen[f"{c} safe"] = pick_safe(per_video, margin)[0]
    chosen["M0 always"] = 0
    return truth, chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/pick_regret"))
    parser.add_argument("--test-videos", type=int, default=160)
    parser.add_argument("--m0-iters", type=int, default=DemoPlan.m0_iters)
    parser.add_argument("--round-iters", type=int, default=DemoPlan.round_iters)
    parser.add_argument("--quick", action="store_true", help="the demo's quick sizes (a smoke test)")
    parser.add_argument("--margin", type=float, default=2.0, help="the safe rule's standard errors")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    plan = (
        DemoPlan.quick()
        if args.quick
        else DemoPlan(test_videos=args.test_videos, m0_iters=args.m0_iters, round_iters=args.round_iters)
    )
    seeds: dict[str, dict] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        folder = args.out / f"seed_{seed}"
        layout = DemoLayout(folder).selftrain
        run = layout.root
        if not layout.label_free.is_file() or not layout.best.is_file():
            run = run_seed(folder, plan, seed, args.overrides)
        truth, chosen = picks(run, args.margin)
        names = list(truth)
        best = max(truth.values())
        seeds[str(seed)] = {
            "true " + METRIC: truth,
            "picked": {k: names[i] for k, i in chosen.items()},
            "regret": {k: best - truth[names[i]] for k, i in chosen.items()},
            "picked - M0": {k: truth[names[i]] - truth[names[0]] for k, i in chosen.items()},
        }
        print(f"seed {seed}: {json.dumps(seeds[str(seed)])}", flush=True)
    rules = list(next(iter(seeds.values()))["regret"])
    table = {
        rule: {
            "regret per seed": [round(s["regret"][rule], 2) for s in seeds.values()],
            "mean": round(float(np.mean([s["regret"][rule] for s in seeds.values()])), 2),
            "picked per seed": [s["picked"][rule] for s in seeds.values()],
            # the safety the rule is for: how much worse than M0 the picked model is (the worst seed)
            "worst picked - M0": round(min(s["picked - M0"][rule] for s in seeds.values()), 2),
        }
        for rule in rules
    }
    figures = {
        "plan": plan.describe(),
        "metric": METRIC,
        "margin": args.margin,
        "criteria": table,
        "seeds": seeds,
    }
    write_results(args.out, "pick_regret", figures, sys.argv)


if __name__ == "__main__":
    main()
