"""The VIS model: ResNet backbone, MSDeformAttn pixel decoder, video masked-attention decoder, quality head."""

from autoqvis.model.build import (
    PRESETS,
    build_model,
    load_model,
    load_weights,
    model_spec,
    save_model,
    spec_from_reference_config,
)
from autoqvis.model.vis import ModelSpec, VideoMaskFormer, VideoOutput

__all__ = [
    "PRESETS",
    "ModelSpec",
    "VideoMaskFormer",
    "VideoOutput",
    "build_model",
    "load_model",
    "load_weights",
    "model_spec",
    "save_model",
    "spec_from_reference_config",
]
