"""S0 discovery: self-supervised ViT features (DINO / DINOv2) and MaskCut pseudo-masks on images.

from autoqvis.discover import load_vit, maskcut
vit = load_vit(cfg.discovery.arch, cfg.discovery.weights)
masks = maskcut(image, vit, cfg.discovery)   # [((H, W) bool, score), ...]
"""

from autoqvis.discover.maskcut import MaskCutResult, maskcut, maskcut_batch
from autoqvis.model.vit import ARCHS, VisionTransformer, build_vit, load_vit

__all__ = ["ARCHS", "MaskCutResult", "VisionTransformer", "build_vit", "load_vit", "maskcut", "maskcut_batch"]
