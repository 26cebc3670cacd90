"""Dense-CRF refinement of predicted masks: coarse masks snap to the object's edges; empty frames stay empty."""

import importlib.util

import numpy as np
import pytest
from PIL import Image

from autoqvis import rle
from autoqvis.io.video import FrameFolder
from autoqvis.predict.refine import crf_refine_tracks
from autoqvis.structures import Track

pytestmark = pytest.mark.skipif(importlib.util.find_spec("pydensecrf") is None, reason="needs the crf extra")


def test_coarse_masks_snap_to_the_object(tmp_path):
    H, W = 96, 128
    yy, xx = np.mgrid[:H, :W]
    disk = (yy - 48) ** 2 + (xx - 60) ** 2 < 25**2
    for t in range(2):
        frame = np.full((H, W, 3), 40, np.uint8)
        frame[disk] = (220, 60, 40)
        Image.fromarray(frame).save(tmp_path / f"{t:05d}.png")
    coarse = np.zeros((H, W), bool)
    coarse[16:84, 28:96] = True  # the disk's bounding box, blown up by 7 px: IoU ~0.5
    track = Track(masks=[rle.encode(coarse), None], score=0.9)
    (refined,) = crf_refine_tracks([track], FrameFolder(tmp_path), short_side=96)
    mask = rle.decode(refined.masks[0])
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert (coarse & disk).sum() / (coarse | disk).sum() < 0.7 < iou
    assert refined.masks[1] is None and track.masks[0] == rle.encode(coarse)  # inputs untouched
