"""Training speed: seconds per iteration of the small CPU model and of ``paper_r50``, with a breakdown.

Models (random weights for the heads; the small model's frozen ViT is the DINOv2-S architecture):

- ``small``: the demo's model (tiny decoder on a frozen DINOv2-S backbone with the image stem) on demo-world
  clips at 96x128, batch 2, 3 frames, 1,024 points, as ``autoqvis demo`` trains M0;
- ``small-160``: the same model at short side 160 (213 wide), as ``bench/studies/davis.py`` trains it;
- ``small-224``: the same at short side 224 (298 wide), ``davis.py --short-side 224``;
- ``paper_r50``: the official model (ResNet-50, 100 queries) at batch 1, 3 frames of 240x320.

Each iteration is one full optimiser step of :class:`autoqvis.train.trainer.Trainer` (forward, losses,
backward, clipping, AdamW, schedule) on the given ``--set`` overrides (e.g. ``--set training.amp=bf16``). The
breakdown re-runs the same steps with the stages timed separately. Wall time and process CPU time are both
printed: CPU time stays comparable when other jobs share the cores.

Figures (``runs/bench/train_speed.json``): per model the precision, wall and CPU seconds per iteration and the
breakdown (wall seconds per stage of a step).

    python bench/speed/train_speed.py [--models small small-160 paper_r50] [--iters 8] [--threads 2]
                                      [--set training.amp=bf16 ...] [--out runs/bench]
"""

from __future__ import annotations

import dataclasses
import tempfile
import time

import torch

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import load_config
from autoqvis.device import cpu_capabilities, describe_amp
from autoqvis.io.world import WorldClipSource, WorldConfig
from autoqvis.model import build_model
from autoqvis.train.trainer import Trainer

SMALL = [
    "model.preset=tiny",
    "model.backbone=vit",
    "model.vit_image_stem=true",
    "training.batch_size=2",
    "training.num_points=1024",
    "training.lr=1e-4",
]
MODELS = {
    # name: (overrides, clip height, width, batch size)
    "small": (SMALL, 96, 128),
    "small-160": (SMALL, 160, 213),
    "small-224": (SMALL, 224, 298),
    "paper_r50": (["model.preset=paper_r50", "training.batch_size=1", "training.num_points=12544"], 240, 320),
}


def measure(name: str, overrides: list[str], iters: int, out: str) -> dict:
    settings, height, width = MODELS[name]
    cfg = load_config([], [*settings, *overrides])
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.training, pretrained_backbone=False)
    source = WorldClipSource(64, WorldConfig(height=height, width=width, num_frames=3))
    training = dataclasses.replace(cfg.training, max_iters=10**6)
    trainer = Trainer(model, [source], [1.0], training, out, torch.device("cpu"))
    model.train()
    batch = training.batch_size
    batches = [[source.clip(i * batch + j, 0) for j in range(batch)] for i in range(iters + 2)]
    for clips in batches[:2]:  # warm-up (allocator, oneDNN primitive caches)
        trainer.step([clips])
    wall, cpu = time.perf_counter(), time.process_time()
    for clips in batches[2:]:
        trainer.step([clips])
    wall, cpu = (time.perf_counter() - wall) / iters, (time.process_time() - cpu) / iters
    return {
        "precision": describe_amp(training.amp, "cpu"),
        "s_per_it": wall,
        "cpu_s_per_it": cpu,
        "breakdown": breakdown(trainer, batches[2:]),
    }


def breakdown(trainer: Trainer, batches: list) -> dict[str, float]:
    """Mean wall seconds per iteration of each stage of a step."""
    model, parts = trainer.model, {}

    def tick(key: str, start: float) -> float:
        now = time.perf_counter()
        parts[key] = parts.get(key, 0.0) + now - start
        return now

    for clips in batches:
        t = time.perf_counter()
        with trainer.autocast():
            images, _ = model.preprocess([c.frames for c in clips])
            targets = model.prepare_targets(clips, images.shape[-2:])
            t = tick("prepare", t)
            feats = model.backbone(images)
            t = tick("backbone", t)
            mask_features, multi_scale = model.sem_seg_head.pixel_decoder(feats)
            t = tick("pixel decoder", t)
            quality = model.quality_outputs if model.train_quality_head else "none"  # as the trainer runs it
            out = model.predictor(multi_scale, mask_features, len(clips), score_quality=quality)
            t = tick("decoder + quality head", t)
            losses = model.criterion(out, targets)
            t = tick("losses", t)
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.scaler.scale(sum(losses.values())).backward()
        t = tick("backward", t)
        trainer.scaler.unscale_(trainer.optimizer)
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 0.01)
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        tick("clip + step", t)
    return {k: v / len(batches) for k, v in parts.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["small", "small-160", "paper_r50"], choices=MODELS)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_capabilities(), flush=True)
    results = {}
    for name in args.models:
        with tempfile.TemporaryDirectory() as work:  # the trainer's folder (nothing is saved in it)
            r = results[name] = measure(name, args.overrides, args.iters, work)
        parts = " | ".join(f"{k} {v:.3f}" for k, v in r["breakdown"].items())
        print(
            f"{name:10s} [{r['precision']}] {r['s_per_it']:.3f} s/it wall ({1 / r['s_per_it']:.2f} it/s), "
            f"{r['cpu_s_per_it']:.3f} s/it CPU | {parts}",
            flush=True,
        )
    figures = {"threads": args.threads, "iters": args.iters, "overrides": args.overrides, "models": results}
    write_results(args.out, "train_speed", figures)


if __name__ == "__main__":
    main()
