"""Hand-made tracks on an 8 x 8 frame for the selection and pick tests: each mask a band of rows 2-5."""

import numpy as np

from autoqvis import rle
from autoqvis.structures import Track

H, W = 8, 8


def mask(x0: int, x1: int) -> dict:
    """The RLE of rows 2-5, columns x0..x1-1."""
    m = np.zeros((H, W), bool)
    m[2:6, x0:x1] = True
    return rle.encode(m)


def track(spans, score: float = 0.9, q: float = 0.9) -> Track:
    """One mask per (x0, x1) span (None: no mask in that frame), the same predicted IoU ``q`` in every frame."""
    masks = [None if s is None else mask(*s) for s in spans]
    return Track(masks=masks, score=score, predicted_iou=[q] * len(spans))
