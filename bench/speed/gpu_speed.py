"""The paper model on one GPU: eval frames per second, training iterations per second, peak memory, and what the
paper's schedule would take on this GPU.

- Eval: ``paper_r50`` (random weights) in eval mode on a ``--frames``-frame clip at 360x640 (the official test
  size: short side 360), the whole clip in one forward pass plus the official post-processing (top-10 tracks,
  masks at the input size, quality head on the kept queries), in float32 (TF32 off) and under bf16 / fp16
  autocast (``inference.amp``); median of ``--runs`` after a warm-up.
- Training: one optimiser iteration of the trainer (forward, losses on 12,544 points with deep supervision,
  backward, full-model gradient clipping, AdamW step; fp16 with the loss scaler) on 2 clips of 3 frames at
  ``--train-size`` (the per-GPU batch of every official stage: S3 2 clips on 1 GPU, S4 4 clips on 2 GPUs, S2 16
  clips on 8 GPUs; the default 480x640 is the larger of the two training sizes), in two stages: S3 (quality
  head trained on every query) and S4 (head frozen, DropLoss).
- Schedule: S3 = 8,000 iterations on 1 GPU; each S4 round = 10,000 iterations on 2 GPUs; S2 = 80,000
  iterations on 8 GPUs, approximated by the S4 iteration (no quality head); data loading and the DDP all-reduce
  are not included. Pseudo-labelling a round costs (frames in the unlabeled pool) / (eval frames per second).

Figures (``runs/bench/gpu_speed.json``): the device; per precision the eval seconds, frames per second and
peak memory; per stage and precision the training seconds per iteration and peak memory; the schedule.

    python bench/speed/gpu_speed.py            # ~2 min on one GPU
    python bench/speed/gpu_speed.py --quick    # ~1 min: shorter clip, fewer repeats
    python bench/speed/gpu_speed.py --out runs/bench

Exit status: 0 when measured; 2 when there is no CUDA device (nothing is measured; the message says why).
``--device cpu`` runs the same script on the CPU (slow: use small ``--frames``/``--height``/``--width``/
``--train-size``), to check the script without a GPU.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch

from autoqvis.benchmark import bench_parser, write_results
from autoqvis.config import TrainingConfig
from autoqvis.device import DeviceError, describe_device, resolve_device
from autoqvis.model import build_model
from autoqvis.structures import Clip
from autoqvis.train.data import ClipList
from autoqvis.train.trainer import Trainer

AMPS = ("off", "bf16", "fp16")
SCHEDULE = {  # stage: (iterations, GPUs, measured training stage)
    "S3 initial stage (1 GPU, batch 2)": (8000, 1, "S3"),
    "S4 one round (2 GPUs, batch 4)": (10000, 2, "S4"),
    "S2 VideoCutLER (8 GPUs, batch 16; ~S4 iteration)": (80000, 8, "S4"),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def median_seconds(fn: Callable[[], object], device: torch.device, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def scene(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a generated scene with textured moving objects."""
    from autoqvis.io.world import WorldConfig, render_video

    return render_video(
        np.random.default_rng(seed), WorldConfig(height=height, width=width, num_frames=frames)
    ).frames


def eval_speed(device: torch.device, amp: str, frames: int, height: int, width: int, runs: int) -> dict:
    torch.manual_seed(0)
    model = build_model("paper_r50").eval().to(device)
    clip = torch.from_numpy(scene(frames, height, width)).permute(0, 3, 1, 2).contiguous().to(device)
    with torch.no_grad():
        model.inference(clip, amp=amp)  # warm-up outside the peak measurement
        reset_peak(device)
        seconds = median_seconds(lambda: model.inference(clip, amp=amp), device, runs, warmup=0)
    return {"seconds": seconds, "fps": frames / seconds, "peak_gib": peak_gib(device)}


def training_clips(height: int, width: int, n: int = 2, frames: int = 3) -> list[Clip]:
    clips = []
    for i in range(n):
        video = torch.from_numpy(scene(frames, height, width, seed=1 + i)).permute(0, 3, 1, 2).contiguous()
        masks = torch.zeros(3, frames, height, width, dtype=torch.bool)
        masks[0, :, height // 8 : height // 2, width // 8 : width // 2] = True
        masks[1, :, height // 2 : height - 16, width // 2 : width - 16] = True
        masks[2, :, height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = True
        ids = torch.arange(3)[:, None].expand(3, frames).contiguous()
        clips.append(Clip(frames=video, masks=masks, ids=ids))
    return clips


def train_speed(device: torch.device, amp: str, stage: str, size: tuple[int, int], iters: int) -> dict:
    torch.manual_seed(0)
    s4 = stage == "S4"
    cfg = TrainingConfig(amp=amp, batch_size=2, freeze_quality_head=s4, droploss=s4, max_iters=iters + 2)
    model = build_model("paper_r50", cfg)
    clips = training_clips(*size)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, [ClipList(clips)], [1.0], cfg, out, device)
        model.train()
        for _ in range(2):  # warm-up (and the fp16 scaler's first overflow steps)
            trainer.step([clips])
        reset_peak(device)
        seconds = median_seconds(lambda: trainer.step([clips]), device, iters, warmup=0)
    return {"seconds_per_iter": seconds, "iters_per_second": 1 / seconds, "peak_gib": peak_gib(device)}


def fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:6.1f} h"


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="12-frame eval clip, 3 eval runs, 4 training iterations"
    )
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu: check the script only)")
    parser.add_argument("--frames", type=int, help="eval clip length (default 36, --quick 12)")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--train-size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    parser.add_argument("--runs", type=int, help="eval repeats (default 5, --quick 3)")
    parser.add_argument("--iters", type=int, help="timed training iterations (default 8, --quick 4)")
    args = parser.parse_args()
    frames = args.frames or (12 if args.quick else 36)
    runs = args.runs or (3 if args.quick else 5)
    iters = args.iters or (4 if args.quick else 8)
    try:
        device = resolve_device(args.device)
    except DeviceError as err:
        print(f"gpu_speed: {err}; nothing measured (exit 2)", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 column is true float32
        torch.backends.cudnn.allow_tf32 = False
    amps = [a for a in AMPS if device.type == "cuda" or a != "fp16"]  # fp16 autocast is CUDA-only
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        amps.remove("bf16")
    figures: dict = {"device": describe_device(device), "eval": {}, "train": {}, "schedule": {}}
    print(f"device: {figures['device']}")

    print(f"eval: paper_r50, {frames} frames at {args.height}x{args.width}, median of {runs}")
    for amp in amps:
        r = figures["eval"][amp] = eval_speed(device, amp, frames, args.height, args.width, runs)
        mem = f", peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
        print(f"  {amp:>4}: {r['seconds']:.3f} s per clip = {r['fps']:7.1f} frames/s{mem}", flush=True)

    h, w = args.train_size
    print(f"training: paper_r50, 2 clips x 3 frames at {h}x{w} per GPU, median of {iters} after 2 warm-up")
    for stage in ("S3", "S4"):
        for amp in amps:
            r = figures["train"][f"{stage}/{amp}"] = train_speed(device, amp, stage, (h, w), iters)
            mem = f", peak {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""
            print(
                f"  {stage} {amp:>4}: {r['seconds_per_iter']:.3f} s/it = {r['iters_per_second']:5.2f} it/s{mem}",
                flush=True,
            )

    print("the paper's schedule on GPUs like this one (iterations x s/it; no data loading or all-reduce):")
    for name, (iterations, gpus, stage) in SCHEDULE.items():
        row = {amp: iterations * figures["train"][f"{stage}/{amp}"]["seconds_per_iter"] for amp in amps}
        figures["schedule"][name] = {"iterations": iterations, "gpus": gpus, "seconds": row}
        print(f"  {name:48s} " + "  ".join(f"{amp} {fmt_hours(s)}" for amp, s in row.items()))
    best_fps = max(r["fps"] for r in figures["eval"].values())
    print(
        f"  pseudo-labelling or scoring: {1000 / best_fps:.1f} s per 1,000 frames at {args.height}x{args.width}"
        " (fastest eval mode)"
    )
    figures["pseudo_labelling_s_per_1000_frames"] = 1000 / best_fps
    write_results(args.out, "gpu_speed", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
