"""Dense-CRF refinement of a binary mask (CutLER ``maskcut/crf.py``), through the optional ``pydensecrf``
module (PyPI package ``pydensecrf2``), imported only when a CRF is run.

Legend: ``H, W`` image size; ``h, w`` mask size (bilinearly resized to ``H, W`` first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from autoqvis.errors import AutoqvisError

__all__ = ["CRFParams", "densecrf"]


@dataclass(frozen=True)
class CRFParams:
    """The official constants (crf.py L11-16)."""

    iterations: int = 10  # MAX_ITER
    gaussian_compat: float = 7  # POS_W
    gaussian_sxy: float = 3  # POS_XY_STD
    bilateral_compat: float = 10  # Bi_W
    bilateral_sxy: float = 50  # Bi_XY_STD
    bilateral_srgb: float = 5  # Bi_RGB_STD


def _import_densecrf():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:
        raise AutoqvisError(
            "dense-CRF refinement needs the pydensecrf module; install it with `pip install pydensecrf2` "
            "(or `pip install autoqvis[crf]`), or turn it off (--set discovery.crf=false for discovery, "
            "--set inference.crf_short_side=0 for predictions)"
        ) from err
    return dcrf


def densecrf(image: np.ndarray, mask: np.ndarray, params: CRFParams = CRFParams()) -> np.ndarray:
    """Refine ``mask`` ((h, w), 0/1) on ``image`` ((H, W, 3) uint8 RGB) -> (H, W) float32 0/1 MAP labels.

    The mask becomes two-class logits (background 1 - m, foreground m), bilinearly resized to the image,
    softmaxed; the unary is -log of the probabilities (clipped at 1e-5); then a Gaussian and a bilateral
    pairwise term and ``params.iterations`` mean-field steps.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    dcrf = _import_densecrf()
    H, W = image.shape[:2]
    fg = np.asarray(mask, dtype=np.float64)[None]  # (1, h, w)
    logits = torch.from_numpy(np.concatenate((1 - fg, fg), axis=0))  # (2, h, w) float64
    logits = F.interpolate(logits[None], size=(H, W), mode="bilinear")[0]  # (2, H, W)
    probs = F.softmax(logits, dim=0).numpy()
    unary = np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1.0)).reshape(2, -1).astype(np.float32))

    crf = dcrf.DenseCRF2D(W, H, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sxy,
        srgb=params.bilateral_srgb,
        rgbim=np.require(image, requirements=["C", "W"]),  # pydensecrf needs a writable buffer
        compat=params.bilateral_compat,
    )
    q = np.array(crf.inference(params.iterations)).reshape(2, H, W)
    return np.argmax(q, axis=0).astype(np.float32)
