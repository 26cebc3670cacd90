"""How much can one self-training round gain at demo scale, with perfect labels? The oracle control.

Trains one round exactly as the demo does (from the run's M0, quality head frozen, DropLoss, half the batches
from the unlabeled videos, ``rounds.iters`` iterations) but with the **true** tracks of every unlabeled
video in place of the pseudo-labels (the world is re-created from the run's seed; the method itself never sees
them), then scores it on the run's test videos next to M0 and the real rounds. If the oracle round does not
beat M0, the retraining step at this scale, not the pseudo-labels, is what limits self-training.

Figures (``RUN/oracle_round/oracle_round.json``): per model (the run's rows with the oracle round second) AP,
AP50, AP75, AR10, J&F and the AP50 of the other track ranking.

    python bench/studies/oracle_round.py runs/demo [--set rounds.iters=1000 ...] [--out DIR]
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import load_config
from autoqvis.demo.pipeline import DemoPlan, ensure_dinov2_weights, truth_dataset
from autoqvis.demo.truth import unlabeled_truth
from autoqvis.evaluate.models import ModelEvaluator
from autoqvis.io.ytvis import load_ytvis, save_ytvis
from autoqvis.runs.layout import DemoLayout
from autoqvis.selftrain.loop import SelfTrainRun
from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages


def main() -> None:
    parser = bench_parser(__doc__, out_default=None)
    parser.add_argument("run", type=Path, help="a finished `autoqvis demo` folder")
    parser.add_argument(
        "--out", type=Path, help="the oracle round's folder and its results (default RUN/oracle_round)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    run = args.run
    saved = json.loads(DemoLayout(run).results.read_text())
    plan, seed = DemoPlan(**saved["plan"]), saved.get("seed", 0)
    out = args.out or run / "oracle_round"
    out.mkdir(parents=True, exist_ok=True)

    save_ytvis(truth_dataset(unlabeled_truth(plan, seed), "video"), out / "true_tracks.json")
    labels = load_ytvis(out / "true_tracks.json", frames_root=DemoLayout(run).unlabeled)

    cfg = load_config([str(run / "config.yaml")], args.overrides)
    weights = ensure_dinov2_weights()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vit_weights=str(weights)))
    synthetic = ImageCut2Video(
        PseudoMaskImages(DemoLayout(run).discovery / "pseudo_masks.json", DemoLayout(run).stills),
        cfg.synthesis,
        seed=cfg.training.seed,
    )
    m0 = DemoLayout(run).selftrain.model(0)
    model = SelfTrainRun(cfg, out, labels, [synthetic]).retrain(1, labels, m0)
    scores = ModelEvaluator(DemoLayout(run).test_gt, DemoLayout(run).test, cfg)(model)
    rows = [r for r in saved["rows"] if r.get("metrics")]
    rows.insert(1, {"model": "oracle round (true tracks)", "metrics": scores.to_json(samples=False)})
    figures = {}
    for r in rows:
        m = r["metrics"]
        y = m["ytvis"]
        figures[r["model"]] = {k: y[k] for k in ("AP", "AP50", "AP75", "AR10")} | {
            "J&F": m["jf"],
            "AP50_other_ranking": (m.get("ytvis_alt") or {}).get("AP50"),
        }
    write_results(out, "oracle_round", figures)


if __name__ == "__main__":
    main()
