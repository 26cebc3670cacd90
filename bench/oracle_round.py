"""How much can one self-training round gain at demo scale, with perfect labels? The oracle control.

Trains one round exactly as the demo does (from the run's M0, quality head frozen, DropLoss, half the batches
from the unlabeled videos, ``rounds.iters`` iterations) but with the **true** tracks of every unlabeled
video in place of the pseudo-labels (the world is re-created from the run's seed; the method itself never sees
them), then scores it on the run's test videos next to M0 and the real rounds. If the oracle round does not
beat M0, the retraining step at this scale, not the pseudo-labels, is what limits self-training.

    python bench/oracle_round.py runs/demo [--set rounds.iters=1000 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pseudo_label_quality import true_masks

from autoqvis.config import load_config
from autoqvis.demo.pipeline import DemoPlan, ensure_dinov2_weights, truth_dataset
from autoqvis.eval.models import ModelEvaluator
from autoqvis.io.ytvis import load_ytvis, save_ytvis
from autoqvis.selftrain.loop import SelfTrainRun
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a finished `autoqvis demo` folder")
    parser.add_argument("--out", type=Path, help="default RUN/oracle_round")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    run = args.run
    saved = json.loads((run / "results.json").read_text())
    plan, seed = DemoPlan(**saved["plan"]), saved.get("seed", 0)
    out = args.out or run / "oracle_round"
    out.mkdir(parents=True, exist_ok=True)

    save_ytvis(truth_dataset(true_masks(plan, seed), "video"), out / "true_tracks.json")
    labels = load_ytvis(out / "true_tracks.json", frames_root=run / "data" / "unlabeled")

    cfg = load_config([str(run / "config.yaml")], args.overrides)
    weights = ensure_dinov2_weights()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vit_weights=str(weights)))
    synthetic = ImageCut2Video(
        PseudoMaskImages(run / "discovery" / "pseudo_masks.json", run / "data" / "stills"),
        cfg.synthesis,
        seed=cfg.training.seed,
    )
    model = SelfTrainRun(cfg, out, labels, [synthetic]).retrain(1, labels, run / "selftrain" / "m0" / "model")
    scores = ModelEvaluator(run / "data" / "test_gt.json", run / "data" / "test", cfg)(model)
    rows = [r for r in saved["rows"] if r.get("metrics")]
    rows.insert(1, {"model": "oracle round (true tracks)", "metrics": scores.to_json(samples=False)})
    print(
        f"{'model':34s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s} {'AR10':>6s} {'J&F':>6s} {'AP50 other ranking':>19s}"
    )
    for r in rows:
        m = r["metrics"]
        y, alt = m["ytvis"], (m.get("ytvis_alt") or {}).get("AP50")
        print(
            f"{r['model']:34s} {y['AP']:6.2f} {y['AP50']:6.2f} {y['AP75']:6.2f} {y['AR10']:6.2f} {m['jf']:6.2f} "
            + ("                  -" if alt is None else f"{alt:19.2f}")
        )


if __name__ == "__main__":
    main()
