"""Memory and speed of streaming inference on long videos.

Writes synthetic videos (moving textured disks, MP4) of 50, 200 and 1000 frames and runs ``model.segment`` on
each in its own process, printing seconds per frame and peak RSS. Streaming keeps memory bounded by the
window: peak RSS at 1000 frames should be within 10% of 50 frames. The reference keeps the whole video and
grows about 0.26 GB per frame.

Figures (``runs/bench/long_video.json``): per length the seconds per frame, the peak RSS and the tracks, and
the peak-RSS ratio of the longest to the shortest video.

    python bench/speed/long_video.py                 # tiny preset, 96x160, window 16
    python bench/speed/long_video.py --preset paper_r50 --height 360 --width 640 --lengths 50 200 --window 36
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from autoqvis.benchmark import bench_parser, write_results


def write_video(path: Path, frames: int, height: int, width: int) -> None:
    import av

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[:height, :width]
    background = (rng.random((height, width, 3)) * 60 + 80).astype(np.uint8)
    discs = [
        (
            rng.uniform(0.2, 0.8) * width,
            rng.uniform(0.2, 0.8) * height,
            rng.uniform(-2, 2, 2),
            rng.integers(0, 255, 3),
            rng.uniform(0.08, 0.18) * height,
        )
        for _ in range(3)
    ]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = background.copy()
            for x, y, v, colour, r in discs:
                cx, cy = (x + v[0] * t) % width, (y + v[1] * t) % height
                img[(xs - cx) ** 2 + (ys - cy) ** 2 <= r * r] = colour
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))


def worker(args) -> dict:
    import torch

    from autoqvis.api import load_model, segment

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.preset)
    start = time.perf_counter()
    result = segment(model, args.video, window=args.window, overlap=args.overlap, short_side=args.height)
    elapsed = time.perf_counter() - start
    return {
        "frames": result.video.length,
        "tracks": len(result.tracks),
        "s_per_frame": elapsed / result.video.length,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the worker")
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.video:
        print(json.dumps(worker(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.lengths:
            path = Path(tmp) / f"video_{n}.mp4"
            write_video(path, n, args.height, args.width)
            cmd = [
                sys.executable,
                __file__,
                "--video",
                str(path),
                "--preset",
                args.preset,
                "--height",
                str(args.height),
                "--window",
                str(args.window),
                "--overlap",
                str(args.overlap),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    figures = {
        "preset": args.preset,
        "size": [args.height, args.width],
        "window": args.window,
        "overlap": args.overlap,
        "threads": args.threads,
        "lengths": {str(r["frames"]): {k: v for k, v in r.items() if k != "frames"} for r in rows},
        "peak_rss_longest_over_shortest": rows[-1]["peak_rss_gb"] / rows[0]["peak_rss_gb"],
    }
    write_results(args.out, "long_video", figures)


if __name__ == "__main__":
    main()
