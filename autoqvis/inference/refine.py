"""Dense-CRF refinement of predicted masks on their frames (not in the official code; ``inference.crf_short_side``).

The small models' masks are decoded at a quarter of a low input resolution, so their edges are coarse; the same
dense CRF that MaskCut applies to its cuts (:func:`autoqvis.discover.crf.densecrf`, the official constants)
snaps them to the image's colour edges. Each frame is read once more, resized to ``short_side`` (the CRF's
pairwise terms are in pixels: the official constants suit a few hundred pixels), every track's non-empty mask
in it is refined there (holes filled, as discovery does) and resized back to the original size; a mask the CRF
empties stays as predicted. Frames are streamed, so memory does not grow with the video.
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


def _resize(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(h, w) bool -> (H, W) bool, bilinear on 0/255 then thresholded at half."""
    image = Image.fromarray(mask.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.BILINEAR)
    return np.asarray(image) > 127


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
            refined = ndimage.binary_fill_holes(densecrf(image, _resize(full, small_hw)) > 0.5)
            if refined.any():
                masks[k][t] = rle.encode(_resize(refined, full.shape))
    return [dataclasses.replace(track, masks=m) for track, m in zip(tracks, masks, strict=True)]
