"""Training clips from a YouTube-VIS-style dataset (real videos with ground truth or pseudo-labels).

Sampling follows the official mapper: a uniformly drawn reference frame plus ``T - 1`` frames drawn with
replacement from within ``+-frame_range`` of it (the reference excluded), sorted. Frame lists may be
non-contiguous (pseudo-labelled videos keep only their eligible frames). Each clip then goes through the same
per-frame augmentation as the synthetic clips. A clip is a pure function of ``(index, seed)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import UnidentifiedImageError

from autoqvis import rle as rle_utils
from autoqvis.errors import DataError
from autoqvis.io.images import open_image
from autoqvis.io.video import read_image
from autoqvis.io.ytvis import YTVISDataset
from autoqvis.structures import Clip

__all__ = ["Augment", "VideoClipSource", "sample_frames"]

# (frames: list of (H, W, 3) uint8, masks: (N, T, H, W) bool, rng) -> (frames (T, 3, H', W') uint8, masks (N, T, H', W') bool)
Augment = Callable[[list[np.ndarray], np.ndarray, np.random.Generator], tuple[torch.Tensor, torch.Tensor]]


def sample_frames(length: int, num_frames: int, frame_range: int, rng: np.random.Generator) -> list[int]:
    """Reference frame + ``num_frames - 1`` frames with replacement within ``+-frame_range``, sorted."""
    if length < 2:
        raise DataError(f"a training video needs at least 2 frames, got {length}")
    ref = int(rng.integers(length))
    candidates = [i for i in range(max(0, ref - frame_range), min(length, ref + frame_range + 1)) if i != ref]
    others = rng.choice(candidates, num_frames - 1).tolist()
    return sorted([*others, ref])


class VideoClipSource:
    """``clip(index, seed)`` -> an augmented clip of video ``index`` of ``dataset``."""

    def __init__(
        self,
        dataset: YTVISDataset,
        augment: Augment,
        num_frames: int = 3,
        frame_range: int = 20,
        source: str = "pseudo",
    ):
        usable = [v for v in dataset.videos if v.length >= 2]
        if not usable:
            raise DataError("no video with at least 2 frames to train on")
        for info in usable:  # the first frame's size (a header read), before any training
            path = dataset.frame_paths(info.id)[0]
            try:
                with open_image(path, "frame") as img:
                    size = img.size
            except (OSError, UnidentifiedImageError) as err:
                raise DataError(f"video {info.id}: cannot read frame {path}: {err}") from err
            _check_size(size[1], size[0], info, path)
        self.dataset, self.videos = dataset, usable
        self.augment, self.num_frames, self.frame_range, self.source = (
            augment,
            num_frames,
            frame_range,
            source,
        )

    def __len__(self) -> int:
        return len(self.videos)

    def identity(self) -> dict:
        """What determines its clips (for the fingerprint of a training run): the dataset, its frames' names
        and contents; the augmentation is the training run's ``synthesis`` section."""
        from autoqvis.runs.fingerprint import files_identity

        frames = [name for info in self.videos for name in info.file_names]
        return {
            "kind": "videos",
            "dataset": self.dataset.content_hash(),
            "frames": None
            if self.dataset.frames_root is None
            else files_identity(self.dataset.frames_root, frames),
            "num_frames": self.num_frames,
            "frame_range": self.frame_range,
        }

    def clip(self, index: int, seed: int) -> Clip:
        rng = np.random.default_rng(seed)
        info = self.videos[index]
        chosen = sample_frames(info.length, self.num_frames, self.frame_range, rng)
        paths = self.dataset.frame_paths(info.id)
        frames = [read_image(paths[t]) for t in chosen]
        for t, frame in zip(chosen, frames, strict=True):
            _check_size(frame.shape[0], frame.shape[1], info, paths[t])
        tracks = self.dataset.tracks[info.id]
        masks = np.zeros((len(tracks), len(chosen), info.height, info.width), dtype=bool)
        for n, track in enumerate(tracks):
            for i, t in enumerate(chosen):
                if track.masks[t] is not None:
                    masks[n, i] = rle_utils.decode(track.masks[t])
        images, masks_out = self.augment(frames, masks, rng)
        present = masks_out.flatten(2).any(2)
        keep = present.any(1)  # tracks absent from every sampled frame are dropped
        masks_out, present = masks_out[keep], present[keep]
        ids = torch.where(
            present, torch.arange(len(masks_out))[:, None], torch.full_like(present, -1, dtype=torch.long)
        )
        return Clip(
            frames=images,
            masks=masks_out,
            ids=ids,
            source=self.source,
            video_id=info.id,
            frame_indices=tuple(chosen),
        )


def _check_size(height: int, width: int, info, path) -> None:
    """A frame must have the size its dataset declares (its masks are drawn at that size)."""
    if (height, width) != (info.height, info.width):
        raise DataError(
            f"video {info.id} ({info.name or 'unnamed'}): frame {path} is {width}x{height} but the dataset declares "
            f"width {info.width} and height {info.height}; pass the frames the JSON was made for (--frames-root)"
        )
