"""Configuration: one frozen dataclass per stage, YAML deltas and ``--set a.b=value`` overrides.

The defaults are the official AutoQ-VIS settings (github.com/wcbup/AutoQ-VIS at 8174dc2 and the CutLER /
VideoCutLER code it forks); a YAML file holds only the differences from them. Unknown keys are errors that
name the nearest valid key, values are checked against the field's type, and the resolved configuration is
written into every output directory.

    cfg = load_config(["small_data"], ["selection.quality_min=0.5"])
    cfg.selection.quality_min  # 0.5

A config file is a path, or the name of a profile shipped in ``autoqvis/configs/`` (``small_data``,
``offline_dinov2s``, ...; ``configs/small_data.yaml`` names the same file).

The stage labels in the docstrings below are the ones the official code and the paper's pipeline use:

- S0 discovery: MaskCut pseudo-masks on unlabeled images (``discovery``);
- S1 the CutLER image model that initialises VideoCutLER (outside this project: its checkpoint is an input);
- S2 VideoCutLER: ImageCut2Video synthetic clips (``synthesis``) and the VIS model (``model``, ``training``);
- S3 the AutoQ-VIS initial stage: the VIS model trained jointly with the quality head on synthetic clips, the
  model called M0 (``training``);
- S4 the self-training rounds on unlabeled videos (``selection``);
- S5 evaluation (``evaluation``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import math
import re
import shlex
import subprocess
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from autoqvis.errors import AutoqvisError, StaleOutputError

__all__ = [
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "EvaluationConfig",
    "InferenceConfig",
    "ModelConfig",
    "SelectionConfig",
    "SynthesisConfig",
    "TrainingConfig",
    "apply_delta",
    "config_to_dict",
    "load_config",
    "parse_override",
    "profiles",
    "resolve_config_file",
    "save_config",
    "saved_config",
    "set_command_line",
]


class ConfigError(AutoqvisError, ValueError):
    """A configuration file or override that cannot be applied. ``key``: the dotted key at fault, if one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------------
# allowed ranges: every numeric field of every section declares one, checked whenever a section is made
# (defaults, YAML files, --set, dataclasses.replace, a saved config read back)


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: ``lo <= value <= hi`` (``<`` on an open side); NaN and
    infinities are never allowed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "a finite number"


COUNT = Range(lo=1)  # how many of something: >= 1
NON_NEGATIVE = Range(lo=0)
POSITIVE = Range(lo=0, lo_open=True)
FRACTION = Range(lo=0, hi=1)  # probabilities, IoU and score thresholds
SIDE = Range(lo=32)  # an image side in pixels: the model's coarsest feature map has stride 32


def check_section(section: Any, name: str, ranges: Mapping[str, Range], ordered: Sequence[str] = ()) -> None:
    """Raise :class:`ConfigError` naming ``name.key``, the value and the allowed range for the first field of
    ``section`` outside its range; a tuple field is checked value by value and must not be empty; the
    ``ordered`` tuple fields must be non-decreasing (``(lo, hi)`` ranges, ascending lists)."""
    for key, allowed in ranges.items():
        value = getattr(section, key)
        values = value if isinstance(value, tuple) else (value,)
        if not values:
            raise ConfigError(f"'{name}.{key}' must hold at least one value, got []", key=f"{name}.{key}")
        for v in values:
            if v not in allowed:
                each = "each value of " if isinstance(value, tuple) else ""
                raise ConfigError(
                    f"{each}'{name}.{key}' must be {allowed}, got {_show(value)}", key=f"{name}.{key}"
                )
    for key in ordered:
        value = getattr(section, key)
        if any(a > b for a, b in itertools.pairwise(value)):
            raise ConfigError(
                f"'{name}.{key}' must be in ascending order (low, high), got {_show(value)}",
                key=f"{name}.{key}",
            )


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else repr(value)


# ---------------------------------------------------------------------------------------------------
# stage configurations


@dataclass(frozen=True)
class DiscoveryConfig:
    """S0: self-supervised ViT features + normalised cuts (MaskCut) on unlabeled images."""

    # dino_vits8 | dino_vits16 | dino_vitb8 | dino_vitb16 | dinov2_vit{s,b,l}14[_reg]; official: DINO ViT-B/8
    arch: str = "dino_vitb8"
    weights: str | None = None  # safetensors/pth file; None: look in the weights cache folder
    features: Literal["k", "tokens"] = "k"  # last-block keys (DINO v1 recipe) or normalised last-layer tokens
    fixed_size: int = 480  # images are resized to fixed_size x fixed_size before the ViT
    tau: float = 0.15  # affinity threshold: W_ij = 1 if cos > tau else eps
    eps: float = 1e-5  # affinity of non-edges
    num_masks: int = 3  # N: cuts per image
    crf: bool = True  # dense-CRF refinement (needs the `crf` extra)
    crf_min_iou: float = 0.5  # drop a mask whose CRF output has IoU < this with the cut
    # generalised eigen-solver: dense = scipy eigh as the official code (O(N^3), reproduces it exactly);
    # arpack = eigsh on the normalised graph (same vector, ~30x faster at 60x60 patches); auto: dense <= 1024
    eigensolver: Literal["auto", "dense", "arpack"] = "auto"
    every: int = 1  # with --videos: use every k-th frame
    batch_size: int = 8  # images per ViT forward
    # drop region-sized masks (usually background, not objects): covering more than max_area of the image or
    # touching more than max_borders of its 4 borders. Official: 1.0 and 4 (keep every mask)
    max_area: float = 1.0
    max_borders: int = 4

    def __post_init__(self) -> None:
        check_section(
            self,
            "discovery",
            {
                "fixed_size": SIDE,
                "tau": Range(0, 1, hi_open=True),
                "eps": Range(0, 1, lo_open=True, hi_open=True),
                "num_masks": COUNT,
                "crf_min_iou": FRACTION,
                "every": COUNT,
                "batch_size": COUNT,
                "max_area": FRACTION,
                "max_borders": Range(0, 4),
            },
        )


@dataclass(frozen=True)
class SynthesisConfig:
    """S2: ImageCut2Video, images + pseudo-masks -> synthetic training clips with known tracks (the per-frame
    augmentation of the official ``YTVISDatasetMapper`` and the copy-paste of its ``train_loop``)."""

    num_frames: int = 3  # T per clip (SAMPLING_FRAME_NUM)
    crop_min: int = 600  # per-frame absolute random crop, at full scale
    crop_max: int = 720
    short_sides: tuple[int, ...] = (360, 480)  # clip-wide choice of the resized short side
    max_size: int = 1333
    flip_prob: float = 0.5  # clip-wide horizontal flip
    brightness: tuple[float, float] = (0.9, 1.1)  # per-frame
    contrast: tuple[float, float] = (0.9, 1.1)  # per-frame
    rotation: tuple[float, float] = (-15.0, 15.0)  # degrees, per-frame, expand=False
    rotation_center: tuple[float, float] = (0.4, 0.6)  # relative centre range
    copy_paste: bool = True  # paste a partner image's instances on every frame
    paste_scale: tuple[float, float] = (0.8, 1.0)  # per-frame scale of the pasted layer
    paste_max_overlap: float = 0.5  # no paste if a pasted mask covers >= this of a target object

    def __post_init__(self) -> None:
        check_section(
            self,
            "synthesis",
            {
                "num_frames": COUNT,
                "crop_min": COUNT,
                "crop_max": COUNT,
                "short_sides": SIDE,
                "max_size": SIDE,
                "flip_prob": FRACTION,
                "brightness": NON_NEGATIVE,
                "contrast": NON_NEGATIVE,
                "rotation": Range(-180, 180),
                "rotation_center": FRACTION,
                "paste_scale": Range(0, 1, lo_open=True),
                "paste_max_overlap": FRACTION,
            },
            ordered=("brightness", "contrast", "rotation", "rotation_center", "paste_scale"),
        )
        if self.crop_min > self.crop_max:
            raise ConfigError(
                f"'synthesis.crop_min' ({self.crop_min}) must be <= 'synthesis.crop_max' ({self.crop_max})",
                key="synthesis.crop_min",
            )


@dataclass(frozen=True)
class ModelConfig:
    """The class-agnostic VideoMask2Former with the quality (mask-IoU) head. Defaults: ``paper_r50``."""

    preset: str = "paper_r50"  # paper_r50 | tiny; fields below override the preset when set in a file
    backbone: Literal["resnet", "vit"] = "resnet"
    weights: str | None = None  # initial weights (official .pth, or our safetensors)
    # backbone=vit: a DINO/DINOv2 ViT through a simple feature pyramid (CPU / offline path)
    vit_arch: str = "dinov2_vits14_imgfocus"
    vit_weights: str | None = None  # ViT weights file (default: the weights cache)
    freeze_vit: bool = True  # a frozen ViT runs without autograd
    # a small trainable conv stem on the image added to the stride-4/8 maps: edges the stride-16 tokens lack
    vit_image_stem: bool = False


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedule, losses and data mixing for every training stage."""

    max_iters: int = 8000
    batch_size: int = 2  # clips per iteration (global)
    lr: float = 2e-5
    weight_decay: float = 0.05  # 0 on norms and embeddings
    backbone_lr_mult: float = 0.1
    clip_grad_norm: float = 0.01  # full-model gradient-norm clipping
    warmup_iters: int = 10
    warmup_factor: float = 1.0  # linear warm-up starts at this factor (official 1.0: no warm-up in effect)
    # constant (official; STEPS at the last iteration), step (at ``steps``), cosine (1 -> 0 over max_iters:
    # every stage, self-training rounds included, ends annealed; steadier short CPU runs)
    schedule: Literal["constant", "step", "cosine"] = "constant"
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    # mixed precision: bf16 (CPU or CUDA) or fp16 (CUDA only, with a loss scaler: the official AMP on GPUs);
    # auto: bf16 where the device computes it natively (CUDA with bf16, a CPU with AVX512-BF16 or AMX), else
    # float32 (a CPU without a bf16 unit emulates it ~3x slower). Commands record the precision that ran
    amp: Literal["auto", "off", "bf16", "fp16"] = "off"
    grad_accum: int = 1
    checkpoint_period: int = 1000
    log_period: int = 20
    seed: int = 0
    # deterministic kernels: bit-exact reruns and resumes (some multithreaded CPU backward kernels and CUDA
    # atomics otherwise reorder float sums, ~1e-5 after a few steps); costs some speed
    deterministic: bool = False
    num_workers: int = 0
    # > 0: an exponential moving average of the weights with this decay is kept, and it is the stage's output
    # (Mean Teacher); 0: the last weights, as the official code (steadier short CPU runs with ~0.99-0.999)
    ema_decay: float = 0.0
    # losses
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    quality_weight: float = 20.0
    no_object_weight: float = 0.1
    deep_supervision: bool = True
    droploss: bool = False
    droploss_tau: float = 0.01
    # quality loss targets: "all" (code) every query vs its best-mean-IoU GT; "matched" (paper) matched only
    quality_loss: Literal["all", "matched"] = "all"
    # the quality head is trained on the masks of every decoder output (official) or of the final one only
    # (a quarter of the head's training cost for the 3-layer tiny decoder)
    quality_outputs: Literal["all", "last"] = "all"
    freeze_quality_head: bool = False

    def __post_init__(self) -> None:
        check_section(
            self,
            "training",
            {
                "max_iters": COUNT,
                "batch_size": COUNT,
                "lr": POSITIVE,
                "weight_decay": NON_NEGATIVE,
                "backbone_lr_mult": NON_NEGATIVE,
                "clip_grad_norm": POSITIVE,
                "warmup_iters": NON_NEGATIVE,
                "warmup_factor": Range(0, 1, lo_open=True),
                "gamma": POSITIVE,
                "grad_accum": COUNT,
                "checkpoint_period": COUNT,
                "log_period": COUNT,
                "seed": Range(0, 2**32 - 1),
                "num_workers": NON_NEGATIVE,
                "num_points": COUNT,
                "oversample_ratio": Range(lo=1),
                "importance_sample_ratio": FRACTION,
                "class_weight": NON_NEGATIVE,
                "mask_weight": NON_NEGATIVE,
                "dice_weight": NON_NEGATIVE,
                "quality_weight": NON_NEGATIVE,
                "no_object_weight": FRACTION,
                "droploss_tau": FRACTION,
                "ema_decay": Range(0, 1, hi_open=True),
            },
        )
        if self.steps:  # empty is allowed: no steps
            check_section(self, "training", {"steps": COUNT}, ordered=("steps",))


@dataclass(frozen=True)
class SelectionConfig:
    """S4: pseudo-label selection, fusion and the self-training rounds (every ablation of the paper's Table 3 is
    a field)."""

    top_k: int = 10  # queries kept per video before NMS
    nms_iou: float = 0.5  # two tracks are one object if mask IoU >= this in any frame
    score_min: float = 0.25  # class-score threshold
    quality_min: float = 0.75  # per-frame threshold on Q (0.3 for dense scenes, the paper's UVO setting)
    selection_score: Literal["quality", "confidence"] = "quality"  # Q = s * IoU_hat, or s alone (ablation)
    min_frames: int = 2  # keep an object only if selected in >= this many non-empty frames (paper: 1)
    # a frame whose mask covers more than max_area of the frame or touches more than max_borders of its 4
    # borders is not selected (a background region, however confident). Official: 1.0 and 4 (no rule)
    max_area: float = 1.0
    max_borders: int = 4
    fusion: Literal["fuse", "replace"] = "fuse"  # adaptive fusion with earlier rounds, or replace (ablation)
    fuse_iou: float = 0.5  # new and old label are one object if IoU >= this in any frame
    min_eligible_frames: int = 2  # a video is used only with >= this many eligible frames
    num_rounds: int = 2  # K self-training rounds
    round_iters: int = 10000
    round_batch_size: int = 4
    reset_each_round: bool = True  # retrain from M0 each round (ablation: continue)
    freeze_quality_head: bool = True  # ablation: train the head during self-training
    droploss: bool = True  # ablation: vanilla mask loss
    mix_prob: float = 0.5  # probability that a batch comes from the pseudo-labelled real videos
    # mixing that follows the amount of labels: with mix_frames > 0 the real-video probability is
    # mix_prob x min(1, labelled frames / mix_frames), so a handful of labelled frames is not drawn half the
    # time (overfitting them). Official: 0 (a fixed mix_prob)
    mix_frames: int = 0
    # the rounds' learning rate; 0 = training.lr (official: one rate for every stage)
    round_lr: float = 0.0
    # with a labelled validation set: the best model (M0 or a round) by this metric is reported as the result
    select_metric: Literal["AP", "AP50", "AP75", "AR1", "AR10", "JF"] = "AP50"
    # without one: the model with the best label-free criterion on the unlabeled videos (selftrain/pick.py):
    # "quality" (mean Q of its objects), "stability", "agreement", or "last" (the last round)
    label_free_pick: Literal["last", "quality", "stability", "agreement"] = "quality"

    def __post_init__(self) -> None:
        check_section(
            self,
            "selection",
            {
                "top_k": COUNT,
                "nms_iou": FRACTION,
                "score_min": FRACTION,
                "quality_min": FRACTION,
                "min_frames": COUNT,
                "fuse_iou": FRACTION,
                "min_eligible_frames": COUNT,
                "num_rounds": NON_NEGATIVE,
                "round_iters": COUNT,
                "round_batch_size": COUNT,
                "mix_prob": FRACTION,
                "mix_frames": NON_NEGATIVE,
                "round_lr": NON_NEGATIVE,
                "max_area": FRACTION,
                "max_borders": Range(0, 4),
            },
        )


@dataclass(frozen=True)
class InferenceConfig:
    """Whole-video or streaming prediction and post-processing."""

    short_side: int = 360
    max_size: int = 1333
    top_k: int = 10
    window: int = 0  # frames per window in streaming mode; 0 = whole video in one clip (the reference)
    overlap: int = 4  # frames shared by consecutive windows
    # auto | cpu | cuda | cuda:N: where every command computes (auto: the GPU when CUDA is usable); the --device
    # flag overrides it, and the config.yaml a command writes holds the device that ran
    device: str = "auto"
    # autocast of the network at inference: bf16 (CPU or CUDA) or fp16 (CUDA only); post-processing stays float32;
    # auto: bf16 where the device computes it natively, else float32 (as training.amp)
    amp: Literal["auto", "off", "bf16", "fp16"] = "off"
    # how output tracks are ranked: "class" = the foreground probability (the official test); "quality" = that x
    # the track's mean predicted IoU (Mask Scoring R-CNN's rescoring with the quality head). Pseudo-labelling
    # always uses the class score (its selection multiplies in the predicted IoU per frame itself).
    track_score: Literal["class", "quality", "main"] = "class"
    # > 0: every predicted mask is refined by MaskCut's dense CRF on its frame resized to this short side
    # (sharper edges for small, low-resolution models; needs the crf extra). 0: off (the official test)
    crf_short_side: int = 0
    crf_max_tracks: int = 3  # only the masks of the best this many tracks are refined (~0.2 s per mask)
    # MiB of a frozen ViT's tokens kept to be reused when several models predict the same frames (the
    # self-training passes, scoring every model); 0: off. Same outputs, the ViT runs once per frame
    token_cache_mb: int = 1024

    def __post_init__(self) -> None:
        check_section(
            self,
            "inference",
            {
                "short_side": SIDE,
                "max_size": SIDE,
                "top_k": COUNT,
                "window": NON_NEGATIVE,
                "overlap": NON_NEGATIVE,
                "crf_short_side": NON_NEGATIVE,
                "crf_max_tracks": NON_NEGATIVE,
                "token_cache_mb": NON_NEGATIVE,
            },
        )
        if self.window and self.overlap >= self.window:
            raise ConfigError(
                f"'inference.overlap' ({self.overlap}) must be smaller than 'inference.window' ({self.window}): "
                f"consecutive windows share overlap frames; set it to {self.window - 1} or less (--overlap)",
                key="inference.overlap",
            )
        if self.window and self.overlap == 0:
            raise ConfigError(
                f"'inference.overlap' is 0 with 'inference.window' {self.window}: tracks are linked from one window "
                "to the next by their masks in the frames both share, so with no shared frame every track would "
                "break at every window border; set it to 1 or more (--overlap; default 4), or window 0",
                key="inference.overlap",
            )


@dataclass(frozen=True)
class EvaluationConfig:
    """YouTube-VIS AP/AR and DAVIS J&F."""

    class_agnostic: bool = True
    max_dets: tuple[int, ...] = (1, 10, 100)
    area_small: float = 128.0**2  # small < this <= medium (on the mean per-frame area)
    area_large: float = 256.0**2  # medium < this <= large
    davis_keep_first_last: bool = False  # DAVIS-2016 excludes the first and last frame
    davis_bound_th: float = 0.008  # boundary tolerance, fraction of the image diagonal
    davis_max_proposals: int = 20  # DAVIS-2017 unsupervised: proposals per sequence

    def __post_init__(self) -> None:
        check_section(
            self,
            "evaluation",
            {
                "max_dets": COUNT,
                "area_small": POSITIVE,
                "area_large": POSITIVE,
                "davis_bound_th": Range(0, 1, lo_open=True, hi_open=True),
                "davis_max_proposals": Range(1, 255),  # ids of an 8-bit palette PNG
            },
            ordered=("max_dets",),
        )
        if self.area_small >= self.area_large:
            raise ConfigError(
                f"'evaluation.area_small' ({self.area_small:g}) must be smaller than 'evaluation.area_large' "
                f"({self.area_large:g})",
                key="evaluation.area_small",
            )


@dataclass(frozen=True)
class Config:
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)


# ---------------------------------------------------------------------------------------------------
# loading, overriding, saving


def load_config(
    paths: Sequence[str | Path] = (), overrides: Sequence[str] = (), base: Config | None = None
) -> Config:
    """Defaults (or ``base``) + each YAML delta in order + each ``a.b=value`` override in order.

    The deltas are merged first (a later one wins for the same key) and applied at once, so that the ranges
    and the rules between fields (``inference.overlap < inference.window``) see the final values whatever
    the order of the files and overrides; an error names the file or override that set the key at fault."""
    cfg = base if base is not None else Config()
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in paths:
        path = resolve_config_file(path)
        try:
            delta = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}") from err
        except ConfigError as err:  # a duplicate key
            raise ConfigError(f"{path}: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from err
        if not isinstance(delta, Mapping):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(delta).__name__}")
        _merge(merged, delta, sources, str(path))
    for text in overrides:
        _merge(merged, parse_override(text), sources, f"--set {text}")
    return apply_delta(cfg, merged, source=sources)


def _merge(merged: dict, delta: Mapping, sources: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``delta`` into ``merged``, recording which source set each dotted key last."""
    for key, value in delta.items():
        dotted = f"{prefix}{key}"
        sources[dotted] = source
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            _merge(merged[key], value, sources, source, prefix=f"{dotted}.")
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
            if isinstance(value, Mapping):
                _record(value, sources, source, prefix=f"{dotted}.")


def _record(delta: Mapping, sources: dict[str, str], source: str, prefix: str) -> None:
    for key, value in delta.items():
        sources[f"{prefix}{key}"] = source
        if isinstance(value, Mapping):
            _record(value, sources, source, prefix=f"{prefix}{key}.")


PROFILES_DIR = Path(__file__).resolve().parent / "configs"


def profiles() -> list[str]:
    """Names of the profiles shipped with autoqvis."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_config_file(path: str | Path) -> Path:
    """An existing YAML file, or the shipped profile of that name (``small_data``, ``configs/small_data.yaml``)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; pass a YAML file")
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    shipped = PROFILES_DIR / name
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config file {path} not found; pass an existing YAML file or a shipped profile "
        f"({', '.join(profiles())})"
    )


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=0.5"`` -> ``{"a": {"b": 0.5}}``; the value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse the value of override {text!r}: {_yaml_problem(err)}") from err
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def apply_delta(obj: Any, delta: Mapping[str, Any], source: str | Mapping[str, str], prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with ``delta`` applied; unknown keys, bad types and values out of
    range raise. ``source`` names where the delta came from, one name or one per dotted key."""

    def where(dotted: str) -> str:
        if isinstance(source, str):
            return source
        while dotted and dotted not in source:
            dotted = dotted.rpartition(".")[0]
        return source.get(dotted, "config")

    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in delta.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(_unknown_key_message(dotted, where(dotted)), key=dotted)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where(dotted)}: '{dotted}' is a section and needs a mapping, got {value!r}", key=dotted
                )
            changes[key] = apply_delta(current, value, source, prefix=f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], dotted, where(dotted))
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as err:  # a range or a rule between fields (from the section's __post_init__)
        raise ConfigError(f"{where(err.key or prefix.rstrip('.'))}: {err}", key=err.key) from None


def config_to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML/JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {
        f.name: config_to_dict(v) if dataclasses.is_dataclass(v) else plain(v)
        for f in dataclasses.fields(obj)
        for v in [getattr(obj, f.name)]
    }


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Inverse of :func:`config_to_dict` (validated like a YAML delta)."""
    return apply_delta(Config(), data, source="saved config")


def save_config(
    cfg: Config, directory: str | Path, name: str = "config.yaml", command: str | None = None
) -> Path:
    """Write the resolved configuration into ``directory``, after a header with the git commit (when known)
    and the command line that ran (``command``, default the one :func:`set_command_line` recorded)."""
    from autoqvis.io.atomic import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    command = command if command is not None else _COMMAND_LINE
    header = f"# resolved autoqvis configuration\n# git commit: {git_commit() or 'unknown'}\n"
    if command:
        header += "# command: " + command.replace("\n", " ") + "\n"
    text = header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write_text(directory / name, text)


@contextlib.contextmanager
def saved_config(
    cfg: Config, directory: str | Path, name: str = "config.yaml", enabled: bool = True
) -> Iterator[Path]:
    """Save the config for a run whose resumable units are checked as it goes (self-training, the demo): when
    the run stops because earlier outputs were made with other settings (:class:`StaleOutputError`), the
    previous ``config.yaml`` is put back, since it still describes the files beside it."""
    from autoqvis.io.atomic import atomic_write_bytes

    path = Path(directory) / name
    previous = path.read_bytes() if enabled and path.is_file() else None
    if enabled:
        save_config(cfg, directory, name)
    try:
        yield path
    except StaleOutputError:
        if enabled and previous is not None:
            atomic_write_bytes(path, previous)
        raise


_COMMAND_LINE: str | None = None


def set_command_line(argv: Sequence[str] | None) -> None:
    """Record the command line this process runs (the CLI does), for the header of every saved config."""
    global _COMMAND_LINE
    _COMMAND_LINE = None if argv is None else shlex.join(["autoqvis", *argv])


def git_commit() -> str | None:
    """The commit of the autoqvis source tree, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def all_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """Every valid dotted key, e.g. ``selection.quality_min``."""
    obj = Config() if obj is None else obj
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


# ---------------------------------------------------------------------------------------------------
# YAML as the user typed it


class _Loader(yaml.SafeLoader):
    """YAML with the booleans of YAML 1.2 (``true`` / ``false`` only: ``off``, ``no``, ``on``, ``yes`` stay the
    strings they look like, so ``--set training.amp=off`` means ``'off'``) and no duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line {first}): "
                "a key may appear once per section; keep one of them"
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str) -> Any:
    """Parse YAML as :func:`yaml.safe_load` does, but with YAML 1.2 booleans and duplicate keys refused
    (:class:`ConfigError` naming the key and both lines)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds plain data only


# ---------------------------------------------------------------------------------------------------
# helpers


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what the YAML parser expected and where."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _unknown_key_message(dotted: str, source: str) -> str:
    candidates = all_keys() + [f.name for f in dataclasses.fields(Config)]
    nearest = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.0)
    # prefer a key in the same section when the section exists
    section = dotted.rpartition(".")[0]
    same_section = [k for k in candidates if k.rpartition(".")[0] == section]
    if same_section:
        nearest = difflib.get_close_matches(dotted, same_section, n=1, cutoff=0.0) or nearest
    hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
    return f"{source}: unknown config key '{dotted}'{hint}"


def _coerce(value: Any, hint: Any, dotted: str, source: str) -> Any:
    """Check ``value`` against the type hint; convert YAML lists to tuples and ints to floats."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: '{dotted}' must be {expected}, got {value!r}")

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted, source)
            except ConfigError as err:
                errors.append(err)
        raise fail(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise fail(f"a list ({_type_name(hint)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], dotted, source) for v in value)
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} values")
        return tuple(_coerce(v, a, dotted, source) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:  # YAML 1.1's yes/no/on/off, as typed
            return _BOOL_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise ConfigError(f"{source}: '{dotted}' has an unsupported type {hint}")  # internal: a new field type


_BOOL_WORDS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False}


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
