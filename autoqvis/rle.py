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
    "counts_errors",
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

    Raises ValueError on a size mismatch or an unknown format. A compressed string is passed on as it is:
    readers validate all of a file's strings at once with :func:`counts_errors`.
    """
    if isinstance(segmentation, list):  # polygons: [[x0, y0, x1, y1, ...], ...]
        if not segmentation or not all(isinstance(p, list) and len(p) >= 6 for p in segmentation):
            raise ValueError("polygons must be a non-empty list of [x0, y0, x1, y1, x2, y2, ...] lists")
        _check_polygons(segmentation, height, width)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = [int(v) for v in segmentation["size"]]
        if size != [height, width]:
            raise ValueError(f"RLE size {size} disagrees with the video size [{height}, {width}]")
        if isinstance(segmentation["counts"], list):
            counts = segmentation["counts"]
            if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1 << 32 for c in counts):
                raise ValueError("uncompressed RLE counts must be non-negative integers")
            if sum(counts) != height * width:
                raise ValueError(
                    f"uncompressed RLE counts sum to {sum(counts)}, expected H*W = {height * width}"
                )
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation["counts"], str):
            return {"size": [height, width], "counts": segmentation["counts"]}  # as is: see counts_errors
        elif isinstance(segmentation["counts"], bytes):
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


# ---------------------------------------------------------------------------------------------------
# validating compressed counts without decoding the masks

_CHUNK_CHARS = 1 << 16  # characters validated per numpy pass: the arrays stay in the CPU cache
_MAX_DIGITS = 7  # 7 x 5 bits hold any 32-bit run length


def counts_errors(
    counts: Sequence[str | bytes], sizes: Sequence[Sequence[int]] | np.ndarray
) -> list[tuple[int, str]]:
    """Check compressed RLE ``counts`` strings against their declared ``[H, W]``: ``(index, reason)`` for each
    invalid one, in order.

    The COCO string format (pycocotools ``rleFrString``): each run length is written in 5-bit digits, one
    character each (value + 48), least significant first; 0x20 marks that another digit follows and 0x10 on
    the last digit makes the number negative; from the fourth number on, each is stored as the difference to
    the one two places earlier. Valid: only characters '0'..'o', no number cut off, no number over 32 bits,
    every run length >= 0 and their sum H*W. Vectorised over all strings (no mask is decoded), so validating a
    YouTube-VIS-sized file costs a fraction of reading it."""
    errors: list[tuple[int, str]] = []
    ends = np.cumsum(np.fromiter(map(len, counts), np.int64, len(counts)))
    sizes = np.asarray(sizes, np.int64).reshape(len(counts), 2)
    start = 0
    while start < len(counts):  # chunks of about _CHUNK_CHARS characters, at least one string each
        done = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, done + _CHUNK_CHARS, side="right")), start + 1)
        errors += [(start + i, r) for i, r in _counts_errors(counts[start:stop], sizes[start:stop])]
        start = stop
    return errors


def _counts_errors(counts: Sequence[str | bytes], sizes: np.ndarray) -> list[tuple[int, str]]:
    n = len(counts)
    reason: dict[int, str] = {}
    try:  # the common case: every string ASCII, encoded in one call
        joined = "".join(counts).encode("ascii")
        lens = np.fromiter(map(len, counts), np.int64, n)
    except (UnicodeEncodeError, TypeError):
        encoded = []
        for i, c in enumerate(counts):
            try:
                encoded.append(c.encode("ascii") if isinstance(c, str) else bytes(c))
            except UnicodeEncodeError:
                reason[i] = "it holds non-ASCII characters"
                encoded.append(b"")
        joined = b"".join(encoded)
        lens = np.fromiter(map(len, encoded), np.int64, n)
    char_end = np.cumsum(lens)  # one past each string's last character

    def flag(char_positions: np.ndarray, why: str) -> None:  # rare: only for invalid strings
        for i in np.unique(np.searchsorted(char_end, char_positions, side="right")):
            reason.setdefault(int(i), why)

    digits = np.frombuffer(joined, np.uint8) - np.uint8(48)  # wraps below '0' to > 63
    bad = digits > 63
    if bad.any():
        flag(np.flatnonzero(bad), "a character outside '0'..'o'")
        digits = np.where(bad, np.uint8(0), digits)
    more = (digits & 0x20) != 0
    last = char_end[lens > 0] - 1
    if more[last].any():
        flag(last[more[last]], "it stops in the middle of a number")
    ends = ~more
    ends[last] = True  # a string's last character ends its last number
    # the numbers: first and last character, extra digits, value (5 bits a digit, least significant first)
    end_at = np.flatnonzero(ends)
    start_at = np.empty_like(end_at)
    start_at[:1] = 0
    np.add(end_at[:-1], 1, out=start_at[1:])
    extra = end_at - start_at  # digits after the first
    values = (digits[start_at] & 0x1F).astype(np.int64)
    longer = np.flatnonzero(extra)
    if len(longer):
        if extra[longer].max() >= _MAX_DIGITS:
            flag(end_at[extra >= _MAX_DIGITS], "a number longer than 32 bits")
            extra = np.minimum(extra, _MAX_DIGITS - 1)
        for p in range(1, int(extra[longer].max()) + 1):
            has = longer[extra[longer] >= p]
            values[has] += (digits[start_at[has] + p] & 0x1F).astype(np.int64) << (5 * p)
    negative = np.flatnonzero(digits[end_at] & 0x10)  # the sign bit of the last digit
    values[negative] -= np.int64(1) << (5 * (extra[negative] + 1))
    # from the fourth number of a string on, each is the difference to the number two places earlier: two
    # cumulative sums (the odd numbers; the even ones from the third), restarted at each string's first number
    per_string = np.diff(np.searchsorted(end_at, char_end), prepend=0)
    first = np.cumsum(per_string) - per_string  # index of each string's first number
    first_of = np.repeat(first, per_string)
    index = np.arange(len(end_at)) - first_of
    odd = (index & 1).astype(bool)
    even = ~odd & (index >= 2)
    odd_sums = np.cumsum(values * odd)
    even_sums = np.cumsum(values * even)
    runs = np.where(
        odd, odd_sums - odd_sums[first_of], np.where(even, even_sums - even_sums[first_of], values)
    )
    if ((runs < 0) | (runs >= 1 << 32)).any():
        flag(end_at[runs < 0], "a negative run length")
        flag(end_at[runs >= 1 << 32], "a run length over 32 bits")
    totals = np.concatenate(([0], np.cumsum(runs)))
    covered = totals[first + per_string] - totals[first]
    expected = sizes[:, 0] * sizes[:, 1]
    for i in np.flatnonzero(covered != expected):
        reason.setdefault(int(i), f"the runs cover {int(covered[i])} pixels, not H*W = {int(expected[i])}")
    return sorted(reason.items())


def _check_polygons(polygons: list[list], height: int, width: int) -> None:
    """Coordinates pycocotools can rasterise: pairs of finite numbers near the frame (NaN or far-away points
    crash or exhaust its C code)."""
    side = max(height, width)
    for p in polygons:
        if len(p) % 2:
            raise ValueError(f"a polygon needs an even number of coordinates (x, y pairs), got {len(p)}")
        for v in p:
            if isinstance(v, bool) or not isinstance(v, int | float) or not -side <= v <= 2 * side:
                raise ValueError(
                    f"polygon coordinates must be numbers within [{-side}, {2 * side}] (the frame is "
                    f"{width}x{height}), got {v!r}"
                )


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
