"""DAVIS J&F: region similarity J and boundary accuracy F, per sequence and overall.

Exact to the DAVIS toolkits (davis2017-evaluation ``metrics.py`` / ``utils.py`` / ``evaluation.py``):

- J = |A n B| / |A u B| per frame, void pixels excluded, 1 when both masks are empty;
- F = harmonic mean of the boundary precision and recall, a boundary pixel counting as matched when the other
  boundary lies within a disk of radius ceil(0.008 x image diagonal) (8 px at 854x480); boundaries from the
  toolkit's ``seg2bmap`` rule; precision/recall conventions for empty boundaries as the toolkit;
- per object: mean (M), recall (fraction of frames above 0.5, R) and decay (D) over four temporal bins;
- J&F-Mean = (mean over objects of J-M + mean over objects of F-M) / 2.

Protocols:

- ``2016`` (single object, semi-supervised DAVIS-2016): the foreground is every non-zero pixel of both masks;
  the statistics leave out the first and last frame, as the official toolkit does (``keep_first_last=True``
  keeps them);
- ``2017-unsupervised``: up to 20 proposals per sequence, each matched to at most one ground-truth object by
  the Hungarian algorithm on the mean over frames of (J + F) / 2; an unmatched object scores 0; every frame
  counts.

One deliberate difference: the toolkit computes the decay bins with ``uint8`` frame indices, which wrap past
255 frames; we use ordinary integers (identical below 256 frames).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from autoqvis.config import EvaluationConfig
from autoqvis.errors import DataError
from autoqvis.io.davis import (
    VOID_ID,
    annotation_folder,
    check_annotated_frames,
    image_folder,
    read_id_masks,
    sequence_names,
)
from autoqvis.progress import progress_bar

__all__ = [
    "DavisResult",
    "ObjectScore",
    "boundary_map",
    "db_statistics",
    "evaluate_davis_folders",
    "evaluate_sequence_2016",
    "evaluate_sequence_unsupervised",
    "f_measure",
    "format_davis_table",
    "jaccard",
]


# ---------------------------------------------------------------------------------------------------
# per-frame measures


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """(T,) region similarity of (T, H, W) boolean masks (one (H, W) pair gives a 0-d array)."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    valid = np.ones_like(gt) if void is None else ~np.asarray(void, bool)
    inter = np.count_nonzero(gt & pred & valid, axis=(-2, -1))
    union = np.count_nonzero((gt | pred) & valid, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool boundary of a mask, the toolkit's ``seg2bmap`` rule: a pixel differing from its right,
    lower or lower-right neighbour (last row and column compared along themselves only)."""
    seg = np.asarray(mask, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def f_measure(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = EvaluationConfig.davis_bound_th,
) -> np.ndarray:
    """(T,) boundary F-measure of (T, H, W) boolean masks; ``bound_th`` < 1 is a fraction of the diagonal,
    >= 1 a radius in pixels."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    squeeze = gt.ndim == 2
    if squeeze:
        gt, pred = gt[None], pred[None]
    valid = None if void is None else ~np.broadcast_to(np.asarray(void, bool), gt.shape)
    h, w = gt.shape[-2:]
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(h, w))
    kernel = _disk(int(radius))
    out = np.empty(len(gt))
    for t in range(len(gt)):
        g, p = gt[t], pred[t]
        if valid is not None:
            g, p = g & valid[t], p & valid[t]
        gb, pb = boundary_map(g), boundary_map(p)
        n_g, n_p = int(gb.sum()), int(pb.sum())
        if n_p == 0 and n_g > 0:
            precision, recall = 1.0, 0.0
        elif n_p > 0 and n_g == 0:
            precision, recall = 0.0, 1.0
        elif n_p == 0 and n_g == 0:
            precision, recall = 1.0, 1.0
        else:
            # only boundary pixels are counted, so the dilations need only the boxes around them, with a
            # margin of the disk's radius (the same counts as on the whole frame, much less work)
            gb, pb = _around(gb | pb, int(radius), gb, pb)
            g_dil = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
            p_dil = cv2.dilate(pb.astype(np.uint8), kernel).astype(bool)
            precision = np.count_nonzero(pb & g_dil) / n_p
            recall = np.count_nonzero(gb & p_dil) / n_g
        out[t] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out[0] if squeeze else out


def _around(where: np.ndarray, margin: int, *maps: np.ndarray) -> tuple[np.ndarray, ...]:
    """``maps`` cropped to the bounding box of ``where`` (non-empty) grown by ``margin`` on every side."""
    rows, cols = np.flatnonzero(where.any(axis=1)), np.flatnonzero(where.any(axis=0))
    y0, y1 = max(rows[0] - margin, 0), rows[-1] + margin + 1
    x0, x1 = max(cols[0] - margin, 0), cols[-1] + margin + 1
    return tuple(m[y0:y1, x0:x1] for m in maps)


def db_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay (first temporal quarter minus last) of per-frame values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


# ---------------------------------------------------------------------------------------------------
# sequences


@dataclass
class ObjectScore:
    """One ground-truth object of one sequence: per-frame J and F and their statistics."""

    sequence: str
    object_id: int
    j: np.ndarray
    f: np.ndarray
    proposal: int | None = None  # the matched proposal id (unsupervised protocol)

    def stats(self) -> dict[str, float]:
        jm, jr, jd = db_statistics(self.j)
        fm, fr, fd = db_statistics(self.f)
        return {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd}

    @property
    def name(self) -> str:
        return f"{self.sequence}_{self.object_id}"


def evaluate_sequence_2016(
    name: str,
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    keep_first_last: bool = EvaluationConfig.davis_keep_first_last,
    bound_th: float = EvaluationConfig.davis_bound_th,
) -> ObjectScore:
    """Single-object protocol on (T, H, W) masks (non-zero = foreground)."""
    gt, pred = np.asarray(gt) > 0, np.asarray(pred) > 0
    if not keep_first_last:
        if len(gt) < 3:
            raise DataError(
                f"sequence {name}: {len(gt)} frames; the DAVIS-2016 protocol leaves out the first and last "
                "frame and needs at least 3 (set evaluation.davis_keep_first_last=true to keep them)"
            )
        gt, pred = gt[1:-1], pred[1:-1]
    return ObjectScore(name, 1, jaccard(gt, pred), f_measure(gt, pred, bound_th=bound_th))


def evaluate_sequence_unsupervised(
    name: str,
    gt_ids: np.ndarray,
    proposal_ids: np.ndarray,
    *,
    max_proposals: int = EvaluationConfig.davis_max_proposals,
    bound_th: float = EvaluationConfig.davis_bound_th,
) -> list[ObjectScore]:
    """DAVIS-2017 unsupervised protocol on (T, H, W) id maps (255 = void in the ground truth)."""
    gt_ids, proposal_ids = np.asarray(gt_ids), np.asarray(proposal_ids)
    void = gt_ids == VOID_ID
    gt_ids = np.where(void, 0, gt_ids)
    objects = int(gt_ids.max(initial=0))
    proposals = int(np.where(proposal_ids == VOID_ID, 0, proposal_ids).max(initial=0))
    if proposals > max_proposals:
        raise DataError(
            f"sequence {name}: {proposals} proposals, the DAVIS-2017 unsupervised protocol allows at most "
            f"{max_proposals} per sequence (evaluation.davis_max_proposals); keep the highest-scoring ones"
        )
    if objects == 0:
        return []
    n = max(proposals, objects)  # missing proposals are empty masks, as the toolkit pads them
    j = np.zeros((n, objects, len(gt_ids)))
    f = np.zeros_like(j)
    for o in range(objects):
        g = gt_ids == o + 1
        for p in range(n):
            q = proposal_ids == p + 1
            j[p, o] = jaccard(g, q, void)
            f[p, o] = f_measure(g, q, void, bound_th)
    score = (j.mean(axis=2) + f.mean(axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    out = []
    for p, o in sorted(zip(rows, cols, strict=True), key=lambda pair: pair[1]):
        out.append(ObjectScore(name, int(o) + 1, j[p, o], f[p, o], proposal=int(p) + 1))
    return out


# ---------------------------------------------------------------------------------------------------
# datasets


@dataclass
class DavisResult:
    protocol: str
    objects: list[ObjectScore] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        if not self.objects:
            return {}
        rows = [o.stats() for o in self.objects]
        keys = rows[0].keys()
        means = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        return {"J&F-Mean": (means["J-Mean"] + means["F-Mean"]) / 2, **means}

    def per_sequence(self) -> dict[str, dict[str, float]]:
        """Mean J, F and J&F over each sequence's objects."""
        out: dict[str, dict[str, float]] = {}
        for seq in dict.fromkeys(o.sequence for o in self.objects):
            rows = [o.stats() for o in self.objects if o.sequence == seq]
            jm = float(np.mean([r["J-Mean"] for r in rows]))
            fm = float(np.mean([r["F-Mean"] for r in rows]))
            out[seq] = {"J&F-Mean": (jm + fm) / 2, "J-Mean": jm, "F-Mean": fm, "objects": len(rows)}
        return out

    def to_json(self) -> dict:
        return {
            "summary": self.summary(),
            "sequences": self.per_sequence(),
            "objects": {o.name: {**o.stats(), "proposal": o.proposal} for o in self.objects},
        }


def evaluate_davis_folders(
    davis_root: str | Path,
    pred_root: str | Path,
    *,
    protocol: str = "2016",
    config: EvaluationConfig | None = None,
    sequences: Sequence[str] | None = None,
    progress: bool = True,
) -> DavisResult:
    """Evaluate ``pred_root/<seq>/<frame>.png`` against a DAVIS root's annotations.

    Every ground-truth frame needs a predicted PNG of the same name, and every frame of a sequence in the
    root's ``JPEGImages`` needs its annotation (a missing one is refused, not left out of the score). For ``2016`` the predicted foreground is
    every non-zero pixel; for ``2017-unsupervised`` each non-zero id is one proposal.
    """
    cfg = config or EvaluationConfig()
    if protocol not in ("2016", "2017-unsupervised"):
        raise DataError(f"unknown DAVIS protocol {protocol!r}; expected '2016' or '2017-unsupervised'")
    gt_folder = annotation_folder(davis_root)
    pred_root = Path(pred_root)
    if not pred_root.is_dir():
        problem = "is a file, not a folder" if pred_root.exists() else "not found"
        raise DataError(f"{pred_root} {problem}; expected a folder of <sequence>/<frame>.png predictions")
    names = list(sequences) if sequences is not None else sequence_names(gt_folder)
    if not names:
        raise DataError(f"{gt_folder}: no sequence to evaluate (no <sequence>/NNNNN.png folder)")
    images = image_folder(davis_root, gt_folder)
    if images is not None:
        for seq in names:
            check_annotated_frames(images, gt_folder, seq)
    missing = [s for s in names if not (pred_root / s).is_dir()]
    if missing:
        raise DataError(
            f"{pred_root}: no predictions for {len(missing)} of {len(names)} sequences (first: {missing[0]}); "
            "expected one folder of PNG masks per sequence"
        )
    result = DavisResult(protocol)
    with progress_bar("DAVIS J&F", total=len(names), enabled=progress) as bar:
        for seq in names:
            gt, frames = read_id_masks(gt_folder / seq)
            pred, _ = read_id_masks(pred_root / seq, frames)
            if pred.shape != gt.shape:
                raise DataError(
                    f"{pred_root / seq}: masks are {pred.shape[1]}x{pred.shape[2]}, the ground truth "
                    f"{gt.shape[1]}x{gt.shape[2]}; predict at the annotation resolution"
                )
            if protocol == "2016":
                gt_fg = (gt > 0) & (gt != VOID_ID)
                result.objects.append(
                    evaluate_sequence_2016(
                        seq,
                        gt_fg,
                        pred,
                        keep_first_last=cfg.davis_keep_first_last,
                        bound_th=cfg.davis_bound_th,
                    )
                )
            else:
                result.objects.extend(
                    evaluate_sequence_unsupervised(
                        seq, gt, pred, max_proposals=cfg.davis_max_proposals, bound_th=cfg.davis_bound_th
                    )
                )
            bar.advance()
    return result


def format_davis_table(result: DavisResult) -> str:
    """Per-sequence J&F, J, F and the overall summary, as plain text (x100)."""
    lines = [f"DAVIS {result.protocol}", f"{'sequence':<24} {'J&F':>7} {'J':>7} {'F':>7}"]
    for seq, row in result.per_sequence().items():
        lines.append(
            f"{seq:<24} {100 * row['J&F-Mean']:7.2f} {100 * row['J-Mean']:7.2f} {100 * row['F-Mean']:7.2f}"
        )
    summary = result.summary()
    if summary:
        lines.append("-" * 48)
        lines.append(
            f"{'mean':<24} {100 * summary['J&F-Mean']:7.2f} {100 * summary['J-Mean']:7.2f} {100 * summary['F-Mean']:7.2f}"
        )
        lines.append(
            "J recall {:.2f}  J decay {:.2f}  F recall {:.2f}  F decay {:.2f}".format(
                *(100 * summary[k] for k in ("J-Recall", "J-Decay", "F-Recall", "F-Decay"))
            )
        )
    return "\n".join(lines)
