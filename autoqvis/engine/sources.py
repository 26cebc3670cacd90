"""Training-clip sources built from the command line: demo-world clips and YouTube-VIS datasets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoqvis.config import Config
from autoqvis.errors import DataError

__all__ = ["synthetic_source", "video_sources", "world_source"]


def world_source(size: int, cfg: Config, height: int = 128, width: int = 160):
    """``size`` procedural demo-world clips of ``synthesis.num_frames`` frames (the demo's synthetic data)."""
    from autoqvis.demo.world import WorldClipSource, WorldConfig

    return WorldClipSource(size, WorldConfig(height=height, width=width), num_frames=cfg.synthesis.num_frames)


def video_sources(datasets: Sequence[Path], roots: Sequence[Path], cfg: Config) -> list:
    """One :class:`VideoClipSource` per dataset, with the official per-frame augmentation."""
    if len(datasets) != len(roots):
        raise DataError(
            f"{len(datasets)} --videos but {len(roots)} --frames-root; give one frames root per dataset"
        )
    if not datasets:
        return []
    from autoqvis.engine.augment import clip_augment
    from autoqvis.engine.video_source import VideoClipSource
    from autoqvis.io.ytvis import load_ytvis

    augment = clip_augment(cfg.synthesis)
    return [
        VideoClipSource(load_ytvis(path, frames_root=root), augment, num_frames=cfg.synthesis.num_frames)
        for path, root in zip(datasets, roots, strict=True)
    ]


def synthetic_source(masks_json: Path, images_root: Path | None, cfg: Config):
    """ImageCut2Video clips from a pseudo-mask JSON (``autoqvis discover``) and its images."""
    from autoqvis.synth.imagecut2video import ImageCut2Video, PseudoMaskImages

    return ImageCut2Video(PseudoMaskImages(masks_json, images_root), cfg.synthesis, seed=cfg.training.seed)
