"""Building the model from a preset, loading official and own checkpoints, saving our format.

Presets:

- ``paper_r50``: the official AutoQ-VIS model (ResNet-50, 256-d, 6 encoder layers, 9 decoder layers, 100 queries,
  quality head 257/256/1024). Its state dict has exactly the official 572 keys.
- ``videocutler_r50``: the same without the quality head (558 keys), for VideoCutLER checkpoints.
- ``tiny``: reduced widths and depths for CPU tests and the demo (same code paths).

Checkpoints: official detectron2 ``.pth`` files (``{"model": state_dict}``) read with ``torch.load(weights_only=True)``
(a pickle that needs arbitrary code is refused), or safetensors. Our own format is a folder with
``model.safetensors``, ``model.json`` (the :class:`ModelSpec`) and ``inference.json`` (the ``inference`` settings
the model was trained and scored with: loading the folder makes them the model's own, ``model.own_inference``;
official checkpoints carry none and run with the section's defaults).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from autoqvis.config import (
    ConfigError,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    apply_delta,
    inference_settings,
)
from autoqvis.config.checks import choices
from autoqvis.config.sections import BackboneName, Preset
from autoqvis.errors import CheckpointError
from autoqvis.losses.criterion import build_criterion
from autoqvis.model.backbone import Backbone
from autoqvis.model.checkpoint import check_not_preset, describe_torch_load_error, read_state_dict
from autoqvis.model.decoder import VideoMaskedDecoder
from autoqvis.model.pixel_decoder import MSDeformAttnPixelDecoder
from autoqvis.model.resnet import ResNet
from autoqvis.model.state_check import check_matched, checked_state
from autoqvis.model.vis import ModelSpec, VideoMaskFormer
from autoqvis.model.vit import load_vit
from autoqvis.model.vit_backbone import ViTBackbone
from autoqvis.runs.atomic import atomic_path, atomic_write_text

__all__ = [
    "INFERENCE_FILE",
    "PRESETS",
    "LoadReport",
    "architecture_differences",
    "build_backbone",
    "build_model",
    "check_not_preset",
    "describe_torch_load_error",
    "load_model",
    "load_weights",
    "model_spec",
    "read_inference",
    "read_spec",
    "read_state_dict",
    "save_model",
    "spec_from_reference_config",
]

log = logging.getLogger("autoqvis")

PRESETS: dict[Preset, ModelSpec] = {
    "paper_r50": ModelSpec(),
    "videocutler_r50": ModelSpec(quality_head=None),
    "tiny": ModelSpec(
        stem_out_channels=16,
        width_per_group=8,
        res2_out_channels=32,
        conv_dim=64,
        mask_dim=64,
        encoder_layers=2,
        hidden_dim=64,
        num_queries=20,
        nheads=4,
        dim_feedforward=256,
        dec_layers=3,
        quality_head=(65, 32, 64),
        encoder_dropout=0.0,
    ),
}
assert set(PRESETS) == set(choices(Preset)), "model.preset (config.sections.Preset) must name every preset"


def spec_from_reference_config(config: dict) -> ModelSpec:
    """A :class:`ModelSpec` from a fixture's ``config.json`` (official config keys, ``small_overrides`` and
    ``maskiou_head_widths``), so that tests read every size from the fixture."""
    o = config.get("small_overrides", {})
    widths = config.get("maskiou_head_widths")
    base = ModelSpec()
    return ModelSpec(
        depth=o.get("MODEL.RESNETS.DEPTH", base.depth),
        stem_out_channels=o.get("MODEL.RESNETS.STEM_OUT_CHANNELS", base.stem_out_channels),
        width_per_group=o.get("MODEL.RESNETS.WIDTH_PER_GROUP", base.width_per_group),
        res2_out_channels=o.get("MODEL.RESNETS.RES2_OUT_CHANNELS", base.res2_out_channels),
        conv_dim=o.get("MODEL.SEM_SEG_HEAD.CONVS_DIM", base.conv_dim),
        mask_dim=o.get("MODEL.SEM_SEG_HEAD.MASK_DIM", base.mask_dim),
        encoder_layers=o.get("MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", base.encoder_layers),
        encoder_dropout=o.get("MODEL.MASK_FORMER.DROPOUT", base.encoder_dropout),
        hidden_dim=o.get("MODEL.MASK_FORMER.HIDDEN_DIM", base.hidden_dim),
        num_queries=o.get("MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", base.num_queries),
        nheads=o.get("MODEL.MASK_FORMER.NHEADS", base.nheads),
        dim_feedforward=o.get("MODEL.MASK_FORMER.DIM_FEEDFORWARD", base.dim_feedforward),
        dec_layers=o.get("MODEL.MASK_FORMER.DEC_LAYERS", base.dec_layers + 1) - 1,
        quality_head=(
            (widths["in_channels"], widths["conv_channels"], widths["fc_dim"])
            if widths
            else base.quality_head
        ),
    )


def model_spec(model: ModelConfig | ModelSpec | str) -> ModelSpec:
    """The architecture: a preset name, a spec as given, or a model config (its preset with the config's
    backbone fields)."""
    if isinstance(model, ModelSpec):
        return model
    name = model if isinstance(model, str) else model.preset
    if name not in PRESETS:
        raise CheckpointError(f"unknown model preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    spec = PRESETS[name]
    if isinstance(model, ModelConfig):
        spec = dataclasses.replace(spec, **{name: getattr(model, name) for name in SPEC_FROM_CONFIG})
    return spec


# the spec fields a model config sets: those the two share by name (the backbone and its ViT)
SPEC_FROM_CONFIG = tuple(
    f.name
    for f in dataclasses.fields(ModelSpec)
    if f.name in {g.name for g in dataclasses.fields(ModelConfig)}
)


def build_model(
    model: ModelConfig | ModelSpec | str = "paper_r50",
    training: TrainingConfig | None = None,
    pretrained_backbone: bool = True,
) -> VideoMaskFormer:
    """The one place a model is built: the architecture of ``model`` (see :func:`model_spec`) with the
    criterion of ``training`` (default: the official losses) and the quality head frozen when
    ``training.freeze_quality_head`` is set or the architecture has no head (then there is no quality loss).

    With a model config and ``backbone=vit``, the ViT's self-supervised weights are loaded from
    ``model.vit_weights`` (or the weights cache) unless ``pretrained_backbone`` is False (weights that
    replace them all are loaded next). ``model.weights`` is not loaded here: it initialises training
    (:func:`autoqvis.train.run.train_stage`)."""
    spec = model_spec(model)
    training = (
        training or TrainingConfig()
    ).stage_losses()  # DropLoss, frozen head: None is off outside a round
    if spec.quality_head is None and not training.freeze_quality_head:
        training = dataclasses.replace(training, freeze_quality_head=True)  # no head, no quality loss
    backbone = build_backbone(spec)
    pixel_decoder = MSDeformAttnPixelDecoder(
        backbone.channels,
        backbone.strides,
        conv_dim=spec.conv_dim,
        mask_dim=spec.mask_dim,
        encoder_layers=spec.encoder_layers,
        n_heads=spec.nheads,
        d_ffn=spec.encoder_ffn,
        dropout=spec.encoder_dropout,
    )
    predictor = VideoMaskedDecoder(
        in_channels=spec.conv_dim,
        hidden_dim=spec.hidden_dim,
        num_queries=spec.num_queries,
        nheads=spec.nheads,
        dim_feedforward=spec.dim_feedforward,
        dec_layers=spec.dec_layers,
        mask_dim=spec.mask_dim,
        num_classes=spec.num_classes,
        quality_head=spec.quality_head,
    )
    criterion = build_criterion(training, spec.num_classes)
    net = VideoMaskFormer(spec, backbone, pixel_decoder, predictor, criterion)
    if training.freeze_quality_head:
        net.freeze_quality_head()
    net.quality_outputs = training.quality_outputs
    if isinstance(model, ModelConfig) and spec.backbone == "vit" and pretrained_backbone:
        vit = load_vit(spec.vit_arch, model.vit_weights)
        net.backbone.vit.load_state_dict(vit.state_dict())
    return net


def build_backbone(spec: ModelSpec) -> Backbone:
    """The backbone ``spec.backbone`` names, with the spec's sizes: ``resnet`` (detectron2's ResNet,
    ``spec.depth`` and widths; channels-last, ~15% faster convolutions on CPU) or ``vit`` (``spec.vit_arch``
    through a simple feature pyramid, randomly initialised: its weights are loaded by :func:`build_model`).
    Any other name is an error."""
    match spec.backbone:
        case "resnet":
            resnet = ResNet(spec.depth, spec.stem_out_channels, spec.width_per_group, spec.res2_out_channels)
            return resnet.to(memory_format=torch.channels_last)
        case "vit":
            return ViTBackbone(spec.vit_arch, frozen=spec.freeze_vit, image_stem=spec.vit_image_stem)
        case _:
            raise ValueError(
                f"unknown backbone {spec.backbone!r}; choose one of {', '.join(choices(BackboneName))}"
            )


@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[str]


def load_weights(model: VideoMaskFormer, path: str | Path, strict: bool = False) -> LoadReport:
    """Load weights by key into ``model``.

    - a folder written by :func:`save_model`: its ``model.json`` must describe the same architecture as
      ``model.spec`` (else an error naming the fields that differ), and every key must match; the one
      exception is a folder without the quality head loaded into a model with one (the official initial stage
      starts from the head-less VideoCutLER model): the head keeps its initialisation;
    - an official ``.pth`` or a safetensors file (no architecture stored): missing and unexpected keys are
      logged by name (an error when ``strict``); a VideoCutLER checkpoint leaves the quality head at its init.

    A tensor of the wrong shape or kind (an integer where a float is expected), or a NaN or infinite value,
    is always an error; float16, bfloat16 and float64 tensors are cast (:mod:`autoqvis.model.state_check`)."""
    path = Path(path)
    stored = read_spec(path)
    if stored is not None:
        if stored.quality_head is None and model.spec.quality_head is not None:
            # a model without the quality head (ours of VideoCutLER's stage) initialises one with a head, as the
            # official initial stage starts from the VideoCutLER checkpoint: the head stays at its init
            stored = dataclasses.replace(stored, quality_head=model.spec.quality_head)
        else:
            strict = True
        differences = architecture_differences(stored, model.spec)
        if differences:
            raise CheckpointError(
                f"{path} holds a different architecture than the model it is loaded into "
                f"({'; '.join(differences)}); set model.* to match the weights (see {path / 'model.json'}) "
                "or pass weights of this architecture"
            )
    state = read_state_dict(path)
    state = {k.replace("static_query", "query_feat"): v for k, v in state.items()}
    own = model.state_dict()
    mismatch = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if mismatch:
        raise CheckpointError(
            f"{path}: {len(mismatch)} tensors have the wrong shape for this model (first: {mismatch[0]}); "
            "is the preset right (model.preset)?"
        )
    state = checked_state(state, own, path)  # dtypes castable, values finite
    check_matched(own, state, path, optional=lambda key: ".maskiou_feature_extractor." in key)
    result = model.load_state_dict(state, strict=False)
    report = LoadReport(list(result.missing_keys), list(result.unexpected_keys), [])
    if report.missing or report.unexpected:
        msg = f"{path}: {len(report.missing)} missing keys {report.missing[:6]}, {len(report.unexpected)} unexpected keys {report.unexpected[:6]}"
        if strict:
            raise CheckpointError(msg)
        quality_only = all(".maskiou_feature_extractor." in k for k in report.missing)
        log.log(
            logging.INFO if quality_only else logging.WARNING,
            "%s%s",
            msg,
            " (a checkpoint without the quality head)" if quality_only else "",
        )
    return report


# fields of a spec that do not change the weights or what the model computes at inference
_TRAINING_ONLY = ("freeze_vit", "encoder_dropout")
_VIT_ONLY = ("vit_arch", "vit_image_stem")


def architecture_differences(a: ModelSpec, b: ModelSpec) -> list[str]:
    """``"field: a vs b"`` for every architecture field in which two specs differ (training-only settings,
    and the ViT fields of two ResNet models, are not architecture)."""
    skip = set(_TRAINING_ONLY) | (set(_VIT_ONLY) if a.backbone == b.backbone == "resnet" else set())
    da, db = a.to_json(), b.to_json()
    return [f"{k}: {da[k]} vs {db[k]}" for k in da if k not in skip and da[k] != db[k]]


def read_spec(path: str | Path) -> ModelSpec | None:
    """The architecture stored with weights written by :func:`save_model` (a folder, or its
    ``model.safetensors``); None for a file without one (an official checkpoint)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name == "model.safetensors" else None
    if folder is None:
        return None
    spec_path = folder / "model.json"
    if not spec_path.is_file():
        if path.is_dir():
            raise CheckpointError(
                f"{folder}: no model.json; expected a folder written by autoqvis (model.safetensors + model.json)"
            )
        return None
    try:
        return ModelSpec.from_json(json.loads(spec_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{spec_path} is damaged or not written by autoqvis ({err}); save the model again or restore the file"
        ) from err


INFERENCE_FILE = "inference.json"  # a model folder's own inference settings


def save_model(model: VideoMaskFormer, folder: str | Path, inference: InferenceConfig | None = None) -> Path:
    """Write ``model.safetensors`` + ``model.json`` atomically into ``folder``, and with ``inference`` the
    settings the model is made for (``inference.json``: every value that changes predictions, not the device
    or the token cache; see :func:`read_inference`)."""
    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / "model.json", json.dumps(model.spec.to_json(), indent=1))
    if inference is not None:
        atomic_write_text(folder / INFERENCE_FILE, json.dumps(inference_settings(inference), indent=1))
    return folder


def read_inference(path: str | Path) -> InferenceConfig | None:
    """The inference settings a model folder (or its ``model.safetensors``) was made for, from its
    ``inference.json``; None for weights without them (an official checkpoint, a preset, an older folder)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent if path.name == "model.safetensors" else None
    if folder is None or not (folder / INFERENCE_FILE).is_file():
        return None
    source = folder / INFERENCE_FILE
    try:
        data = json.loads(source.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected an object of inference settings, got {type(data).__name__}")
        return apply_delta(InferenceConfig(), data, source=str(source), prefix="inference.")
    except (OSError, ValueError, ConfigError) as err:
        raise CheckpointError(
            f"{source} is damaged or not written by autoqvis ({err}); delete it (the model then runs with the "
            "inference defaults) or restore the file"
        ) from err


def load_model(
    weights: str | Path,
    model: ModelConfig | ModelSpec | str | None = None,
    device: str | torch.device = "cpu",
) -> VideoMaskFormer:
    """The one loader: a model in eval mode on ``device``.

    ``weights`` is a folder written by autoqvis (its ``model.json`` gives the architecture; ``model``, when
    given, must agree with it; its ``inference.json``, when there, becomes ``model.own_inference``), an official / safetensors weights file loaded by key into ``model`` (default
    the ``paper_r50`` preset), or a preset name (random weights: for tests and timing only)."""
    path = Path(weights)
    if path.is_dir() or (path.is_file() and read_spec(path) is not None):
        stored = read_spec(path)
        if model is not None:
            differences = architecture_differences(stored, model_spec(model))
            if differences:
                raise CheckpointError(
                    f"{path} holds a different architecture than asked for ({'; '.join(differences)}); "
                    "drop the model settings (the folder's model.json says what it is) or pass matching weights"
                )
        net = build_model(stored)
        load_weights(net, path)
    elif path.is_file():
        net = build_model(model_spec(model or "paper_r50"))
        load_weights(net, path)
    elif str(weights) in PRESETS:
        net = build_model(str(weights))
    else:
        raise CheckpointError(
            f"{weights} is neither a model folder, a weights file nor a preset ({', '.join(PRESETS)}); "
            "pass a folder written by autoqvis (model.json + model.safetensors) or an official .pth"
        )
    net.own_inference = read_inference(path)
    return net.to(torch.device(device)).eval()
