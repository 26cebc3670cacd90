"""Evaluate predictions: YouTube-VIS AP/AR (class-agnostic by default) or DAVIS J&F.

YouTube-VIS:  autoqvis evaluate --gt GT.json --pred PRED.json [--out DIR]
DAVIS:        autoqvis evaluate --davis DAVIS_ROOT --pred-masks MASK_ROOT [--protocol 2016|2017-unsupervised]

Prints a table; with ``--out`` writes ``metrics.json`` (and ``config.yaml``) into that folder atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from autoqvis.commands.common import add_config_arguments, config_from_args, output_folder
from autoqvis.config import save_config
from autoqvis.errors import DataError
from autoqvis.io.atomic import atomic_write_json

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
        default="2016",
        help="DAVIS-2016 single object (default) or DAVIS-2017 unsupervised multi-object",
    )
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
    if args.out:
        output_folder(args.out)
    if args.gt or args.pred:
        if not (args.gt and args.pred):
            raise DataError("YouTube-VIS evaluation needs both --gt GT.json and --pred PRED.json")
        from autoqvis.eval.ytvis import evaluate_files, format_table

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
        from autoqvis.eval.davis import evaluate_davis_folders, format_davis_table

        result = evaluate_davis_folders(args.davis, args.pred_masks, protocol=args.protocol, config=cfg)
        payload = {"kind": "davis", "protocol": args.protocol, **result.to_json()}
        table = format_davis_table(result)
    else:
        raise DataError("nothing to evaluate: pass --gt and --pred (YouTube-VIS) or --davis and --pred-masks")
    print(json.dumps(payload, indent=1) if args.json else table)
    if args.out:
        save_config(config_from_args(args), args.out)
        path = atomic_write_json(args.out / "metrics.json", payload)
        log.info("wrote %s", path)
    return 0
