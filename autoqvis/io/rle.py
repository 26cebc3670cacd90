"""COCO run-length encoding through pycocotools: encode, decode, areas, IoUs, polygon conversion.

Canonical form in memory and in our JSON: compressed RLE ``{"size": [H, W], "counts": str}``. Uncompressed
RLE (``counts`` as a list, as in the official YouTube-VIS files) and polygons are accepted on input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "area",
    "decode",
    "decode_stack",
    "encode",
    "encode_stack",
    "frame_ious",
    "frame_overlaps",
    "iou_matrix",
    "is_region_sized",
    "to_compressed",
    "to_pycocotools",
    "touched_borders",
    "video_ious",
]

RLE = dict[str, Any]


def encode(mask: np.ndarray) -> RLE:
    """(H, W) bool/uint8 -> compressed RLE with ``counts`` as str."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_stack(masks: np.ndarray) -> list[RLE]:
    """(T, H, W) -> T compressed RLEs, encoded in one pycocotools call."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got {masks.shape}")
    if masks.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles
    ]


def decode(rle: RLE) -> np.ndarray:
    """Compressed RLE -> (H, W) bool."""
    return mask_utils.decode(to_pycocotools(rle)).astype(bool)


def decode_stack(rles: Sequence[RLE]) -> np.ndarray:
    """T compressed RLEs of one size -> (T, H, W) bool."""
    if not rles:
        raise ValueError("decode_stack needs at least one RLE")
    return mask_utils.decode([to_pycocotools(r) for r in rles]).transpose(2, 0, 1).astype(bool)


def area(rle: RLE) -> int:
    return int(mask_utils.area(to_pycocotools(rle)))


def to_compressed(segmentation: Any, height: int, width: int) -> RLE:
    """Polygon list, uncompressed RLE or compressed RLE -> compressed RLE of size (height, width).

    Raises ValueError on a size mismatch or an unknown format.
    """
    if isinstance(segmentation, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
        if not segmentation or not all(isinstance(p, list) and len(p) >= 6 for p in segmentation):
            raise ValueError("polygons must be a non-empty list of [x0, y0, x1, y1, x2, y2, ...] lists")
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} disagrees with the video size [{height}, {width}]")
        if isinstance(segmentation["counts"], list):
            counts = segmentation["counts"]
            if sum(counts) != height * width:
                raise ValueError(
                    f"uncompressed RLE counts sum to {sum(counts)}, expected H*W = {height * width}"
                )
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation["counts"], str | bytes):
            rle = to_pycocotools(segmentation)
        else:
            raise ValueError(
                f"RLE counts must be a list or a string, got {type(segmentation['counts']).__name__}"
            )
    else:
        raise ValueError("a segmentation must be a polygon list, an RLE dict with size and counts, or null")
    counts = rle["counts"]
    return {
        "size": [height, width],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def iou_matrix(a: Sequence[RLE], b: Sequence[RLE]) -> tuple[np.ndarray, np.ndarray]:
    """Intersections and unions of every pair: two (len(a), len(b)) float64 arrays (pixel counts)."""
    if not a or not b:
        return np.zeros((len(a), len(b))), np.zeros((len(a), len(b)))
    ca, cb = [to_pycocotools(r) for r in a], [to_pycocotools(r) for r in b]
    iou = mask_utils.iou(ca, cb, [0] * len(cb))
    area_a = mask_utils.area(ca).astype(np.float64)[:, None]
    area_b = mask_utils.area(cb).astype(np.float64)[None, :]
    # iou = I / (A + B - I)  =>  I = iou * (A + B) / (1 + iou)
    inter = np.rint(iou * (area_a + area_b) / (1.0 + iou))
    return inter, area_a + area_b - inter


def to_pycocotools(rle: RLE) -> dict:
    """The form pycocotools wants: ``counts`` as bytes (ours are str)."""
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def frame_overlaps(
    a: Sequence[Sequence[RLE | None]], b: Sequence[Sequence[RLE | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame intersection and union pixel counts of two groups of tracks, each track a list of per-frame
    masks (``None`` where absent): two (len(a), len(b), T) float64 arrays, exact integers.

    A frame where only one track is present adds that mask's area to the union; where neither is, 0."""
    A, B = len(a), len(b)
    T = len(a[0]) if A else len(b[0]) if B else 0
    inter, union = np.zeros((A, B, T)), np.zeros((A, B, T))
    if A == 0 or B == 0:
        return inter, union
    for t in range(T):
        ia = [i for i in range(A) if a[i][t] is not None]
        ib = [j for j in range(B) if b[j][t] is not None]
        ra = [to_pycocotools(a[i][t]) for i in ia]
        rb = [to_pycocotools(b[j][t]) for j in ib]
        area_a, area_b = np.zeros(A), np.zeros(B)
        if ia:
            area_a[ia] = mask_utils.area(ra)
        if ib:
            area_b[ib] = mask_utils.area(rb)
        if ia and ib:
            iou = np.asarray(mask_utils.iou(ra, rb, [0] * len(rb)))
            sums = area_a[ia][:, None] + area_b[ib][None, :]
            # iou = I / (A + B - I)  =>  I = iou * (A + B) / (1 + iou), rounded to the exact pixel count
            inter[np.ix_(ia, ib, [t])] = np.rint(iou * sums / (1.0 + iou))[:, :, None]
        union[:, :, t] = area_a[:, None] + area_b[None, :] - inter[:, :, t]
    return inter, union


def frame_ious(a: Sequence[Sequence[RLE | None]], b: Sequence[Sequence[RLE | None]]) -> np.ndarray:
    """(len(a), len(b), T) per-frame mask IoU of two groups of tracks; 0 where either mask is absent."""
    inter, union = frame_overlaps(a, b)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def video_ious(a: Sequence[Sequence[RLE | None]], b: Sequence[Sequence[RLE | None]]) -> np.ndarray:
    """(len(a), len(b)) spatio-temporal IoU: intersections summed over frames / unions summed over frames
    (the YouTube-VIS track IoU)."""
    inter, union = frame_overlaps(a, b)
    inter, union = inter.sum(axis=2), union.sum(axis=2)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def touched_borders(mask: np.ndarray) -> int:
    """How many of the 4 image borders an (H, W) mask touches (0 for an empty mask)."""
    if not mask.any():
        return 0
    return int(mask[0].any()) + int(mask[-1].any()) + int(mask[:, 0].any()) + int(mask[:, -1].any())


def is_region_sized(mask: np.ndarray, max_area: float, max_borders: int) -> bool:
    """True for a mask that looks like a background region rather than an object: it covers more than
    ``max_area`` of the image or touches more than ``max_borders`` of its borders."""
    if max_area >= 1.0 and max_borders >= 4:
        return False
    return bool(mask.mean() > max_area or touched_borders(mask) > max_borders)
