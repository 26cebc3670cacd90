"""The official per-frame training augmentation ("the motion" of ImageCut2Video), for every training clip.

In order (``data_video/augmentation.py``):

1. random crop, **independent per frame**: height and width each uniform in [crop_min, crop_max] (at most
   the frame's own size, detectron2's ``absolute_range``), at a uniform position;
2. resize the short side to one size chosen for the whole clip from ``short_sides`` (long side <= max_size);
3. horizontal flip with probability ``flip_prob``, for the whole clip;
4. per frame: brightness x U(0.9, 1.1), contrast (blend with the mean) x U(0.9, 1.1), rotation by U(-15, 15)
   degrees about a centre drawn in [0.4, 0.6]^2 of the frame, without expanding (bilinear image, nearest masks).

Frames of one clip may end up with different sizes (independent crops); they are padded bottom/right to the
largest one with the pixel mean (so that the padding normalises to ~0, as the model's own zero padding after
normalisation), masks with False. Deterministic given the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from autoqvis.config import SynthesisConfig
from autoqvis.io.video import resized_hw

__all__ = ["clip_augment"]

PAD_VALUE = (124, 116, 104)  # the RGB pixel mean (123.675, 116.28, 103.53), rounded


def _crop(frame: np.ndarray, masks: np.ndarray, lo: int, hi: int, rng: np.random.Generator):
    h, w = frame.shape[:2]
    ch = int(rng.integers(min(h, lo), min(h, hi) + 1))
    cw = int(rng.integers(min(w, lo), min(w, hi) + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    return frame[y0 : y0 + ch, x0 : x0 + cw], masks[:, y0 : y0 + ch, x0 : x0 + cw]


def _photometric(frame: np.ndarray, cfg: SynthesisConfig, rng: np.random.Generator) -> np.ndarray:
    img = frame.astype(np.float32) * rng.uniform(*cfg.brightness)
    w = rng.uniform(*cfg.contrast)
    img = img * w + img.mean() * (1 - w)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rotate(frame: np.ndarray, masks: np.ndarray, cfg: SynthesisConfig, rng: np.random.Generator):
    angle = rng.uniform(*cfg.rotation)
    h, w = frame.shape[:2]
    cx, cy = rng.uniform(*cfg.rotation_center) * w, rng.uniform(*cfg.rotation_center) * h
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    img = cv2.warpAffine(
        frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    out = np.zeros_like(masks)
    for i, m in enumerate(masks):
        out[i] = (
            cv2.warpAffine(m.astype(np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
        )
    return img, out


def clip_augment(cfg: SynthesisConfig):
    """``augment(frames: list of (H, W, 3) uint8, masks: (N, T, H, W) bool, rng) -> (frames (T, 3, H', W')
    uint8 tensor, masks (N, T, H', W') bool tensor)``."""

    def augment(frames: list[np.ndarray], masks: np.ndarray, rng: np.random.Generator):
        short = int(rng.choice(cfg.short_sides))
        flip = rng.random() < cfg.flip_prob
        out_frames, out_masks = [], []
        for t, frame in enumerate(frames):
            img, m = _crop(frame, masks[:, t], cfg.crop_min, cfg.crop_max, rng)
            h, w = resized_hw(img.shape[0], img.shape[1], short, cfg.max_size)
            if (h, w) != img.shape[:2]:
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
                m = (
                    np.stack(
                        [
                            cv2.resize(x.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
                            for x in m
                        ]
                    )
                    if len(m)
                    else np.zeros((0, h, w), bool)
                )
            if flip:
                img, m = img[:, ::-1], m[:, :, ::-1]
            img = _photometric(np.ascontiguousarray(img), cfg, rng)
            img, m = _rotate(img, np.ascontiguousarray(m), cfg, rng)
            out_frames.append(img)
            out_masks.append(m)
        H = max(f.shape[0] for f in out_frames)
        W = max(f.shape[1] for f in out_frames)
        N = masks.shape[0]
        video = np.empty((len(frames), H, W, 3), np.uint8)
        video[:] = PAD_VALUE
        mask_out = np.zeros((N, len(frames), H, W), bool)
        for t, (f, m) in enumerate(zip(out_frames, out_masks, strict=True)):
            video[t, : f.shape[0], : f.shape[1]] = f
            if N:
                mask_out[:, t, : f.shape[0], : f.shape[1]] = m
        return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(mask_out)

    return augment
