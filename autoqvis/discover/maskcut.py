"""MaskCut (CutLER ``maskcut/maskcut.py``): up to N class-agnostic pseudo-masks per image from
self-supervised ViT features by repeated normalised cuts, refined with a dense CRF.

Legend: ``D`` feature channels, ``(h, w)`` patch grid, ``N = h*w`` patches, ``K`` cuts per image
(``num_masks``), ``S`` = ``fixed_size`` (the square size the ViT sees), ``(H, W)`` original image size.

Per image (the official order of operations):
1. resize to S x S (LANCZOS), then to the nearest multiple of the patch size; ImageNet-normalise;
2. ViT features of the patches (last-block keys ``k``, or the normalised last-layer tokens);
3. K times: binarised cosine graph -> second-smallest generalised eigenvector -> split at the mean ->
   corner/seed rule -> the seed's 4-connected component. From the second cut on, the features of
   patches already in a mask are zeroed (a float64 painting mask), and a cut is rejected (left empty)
   when its IoU with the previous cut is > 0.5 or it covers <= 1 % of the grid;
4. each cut is nearest-upsampled to S x S, minus the pixels of earlier cuts;
5. dense CRF on the S x S image, holes filled; dropped when IoU(CRF, cut) < 0.5;
6. resized to H x W (PIL bicubic of the 0/255 mask, then thresholded at half its maximum, as CutLER's
   ``create_annotation_info``); empty masks are dropped, and (not official; off by default) region-sized
   ones: more than ``max_area`` of the image, or touching more than ``max_borders`` of its borders.

    vit = load_vit(cfg.arch, cfg.weights)
    for mask, score in maskcut(image, vit, cfg):   # image: (H, W, 3) uint8 RGB
        ...                                         # mask: (H, W) bool
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from autoqvis.config import DiscoveryConfig
from autoqvis.discover.crf import densecrf
from autoqvis.discover.ncut import (
    Solver,
    affinity_matrix,
    foreground_and_seed,
    mask_iou,
    second_smallest_eigenvector,
    seed_component,
)
from autoqvis.errors import DataError
from autoqvis.model.vit import VisionTransformer
from autoqvis.rle import is_region_sized

__all__ = [
    "Cut",
    "MaskCutResult",
    "maskcut",
    "maskcut_batch",
    "maskcut_forward",
    "normalized_cuts",
    "preprocess",
    "refine",
    "resize_mask",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Cut:
    """One normalised cut on the patch grid."""

    mask: np.ndarray  # (h, w) bool: the seed's component; all False when rejected
    eigenvector: np.ndarray  # (N,) float64 second-smallest generalised eigenvector, as the solver returned it
    seed: int  # patch index of the seed
    rejected: bool  # IoU > 0.5 with the previous cut or area <= 1 % of the grid


@dataclass
class MaskCutResult:
    """Everything MaskCut computes for one image (for inspection and tests)."""

    cuts: list[Cut]
    bipartitions: np.ndarray  # (K, S, S) bool: upsampled cuts minus earlier cuts
    eigenvectors: np.ndarray  # (K, S, S) float64: nearest-upsampled eigenvectors
    crf_maps: np.ndarray | None  # (K, S, S) float32 0/1 CRF labels (None without CRF)
    crf_ious: list[float]  # IoU(cut, refined mask) per cut (NaN when both empty; 1.0 without CRF)
    refined: np.ndarray  # (K, S, S) bool: after CRF, hole filling and the IoU rule
    masks: list[np.ndarray]  # kept masks at the original size, (H, W) bool each, in cut order
    scores: list[float]  # per kept mask: its crf_iou


# ---------------------------------------------------------------------------------------------------
# normalised cuts on the patch grid


def normalized_cuts(
    feats: torch.Tensor,
    grid: tuple[int, int],
    tau: float,
    num_masks: int = DiscoveryConfig.num_masks,
    eps: float = DiscoveryConfig.eps,
    solver: Solver = DiscoveryConfig.eigensolver,
) -> list[Cut]:
    """``num_masks`` successive cuts of (D, N) patch features (``maskcut_forward``'s loop)."""
    h, w = grid
    D, N = feats.shape
    if h * w != N:
        raise ValueError(f"feats must be (D, {h}*{w}), got {tuple(feats.shape)}")
    painting = torch.zeros(grid, dtype=torch.float64, device=feats.device)
    cuts: list[Cut] = []
    for i in range(num_masks):
        if i > 0:  # zero the features of every patch in an earlier mask (float64 from here on)
            previous = torch.from_numpy(cuts[-1].mask).to(painting)
            painting = ((painting + previous) > 0).to(torch.float64)
            feats = ((1 - painting) * feats.reshape(D, h, w)).reshape(D, N)
        vec = second_smallest_eigenvector(affinity_matrix(feats, tau, eps), solver)
        foreground, seed = foreground_and_seed(vec, grid)
        mask = seed_component(foreground, seed, grid)
        rejected = False
        if i > 0 and (mask_iou(cuts[-1].mask, mask) > 0.5 or mask.sum() / h / w <= 0.01):
            mask, rejected = np.zeros(grid, dtype=bool), True
        cuts.append(Cut(mask=mask, eigenvector=vec, seed=seed, rejected=rejected))
    return cuts


def _upsample_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> size, torch ``nearest`` (the official resampling of cuts and eigenvectors)."""
    t = torch.from_numpy(np.asarray(x, dtype=np.float64))[None, None]
    return F.interpolate(t, size=size, mode="nearest")[0, 0].numpy()


def maskcut_forward(
    feats: torch.Tensor,
    grid: tuple[int, int],
    image_size: tuple[int, int],
    tau: float,
    num_masks: int = DiscoveryConfig.num_masks,
    eps: float = DiscoveryConfig.eps,
    solver: Solver = DiscoveryConfig.eigensolver,
) -> tuple[list[Cut], np.ndarray, np.ndarray]:
    """Cuts, their (K, *image_size) bool bipartitions (minus earlier ones) and upsampled eigenvectors."""
    cuts = normalized_cuts(feats, grid, tau, num_masks, eps, solver)
    bipartitions, eigenvectors = [], []
    taken = np.zeros(image_size, dtype=bool)
    for cut in cuts:
        up = _upsample_nearest(cut.mask, image_size) > 0
        bipartitions.append(up & ~taken)
        taken |= bipartitions[-1]
        eigenvectors.append(_upsample_nearest(cut.eigenvector.reshape(grid), image_size))
    return cuts, np.stack(bipartitions), np.stack(eigenvectors)


# ---------------------------------------------------------------------------------------------------
# image in, masks out


def preprocess(image: np.ndarray, fixed_size: int, patch_size: int) -> tuple[np.ndarray, torch.Tensor]:
    """(H, W, 3) uint8 -> (the S x S uint8 image the CRF sees, (3, h*p, w*p) normalised float32 tensor)."""
    image = np.asarray(image)
    if (
        image.dtype != np.uint8
        or image.ndim not in (2, 3)
        or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))
    ):
        raise DataError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    pil = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image).convert(
        "RGB"
    )
    resized = pil.resize((fixed_size, fixed_size), Image.Resampling.LANCZOS)
    side = round(fixed_size / patch_size) * patch_size  # CutLER resize_pil: nearest multiple of the patch
    vit_input = resized.resize((side, side), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.array(vit_input)).permute(2, 0, 1).float().div(255)  # (3, side, side)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return np.array(resized), (x - mean) / std


def refine(
    image: np.ndarray,
    bipartition: np.ndarray,
    use_crf: bool = DiscoveryConfig.crf,
    min_iou: float = DiscoveryConfig.crf_min_iou,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """(S, S) cut on the (S, S, 3) image -> (refined bool mask, CRF labels or None, IoU(cut, refined)).

    The mask is emptied when the IoU is below ``min_iou`` (a NaN IoU, both empty, is kept as in CutLER).
    """
    if not use_crf:
        return bipartition.astype(bool), None, 1.0
    crf_map = densecrf(image, bipartition)
    refined = ndimage.binary_fill_holes(crf_map >= 0.5)
    iou = mask_iou(bipartition, refined)
    if iou < min_iou:
        refined = np.zeros_like(refined)
    return refined, crf_map, iou


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(S, S) bool -> (H, W) bool as CutLER writes its annotations: PIL bicubic resize of the 0/255 mask,
    then values > max/2 become the maximum and the rest the minimum (nonzero = foreground)."""
    H, W = size
    resized = np.asarray(
        Image.fromarray(mask.astype(np.uint8) * 255).resize((W, H), Image.Resampling.BICUBIC)
    )
    upper, lower = int(resized.max()), int(resized.min())
    above = resized > upper / 2.0
    return np.where(above, upper > 0, lower > 0)


def _features(vit: VisionTransformer, batch: torch.Tensor, kind: str) -> tuple[torch.Tensor, tuple[int, int]]:
    out = vit.extract(batch)
    feats = {"k": out.k, "tokens": out.tokens}.get(kind)
    if feats is None:
        raise ValueError(f"discovery.features must be 'k' or 'tokens', got {kind!r}")
    return feats.transpose(1, 2), out.grid  # (B, D, N)


@torch.no_grad()
def maskcut_batch(
    images: Sequence[np.ndarray], vit: VisionTransformer, cfg: DiscoveryConfig
) -> list[MaskCutResult]:
    """MaskCut on several images, ``cfg.batch_size`` per ViT forward, on the ViT's device."""
    device = next(vit.parameters()).device
    results: list[MaskCutResult] = []
    for start in range(0, len(images), cfg.batch_size):
        chunk = images[start : start + cfg.batch_size]
        prepared = [preprocess(img, cfg.fixed_size, vit.patch_size) for img in chunk]
        batch = torch.stack([x for _, x in prepared]).to(device)
        feats, grid = _features(vit, batch, cfg.features)
        for image, (small, _), f in zip(chunk, prepared, feats):
            results.append(_cut_and_refine(np.asarray(image).shape[:2], small, f, grid, cfg))
    return results


def _cut_and_refine(
    size: tuple[int, int], small: np.ndarray, feats: torch.Tensor, grid: tuple[int, int], cfg: DiscoveryConfig
) -> MaskCutResult:
    fixed = small.shape[:2]
    cuts, bipartitions, eigenvectors = maskcut_forward(
        feats, grid, fixed, cfg.tau, cfg.num_masks, cfg.eps, cfg.eigensolver
    )
    refined, crf_maps, ious, masks, scores = [], [], [], [], []
    for bipartition in bipartitions:
        mask, crf_map, iou = refine(small, bipartition, cfg.crf, cfg.crf_min_iou)
        refined.append(mask)
        crf_maps.append(crf_map)
        ious.append(iou)
        full = resize_mask(mask, size)
        if full.any() and not is_region_sized(full, cfg.max_area, cfg.max_borders):
            masks.append(full)
            scores.append(iou)
    return MaskCutResult(
        cuts=cuts,
        bipartitions=bipartitions,
        eigenvectors=eigenvectors,
        crf_maps=np.stack(crf_maps) if cfg.crf else None,
        crf_ious=ious,
        refined=np.stack(refined),
        masks=masks,
        scores=scores,
    )


def maskcut(
    image: np.ndarray, vit: VisionTransformer, cfg: DiscoveryConfig
) -> list[tuple[np.ndarray, float]]:
    """Pseudo-masks of one (H, W, 3) uint8 RGB image: a list of ((H, W) bool mask, score), in cut order.

    The score is the IoU between the CRF-refined mask and its normalised cut (>= ``cfg.crf_min_iou``;
    1.0 without CRF). The official pipeline keeps every mask that survives, unscored; the score is a hint.
    """
    result = maskcut_batch([image], vit, cfg)[0]
    return list(zip(result.masks, result.scores))
