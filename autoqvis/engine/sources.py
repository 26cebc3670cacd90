"""Training-clip sources built from the command line: ImageCut2Video clips and YouTube-VIS datasets.

(Demo-world clips, the demo's stand-in for real data, come from :func:`autoqvis.demo.world.world_source`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoqvis.config import Config
from autoqvis.errors import DataError

__all__ = ["synthetic_source", "video_sources"]


def video_sources(datasets: Sequence[Path], roots: Sequence[Path], cfg: Config) -> list:
    """One :class:`VideoClipSource` per dataset, with the official per-frame augmentation."""
    if len(datasets) != len(roots):
        raise DataError(
            f"{len(datasets)} --videos but {len(roots)} --frames-root; give one frames root per dataset"
        )
    if not datasets:
        return []
    from autoqvis.engine.video_source import VideoClipSource
    from autoqvis.io.ytvis import load_ytvis
    from autoqvis.synth.augment import clip_augment

    augment = clip_augment(cfg.synthesis)
    sources = []
    for path, root in zip(datasets, roots, strict=True):
        dataset = load_ytvis(path, frames_root=root)
        if dataset.num_tracks() == 0:
            raise DataError(
                f"{path} holds no annotation in its {len(dataset.videos)} video(s): there is no object to learn "
                "from; pass a dataset with annotations (ground truth, or pseudo-labels of a self-training round)"
            )
        sources.append(VideoClipSource(dataset, augment, num_frames=cfg.synthesis.num_frames))
    return sources


def synthetic_source(masks_json: Path, images_root: Path | None, cfg: Config):
    """ImageCut2Video clips from a pseudo-mask JSON (``autoqvis discover``) and its images."""
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages

    return ImageCut2Video(PseudoMaskImages(masks_json, images_root), cfg.synthesis, seed=cfg.training.seed)
