"""Evaluate predictions: YouTube-VIS AP/AR (class-agnostic by default) or DAVIS J&F; or run a model on labelled
videos and score it.

YouTube-VIS:  autoqvis evaluate --gt GT.json --pred PRED.json [--out DIR]
DAVIS:        autoqvis evaluate --davis DAVIS_ROOT --pred-masks MASK_ROOT [--protocol 2016|2017-unsupervised]
A model:      autoqvis evaluate --gt GT.json --gt-frames DIR --weights W [--preset P] [--device cuda]

A model is scored with the official test protocol (the whole video at short side 360, the top 10 queries as
tracks, no NMS; ``inference.*``), or, for a model folder written by autoqvis, with the inference settings it
was trained with (its ``inference.json``; a ``--config`` or ``--set`` wins, and what differs is said on
stderr): YouTube-VIS AP/AR on the ground truth's own video ids, the DAVIS-2017
unsupervised J&F, and the quality predictor's Spearman correlation with the true IoU.

Prints a table; with ``--out`` writes ``metrics.json`` (and ``config.yaml``) into that folder atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from autoqvis.commands.common import (
    add_config_arguments,
    add_device_argument,
    config_from_args,
    device_from_args,
    model_weights,
    output_folder,
)
from autoqvis.config import save_config
from autoqvis.errors import DataError
from autoqvis.runs.atomic import atomic_write_json
from autoqvis.runs.outputs import claim_output

log = logging.getLogger("autoqvis")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    yt = parser.add_argument_group("YouTube-VIS")
    yt.add_argument("--gt", type=Path, metavar="GT.json", help="ground-truth YouTube-VIS dataset file")
    yt.add_argument("--pred", type=Path, metavar="PRED.json", help="results file (list of predictions)")
    dv = parser.add_argument_group("DAVIS")
    dv.add_argument("--davis", type=Path, metavar="ROOT", help="DAVIS root with Annotations/480p/<seq>")
    dv.add_argument(
        "--pred-masks", type=Path, metavar="ROOT", help="predicted palette PNGs: ROOT/<seq>/<frame>.png"
    )
    dv.add_argument(
        "--protocol",
        choices=("2016", "2017-unsupervised"),
        default=None,
        help="with --davis: DAVIS-2016 single object (default) or DAVIS-2017 unsupervised multi-object",
    )
    md = parser.add_argument_group("a model on labelled videos (with --gt)")
    md.add_argument(
        "--weights", type=Path, metavar="W", help="model folder or official .pth: predict, then score"
    )
    md.add_argument("--gt-frames", type=Path, metavar="DIR", help="frames root of --gt (its file_names)")
    md.add_argument(
        "--preset", default=None, help="architecture of a weights file (default: model.*), as in predict"
    )
    add_device_argument(md)
    parser.add_argument("--out", type=Path, metavar="DIR", help="write metrics.json and config.yaml here")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args).evaluation
    if (args.gt or args.pred) and (args.davis or args.pred_masks):
        raise DataError(
            "pass either --gt/--pred (YouTube-VIS) or --davis/--pred-masks (DAVIS), not both; run evaluate twice "
            "to get both"
        )
    _check_flags_apply(args)
    if not args.out:
        return _evaluate(args, cfg)
    output_folder(args.out)
    reads = [(flag, getattr(args, flag[2:].replace("-", "_"))) for flag in READS]
    with claim_output(args.out, "evaluate", reads):
        return _evaluate(args, cfg)


READS = ("--gt", "--pred", "--davis", "--pred-masks", "--weights", "--gt-frames")


def _check_flags_apply(args: argparse.Namespace) -> None:
    """A flag of one way of evaluating given with another would be ignored: refused, naming why."""
    if args.protocol is not None and not (args.davis or args.pred_masks):
        raise DataError(
            f"--protocol {args.protocol} chooses the DAVIS protocol; without --davis/--pred-masks it would be "
            "ignored: drop it, or evaluate DAVIS masks"
        )
    if not args.weights:
        for flag, value in (
            ("--gt-frames", args.gt_frames),
            ("--preset", args.preset),
            ("--device", args.device),
        ):
            if value is not None:
                raise DataError(
                    f"{flag} {value} applies to scoring a model (--weights W --gt GT.json --gt-frames DIR); "
                    "evaluating predictions (--pred or --pred-masks) would ignore it: pass --weights, or drop "
                    f"{flag}"
                )


def _evaluate(args: argparse.Namespace, cfg) -> int:
    if args.weights or args.gt_frames:
        return _evaluate_model(args)
    if args.gt or args.pred:
        if not (args.gt and args.pred):
            raise DataError("YouTube-VIS evaluation needs both --gt GT.json and --pred PRED.json")
        from autoqvis.evaluate.ytvis import evaluate_files, format_table

        result = evaluate_files(
            args.gt,
            args.pred,
            class_agnostic=cfg.class_agnostic,
            area_small=cfg.area_small,
            area_large=cfg.area_large,
            max_dets=cfg.max_dets,
        )
        payload = {"kind": "ytvis", "gt": str(args.gt), "pred": str(args.pred), **result.to_json()}
        table = format_table(
            result, title=f"YouTube-VIS ({'class-agnostic' if cfg.class_agnostic else 'per class'})"
        )
    elif args.davis or args.pred_masks:
        if not (args.davis and args.pred_masks):
            raise DataError("DAVIS evaluation needs both --davis ROOT and --pred-masks ROOT")
        from autoqvis.evaluate.davis import evaluate_davis_folders, format_davis_table

        protocol = args.protocol or "2016"
        result = evaluate_davis_folders(args.davis, args.pred_masks, protocol=protocol, config=cfg)
        payload = {"kind": "davis", "protocol": protocol, **result.to_json()}
        table = format_davis_table(result)
    else:
        raise DataError("nothing to evaluate: pass --gt and --pred (YouTube-VIS) or --davis and --pred-masks")
    print(json.dumps(payload, indent=1) if args.json else table)
    if args.out:
        save_config(config_from_args(args), args.out)
        path = atomic_write_json(args.out / "metrics.json", payload)
        log.info("wrote %s", path)
    return 0


def _evaluate_model(args: argparse.Namespace) -> int:
    """Run ``--weights`` on the videos of ``--gt`` (frames under ``--gt-frames``) and score it."""
    import sys

    from autoqvis.config import Config, ModelConfig
    from autoqvis.evaluate.models import ModelEvaluator, ModelScores
    from autoqvis.model import load_model
    from autoqvis.model.build import read_inference
    from autoqvis.predict.predict import differs_from_model

    if not (args.weights and args.gt and args.gt_frames) or args.pred:
        raise DataError("scoring a model needs --weights W, --gt GT.json and --gt-frames DIR (and no --pred)")
    args.weights = model_weights(args.weights)
    # a model folder's own inference settings (inference.json) are the base; a config file or --set wins
    own = read_inference(args.weights)
    cfg = config_from_args(args, base=None if own is None else Config(inference=own))
    differs = differs_from_model(own, cfg.inference)
    if differs:
        print(differs, file=sys.stderr)  # stdout may be --json
    device, cfg = device_from_args(args, cfg, amp=("inference",))
    expected = args.preset or (cfg.model if cfg.model != ModelConfig() else None)
    model = load_model(args.weights, model=expected, device=device)
    scores = ModelEvaluator(args.gt, args.gt_frames, cfg).score(model)
    payload = {
        "kind": "model",
        "weights": str(args.weights),
        "gt": str(args.gt),
        **scores.to_json(samples=False),
    }
    if args.json:
        print(json.dumps(payload, indent=1))
    else:
        print(f"YouTube-VIS (class-agnostic), DAVIS-2017 unsupervised J&F, {args.weights} on {device}")
        columns = (*scores.ytvis, "JF", "spearman_quality", "spearman_confidence")
        print(ModelScores.table([(args.weights.name, scores)], columns))
        print(
            "Spearman Q / s: correlation of the quality Q = score x predicted IoU / of the score with the true IoU"
        )
    if args.out:
        save_config(cfg, args.out)
        log.info("wrote %s", atomic_write_json(args.out / "metrics.json", payload))
    return 0
