"""Dense-CRF refinement of predicted masks on their frames (not in the official code; ``inference.crf_short_side``).

The small models' masks are decoded at a quarter of a low input resolution, so their edges are coarse; the same
dense CRF that MaskCut applies to its cuts (:func:`autoqvis.discover.crf.densecrf`, the official constants)
snaps them to the image's colour edges. Each frame is read once more, resized to ``short_side`` (the CRF's
pairwise terms are in pixels: the official constants suit a few hundred pixels), every track's non-empty mask
in it is refined there, on its bounding box grown by ``CROP_MARGIN`` pixels (a CRF on the whole frame cost
0.36 s per mask at short side 320; far from the mask nothing changes), holes filled as discovery does, and
resized back to the original size; a mask the CRF empties stays as predicted. Frames are streamed, so memory
does not grow with the video.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

from autoqvis import rle
from autoqvis.discover.crf import densecrf
from autoqvis.io.video import VideoSource
from autoqvis.structures import Track

__all__ = ["crf_refine_tracks"]

CROP_MARGIN = 48  # pixels around a mask's box at the CRF's resolution (the bilateral kernel's std is 50)


def _resize(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) bool -> (H, W) bool, bilinear on 0/255 then thresholded at half."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(image) > 127


def _refine_around(image: np.ndarray, mask: np.ndarray, margin: int = CROP_MARGIN) -> np.ndarray:
    """The CRF of ``mask`` on ``image`` (same (h, w)), run on the mask's bounding box grown by ``margin``
    pixels (the bilateral term's range): the pixels far from the mask stay background, and a small mask costs
    a small CRF. Holes are filled, as discovery does."""
    out = np.zeros(mask.shape, bool)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return out
    y0, y1 = max(rows[0] - margin, 0), rows[-1] + margin + 1
    x0, x1 = max(cols[0] - margin, 0), cols[-1] + margin + 1
    crop = densecrf(np.ascontiguousarray(image[y0:y1, x0:x1]), mask[y0:y1, x0:x1]) > 0.5
    out[y0:y1, x0:x1] = ndimage.binary_fill_holes(crop)
    return out


def crf_refine_tracks(tracks: list[Track], source: VideoSource, short_side: int) -> list[Track]:
    """The tracks with every non-empty mask refined by a dense CRF on ``source``'s frames at ``short_side``
    (new tracks; the inputs are not modified). Masks are at the original frame size."""
    frames = copy.copy(source)
    frames.short_side = short_side
    masks = [list(t.masks) for t in tracks]
    for t, frame in enumerate(frames):
        image = frame
        small_hw = image.shape[:2]
        for k, track in enumerate(tracks):
            m = track.masks[t]
            if m is None or rle.area(m) == 0:
                continue
            full = rle.decode(m)
            refined = _refine_around(image, _resize(full, small_hw))
            if refined.any():
                masks[k][t] = rle.encode(_resize(refined, full.shape))
    return [dataclasses.replace(track, masks=m) for track, m in zip(tracks, masks, strict=True)]
