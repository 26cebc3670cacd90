"""Training-clip sources built from the command line: ImageCut2Video clips and YouTube-VIS datasets.

(Demo-world clips, the demo's stand-in for real data, come from :func:`autoqvis.io.world.world_source`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from autoqvis.config import Config, RoundsConfig
from autoqvis.errors import DataError

__all__ = ["mixing_probs", "real_mix_prob", "synthetic_source", "video_sources"]


def video_sources(datasets: Sequence[Path], roots: Sequence[Path], cfg: Config) -> list:
    """One :class:`VideoClipSource` per dataset, with the official per-frame augmentation."""
    if len(datasets) != len(roots):
        raise DataError(
            f"{len(datasets)} --videos but {len(roots)} --frames-root; give one frames root per dataset"
        )
    if not datasets:
        return []
    from autoqvis.io.ytvis import load_ytvis
    from autoqvis.synth.augment import clip_augment
    from autoqvis.train.video_source import VideoClipSource

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


def real_mix_prob(rounds: RoundsConfig, labelled_frames: int) -> float:
    """Probability that a batch comes from the real videos: ``rounds.mix_prob``, scaled down by
    ``labelled_frames / rounds.mix_frames`` when ``mix_frames`` is set and fewer frames than that are
    labelled."""
    if rounds.mix_frames <= 0:
        return rounds.mix_prob
    return rounds.mix_prob * min(1.0, labelled_frames / rounds.mix_frames)


def mixing_probs(num_synthetic: int, real_frames: Sequence[int], rounds: RoundsConfig) -> list[float]:
    """The sampling probability of each source, the ``num_synthetic`` synthetic ones first, then one per entry
    of ``real_frames`` (its labelled frames): with both kinds the real sources share :func:`real_mix_prob`
    equally and the synthetic ones the rest (a self-training round, or ``autoqvis train`` with both);
    with one kind every source is equally likely."""
    num_real = len(real_frames)
    if not num_synthetic or not num_real:
        return [1 / (num_synthetic + num_real)] * (num_synthetic + num_real)
    p = real_mix_prob(rounds, sum(real_frames))
    return [(1 - p) / num_synthetic] * num_synthetic + [p / num_real] * num_real
