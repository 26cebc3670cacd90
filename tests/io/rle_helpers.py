"""Uncompressed COCO RLE written by hand (the format of the official YouTube-VIS files)."""

import numpy as np


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of the column-major flattened mask, starting with a (possibly empty) run of zeros."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *runs] if flat[0] else runs
