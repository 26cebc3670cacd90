"""Building the model from a preset, loading official and own checkpoints, saving our format.

Presets:

- ``paper_r50``: the official AutoQ-VIS model (ResNet-50, 256-d, 6 encoder layers, 9 decoder layers, 100 queries,
  quality head 257/256/1024). Its state dict has exactly the official 572 keys.
- ``videocutler_r50``: the same without the quality head (558 keys), for VideoCutLER checkpoints.
- ``tiny``: reduced widths and depths for CPU tests and the demo (same code paths).

Checkpoints: official detectron2 ``.pth`` files (``{"model": state_dict}``) read with ``torch.load(weights_only=True)``
(a pickle that needs arbitrary code is refused), or safetensors. Our own format is a folder with
``model.safetensors`` and ``model.json`` (the :class:`ModelSpec`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from autoqvis.config import Config, ModelConfig
from autoqvis.errors import CheckpointError
from autoqvis.io.atomic import atomic_path, atomic_write_text
from autoqvis.losses.criterion import build_criterion
from autoqvis.model.vis import ModelSpec, VideoMaskFormer

__all__ = [
    "PRESETS",
    "LoadReport",
    "build_model",
    "load_model",
    "load_weights",
    "read_state_dict",
    "save_model",
    "spec_from_reference_config",
]

log = logging.getLogger("autoqvis")

PRESETS: dict[str, ModelSpec] = {
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
    ),
}


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


def build_model(
    cfg: Config | ModelConfig | ModelSpec | str | None = None, training: Config | None = None
) -> VideoMaskFormer:
    """A model from a config (its ``model.preset``), a spec or a preset name, with the criterion of
    ``training`` (default: the config's training section) and, if the config names weights, those loaded."""
    config = cfg if isinstance(cfg, Config) else training if isinstance(training, Config) else Config()
    model_cfg = cfg.model if isinstance(cfg, Config) else cfg if isinstance(cfg, ModelConfig) else None
    if isinstance(cfg, ModelSpec):
        spec = cfg
    else:
        name = cfg if isinstance(cfg, str) else (model_cfg.preset if model_cfg else "paper_r50")
        if name not in PRESETS:
            raise CheckpointError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
        spec = PRESETS[name]
    if model_cfg is not None and (
        model_cfg.backbone != spec.backbone or model_cfg.vit_image_stem != spec.vit_image_stem
    ):
        spec = dataclasses.replace(
            spec,
            backbone=model_cfg.backbone,
            vit_arch=model_cfg.vit_arch,
            freeze_vit=model_cfg.freeze_vit,
            vit_image_stem=model_cfg.vit_image_stem,
        )
    training_cfg = config.training
    if spec.quality_head is None and not training_cfg.freeze_quality_head:
        training_cfg = dataclasses.replace(training_cfg, freeze_quality_head=True)  # no head, no quality loss
    model = VideoMaskFormer(spec, criterion=build_criterion(training_cfg, spec.num_classes))
    if training_cfg.freeze_quality_head:
        model.freeze_quality_head()
    if spec.backbone == "vit" and model_cfg is not None and not model_cfg.weights:
        from autoqvis.discover.vit import load_vit

        vit = load_vit(spec.vit_arch, model_cfg.vit_weights)
        model.backbone.vit.load_state_dict(vit.state_dict())
    if model_cfg is not None and model_cfg.weights:
        load_weights(model, model_cfg.weights)
    return model


@dataclass
class LoadReport:
    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[str]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file: safetensors, or a torch pickle of tensors only (``weights_only``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path} not found; pass a .pth, .safetensors or a folder written by autoqvis")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} needs arbitrary code to unpickle, which autoqvis refuses for safety ({str(err).splitlines()[0]}). "
            "Convert it once, in a trusted environment, to safetensors: "
            "python -c \"import torch, safetensors.torch as s; d=torch.load('IN.pth', weights_only=False)['model']; "
            "s.save_file({k: v.contiguous() for k, v in d.items()}, 'OUT.safetensors')\""
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {err}") from err
    if isinstance(data, dict) and "model" in data and isinstance(data["model"], dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or {{'model': state_dict}})")
    return data


def load_weights(model: VideoMaskFormer, path: str | Path, strict: bool = False) -> LoadReport:
    """Load a checkpoint by key. Missing and unexpected keys are logged by name (an error when ``strict``);
    a shape mismatch is always an error. A VideoCutLER checkpoint leaves the quality head at its init."""
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


def save_model(model: VideoMaskFormer, folder: str | Path) -> Path:
    """Write ``model.safetensors`` + ``model.json`` atomically into ``folder``."""
    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(folder / "model.safetensors", suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / "model.json", json.dumps(model.spec.to_json(), indent=1))
    return folder


def load_model(folder: str | Path) -> VideoMaskFormer:
    """A model saved by :func:`save_model`."""
    folder = Path(folder)
    spec_path = folder / "model.json"
    if not spec_path.is_file():
        raise CheckpointError(
            f"{folder}: no model.json; expected a folder written by autoqvis (model.safetensors + model.json)"
        )
    spec = ModelSpec.from_json(json.loads(spec_path.read_text()))
    model = VideoMaskFormer(spec, criterion=build_criterion(Config().training, spec.num_classes))
    load_weights(model, folder / "model.safetensors", strict=True)
    return model
