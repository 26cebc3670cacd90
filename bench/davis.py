"""Real footage: the whole unsupervised pipeline on the DAVIS-2016 sequences in ``../shared/data/davis2016-dev``.

The binary ground truth is used only for scoring. Stages (wall time of each is printed): MaskCut with the
offline DINOv2-S features on every ``--every``-th frame of the videos themselves, ImageCut2Video from those
frames, the initial stage (tiny decoder on the frozen DINOv2-S backbone), two self-training rounds on the
five videos. Reported per sequence and mean J, F, J&F (DAVIS-2016 protocol, first and last frame excluded) for
MaskCut per frame (first mask), M0, round 1 and round 2, with the top-scoring track as the foreground and,
separately, the best-matching of the top 20 tracks (DAVIS-2017 unsupervised matching).

    python bench/davis.py [--out runs/bench_davis] [--short-side 160] [--m0-iters 400] [--round-iters 200]
        [--quality-min 0.5] [--no-image-stem]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from autoqvis.config import load_config
from autoqvis.demo.pipeline import ensure_dinov2_weights
from autoqvis.eval.davis import evaluate_sequence_2016, evaluate_sequence_unsupervised
from autoqvis.io import rle
from autoqvis.io.davis import annotation_folder, read_id_masks, sequence_names

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016-dev"


def score_tracks(tracks, gt: np.ndarray, name: str) -> dict[str, dict[str, float]]:
    """J/F/J&F with the top-scoring track as foreground and with the best-matching track."""
    T, H, W = gt.shape

    def dense(track):
        return np.stack([rle.decode(m) if m is not None else np.zeros((H, W), bool) for m in track.masks])

    top = dense(tracks[0]) if tracks else np.zeros_like(gt, bool)
    a = evaluate_sequence_2016(name, gt > 0, top).stats()
    proposals = np.zeros((T, H, W), np.uint8)
    for k in reversed(range(min(len(tracks), 20))):
        proposals[dense(tracks[k])] = k + 1
    obj = evaluate_sequence_unsupervised(name, (gt > 0).astype(np.uint8)[1:-1], proposals[1:-1])[0].stats()
    return {
        "top": {"J": a["J-Mean"], "F": a["F-Mean"], "J&F": (a["J-Mean"] + a["F-Mean"]) / 2},
        "best": {"J": obj["J-Mean"], "F": obj["F-Mean"], "J&F": (obj["J-Mean"] + obj["F-Mean"]) / 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_davis"))
    parser.add_argument("--every", type=int, default=3, help="discovery on every k-th frame")
    parser.add_argument("--fixed-size", type=int, default=320, help="MaskCut input size (official 480)")
    parser.add_argument("--num-masks", type=int, default=2, help="MaskCut masks per frame (official 3)")
    parser.add_argument("--short-side", type=int, default=160)
    parser.add_argument("--m0-iters", type=int, default=400)
    parser.add_argument("--round-iters", type=int, default=200)
    parser.add_argument(
        "--quality-min",
        type=float,
        default=0.5,
        help="pseudo-label threshold tau on Q (paper 0.75; at 0.75 the small M0 keeps about one object)",
    )
    parser.add_argument(
        "--no-image-stem",
        action="store_true",
        help="the ViT backbone without the image stem (stride-16 tokens only)",
    )
    args = parser.parse_args()

    from autoqvis.api import load_model
    from autoqvis.discover.maskcut import maskcut_batch
    from autoqvis.discover.run import discover, video_items
    from autoqvis.inference.predict import PredictOptions, segment_video
    from autoqvis.io.video import FrameList, find_videos, read_image
    from autoqvis.model.vit import load_vit
    from autoqvis.selftrain.loop import SelfTrainRun
    from autoqvis.selftrain.videos import cache_videos
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages

    s = args.short_side
    cfg = load_config(
        [],
        [
            "model.preset=tiny",
            "model.backbone=vit",
            f"model.vit_image_stem={str(not args.no_image_stem).lower()}",
            f"selection.quality_min={args.quality_min}",
            "discovery.arch=dinov2_vits14_imgfocus",
            "discovery.features=tokens",
            f"synthesis.short_sides=[{s}]",
            f"synthesis.crop_min={int(s * 1.2)}",
            f"synthesis.crop_max={int(s * 1.6)}",
            f"training.max_iters={args.m0_iters}",
            "training.batch_size=2",
            "training.num_points=1024",
            "training.lr=1e-4",
            f"training.checkpoint_period={max(args.m0_iters // 2, 1)}",
            f"selection.round_iters={args.round_iters}",
            "selection.round_batch_size=2",
            f"inference.short_side={s}",
        ],
    )
    weights = ensure_dinov2_weights()
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, vit_weights=str(weights)),
        discovery=dataclasses.replace(cfg.discovery, weights=str(weights)),
    )
    out = args.out
    times: dict[str, float] = {}
    ann = annotation_folder(args.root)
    seqs = sequence_names(ann)
    gts = {q: read_id_masks(ann / q)[0] for q in seqs}
    frames_dir = args.root / "JPEGImages" / "480p"

    start = time.perf_counter()
    vit = load_vit(cfg.discovery.arch, weights)
    pseudo = out / "pseudo_masks.json"
    if not pseudo.is_file():
        discover(
            video_items(args.root, args.every, out / "pseudo_masks.frames"),
            pseudo,
            cfg.discovery,
            vit,
            source=f"davis:{args.every}",
            frames_root=(out / "pseudo_masks.frames").resolve(),
        )
    times["discovery"] = time.perf_counter() - start

    rows: dict[str, dict] = {}
    start = time.perf_counter()
    baseline = {}
    for q in seqs:
        paths = sorted((frames_dir / q).glob("*.jpg"))
        results = maskcut_batch(
            [read_image(p) for p in paths], vit, dataclasses.replace(cfg.discovery, num_masks=1)
        )
        first = np.stack([r.masks[0] if r.masks else np.zeros(gts[q].shape[1:], bool) for r in results])
        m = evaluate_sequence_2016(q, gts[q] > 0, first).stats()
        baseline[q] = {"J": m["J-Mean"], "F": m["F-Mean"], "J&F": (m["J-Mean"] + m["F-Mean"]) / 2}
    rows["MaskCut per frame (first mask)"] = {"top": baseline, "best": baseline}
    times["MaskCut per frame"] = time.perf_counter() - start

    start = time.perf_counter()
    synthetic = ImageCut2Video(PseudoMaskImages(pseudo), cfg.synthesis, seed=0)
    videos, _ = cache_videos(find_videos(args.root), out / "selftrain", None)
    run = SelfTrainRun(cfg, out / "selftrain", videos, [synthetic])
    models = {"M0": run.initial_stage()}
    times["initial stage"] = time.perf_counter() - start
    model, labels = models["M0"], None
    for k in (1, 2):
        start = time.perf_counter()
        predictions = run.pseudo_label(k, model)
        labels, stats, training_set = run.select_and_fuse(k, predictions, labels)
        if training_set.videos:
            model = run.retrain(k, training_set, models["M0"])
        models[f"round {k}"] = model
        times[f"round {k}"] = time.perf_counter() - start
        print(f"round {k}: {stats.fused.objects} pseudo-labels")

    start = time.perf_counter()
    options = PredictOptions(short_side=s, top_k=10)
    for name, folder in models.items():
        net = load_model(folder)
        per = {"top": {}, "best": {}}
        for q in seqs:
            source = FrameList(name=q, short_side=s, paths=sorted((frames_dir / q).glob("*.jpg")))
            scored = score_tracks(segment_video(net, source, options).tracks, gts[q], q)
            per["top"][q], per["best"][q] = scored["top"], scored["best"]
        rows[name] = per
    times["evaluation"] = time.perf_counter() - start

    print(
        f"DAVIS-2016 protocol on {len(seqs)} sequences of {args.root} (x100); model input short side {s}; "
        f"image stem {'off' if args.no_image_stem else 'on'}; tau {args.quality_min}"
    )
    for mode in ("top", "best"):
        print(
            f"-- foreground = {'top-scoring track' if mode == 'top' else 'best-matching of the top 20 tracks'}"
        )
        print(
            f"{'model':32s} "
            + " ".join(f"{q[:10]:>10s}" for q in seqs)
            + f" {'J mean':>7s} {'F mean':>7s} {'J&F':>7s}"
        )
        for name, per in rows.items():
            table = per[mode]
            js = [table[q]["J"] for q in seqs]
            fs = [table[q]["F"] for q in seqs]
            print(
                f"{name:32s} "
                + " ".join(f"{100 * table[q]['J&F']:10.1f}" for q in seqs)
                + f" {100 * np.mean(js):7.1f} {100 * np.mean(fs):7.1f} {50 * (np.mean(js) + np.mean(fs)):7.1f}"
            )
    print("wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    print(
        "published annotation-free anchors on all 20 DAVIS-2016 val sequences: TokenCut-video 64.3 J, 62.0 J with unsupervised flow"
    )
    (out / "results.json").write_text(json.dumps({"rows": rows, "seconds": times}, indent=1))


if __name__ == "__main__":
    main()
