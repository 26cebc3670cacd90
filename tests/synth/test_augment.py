import numpy as np
import torch

from autoqvis.config import SynthesisConfig
from autoqvis.synth.augment import PAD_VALUE, clip_augment


def _clip(T=3, h=200, w=260):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(T)]
    masks = np.zeros((2, T, h, w), bool)
    masks[0, :, 20:80, 30:120] = True
    masks[1, :, 100:180, 150:240] = True
    return frames, masks


def test_deterministic_clipwide_short_side_and_masks_follow_the_frames():
    cfg = SynthesisConfig(crop_min=150, crop_max=190, short_sides=(96, 128))
    aug = clip_augment(cfg)
    frames, masks = _clip()
    a = aug(frames, masks, np.random.default_rng(5))
    b = aug(frames, masks, np.random.default_rng(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = aug(frames, masks, np.random.default_rng(6))
    assert not torch.equal(a[0], c[0])
    video, m = a
    assert video.dtype == torch.uint8 and m.dtype == torch.bool
    assert m.shape[:2] == (2, 3) and m.shape[2:] == video.shape[2:]
    assert min(video.shape[2:]) in (96, 128)  # the clip-wide short side (frames are padded to the largest)
    assert not (m[0] & m[1]).any()  # objects stay disjoint
    assert m.any(dim=(2, 3)).all()  # both objects visible in every frame at this crop size


def test_small_frames_are_not_cropped_and_padding_uses_the_pixel_mean():
    cfg = SynthesisConfig(
        short_sides=(64,), rotation=(0.0, 0.0), brightness=(1.0, 1.0), contrast=(1.0, 1.0), flip_prob=0.0
    )
    frames, masks = _clip(T=2, h=64, w=80)
    video, m = clip_augment(cfg)(frames, masks, np.random.default_rng(0))
    assert tuple(video.shape) == (2, 3, 64, 80)  # crop range above the frame size: the whole frame
    np.testing.assert_array_equal(video[0].permute(1, 2, 0).numpy(), frames[0])
    assert torch.equal(m, torch.from_numpy(masks))
    assert len(PAD_VALUE) == 3
