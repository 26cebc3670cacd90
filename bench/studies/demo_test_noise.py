"""How much does one model's demo AP50 move across test-set draws? (How many test videos the demo needs.)

Takes a finished ``autoqvis demo`` run, loads one of its models (default M0), renders ``--draws`` fresh test
sets of ``max(--sizes)`` videos each from the same world (new seeds, never the run's own videos), and scores
the model on the first N videos of each draw for every N in ``--sizes``. Prints, per N, the mean and the
standard deviation of AP50 (official ranking) and J&F across draws: the test-set noise of one demo number.

Figures (``RUN/test_noise/demo_test_noise.json``): per test-set size the mean and standard deviation of AP50
and J&F across draws.

    python bench/studies/demo_test_noise.py runs/demo [--model selftrain/m0/model] [--draws 4] [--sizes 40 80 160]
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import load_config
from autoqvis.demo.pipeline import DemoPlan, truth_dataset
from autoqvis.evaluate.models import ModelEvaluator
from autoqvis.io.world import render_video
from autoqvis.io.ytvis import save_ytvis
from autoqvis.runs.layout import DemoLayout

M0 = DemoLayout(Path("")).selftrain.model(0).as_posix()  # a demo run's M0, relative to the run


def render_test_set(folder: Path, plan: DemoPlan, seed: int, count: int) -> list[np.ndarray]:
    """``count`` test videos of the run's world from a fresh seed; returns their true masks."""
    rng = np.random.default_rng([seed, 0x7E57])
    world, masks = plan.world(), []
    for i in range(count):
        video = render_video(rng, world)
        target = folder / f"test_{i:03d}"
        target.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(video.frames):
            Image.fromarray(frame).save(target / f"{t:05d}.jpg", quality=95)
        masks.append(video.masks)
    return masks


def main() -> None:
    parser = bench_parser(__doc__, out_default=None)
    parser.add_argument("run", type=Path, help="a finished `autoqvis demo` folder")
    parser.add_argument("--model", default=M0, help=f"model folder inside the run (default {M0})")
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 80, 160])
    parser.add_argument(
        "--out", type=Path, help="the drawn test sets and the results (default RUN/test_noise)"
    )
    args = parser.parse_args()
    saved = json.loads(DemoLayout(args.run).results.read_text())
    plan = DemoPlan(**saved["plan"])
    cfg = load_config([str(args.run / "config.yaml")])
    out = args.out or args.run / "test_noise"
    start = time.perf_counter()
    table: dict[int, list[tuple[float, float]]] = {n: [] for n in args.sizes}
    for draw in range(args.draws):
        folder = out / f"draw_{draw}"
        masks = render_test_set(folder / "videos", plan, 1000 + draw, max(args.sizes))
        for n in args.sizes:
            gt = folder / f"gt_{n}.json"
            save_ytvis(truth_dataset(masks[:n], "test"), gt)
            scores = ModelEvaluator(gt, folder / "videos", dataclasses.replace(cfg))(args.run / args.model)
            table[n].append((scores.ytvis["AP50"], scores.jf))
            print(
                f"draw {draw}, {n} videos: AP50 {scores.ytvis['AP50']:.2f}, J&F {scores.jf:.2f}", flush=True
            )
    figures: dict = {"run": str(args.run), "model": args.model, "draws": args.draws, "test_videos": {}}
    for n, values in table.items():  # std across draws = the noise of one demo figure
        ap, jf = np.array(values).T
        figures["test_videos"][str(n)] = {
            "AP50": {"mean": float(ap.mean()), "std": float(ap.std(ddof=1)) if len(ap) > 1 else None},
            "J&F": {"mean": float(jf.mean()), "std": float(jf.std(ddof=1)) if len(jf) > 1 else None},
        }
    figures["wall_s"] = time.perf_counter() - start
    write_results(out, "demo_test_noise", figures)


if __name__ == "__main__":
    main()
