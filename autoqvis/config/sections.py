"""The configuration sections: one frozen dataclass per stage, every field with its default, its meaning and
its allowed values (checked in ``__post_init__``, so a section that exists is valid).

The stage labels in the docstrings below are the ones the official code and the paper's pipeline use:

- S0 discovery: MaskCut pseudo-masks on unlabeled images (``discovery``);
- S1 the CutLER image model that initialises VideoCutLER (outside this project: its checkpoint is an input);
- S2 VideoCutLER: ImageCut2Video synthetic clips (``synthesis``) and the VIS model (``model``, ``training``);
- S3 the AutoQ-VIS initial stage: the VIS model trained jointly with the quality head on synthetic clips, the
  model called M0 (``training``);
- S4 the self-training rounds on unlabeled videos (``selection``, ``rounds``, ``selftrain``);
- S5 evaluation (``evaluation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from autoqvis.config.checks import (
    COUNT,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SIDE,
    ConfigError,
    Range,
    check_device_name,
    check_section,
    choices,
)

__all__ = [
    "Config",
    "DiscoveryConfig",
    "EvaluationConfig",
    "InferenceConfig",
    "ModelConfig",
    "RoundsConfig",
    "SelectionConfig",
    "SelfTrainConfig",
    "SynthesisConfig",
    "TrainingConfig",
    "ytvis_metric_names",
]

# The names a field can take, declared once here: the code that uses them checks that it knows exactly
# these (autoqvis.model.build.PRESETS, autoqvis.model.vit.ARCHS).
Preset = Literal["paper_r50", "videocutler_r50", "tiny"]  # model architectures (autoqvis.model.build)
BackboneName = Literal["resnet", "vit"]
# released self-supervised ViTs (autoqvis.model.vit.ARCHS); ``dinov2_vits14_imgfocus`` is the offline DINOv2-S
ViTArch = Literal[
    "dino_vits8",
    "dino_vits16",
    "dino_vitb8",
    "dino_vitb16",
    "dinov2_vits14",
    "dinov2_vitb14",
    "dinov2_vitl14",
    "dinov2_vits14_reg",
    "dinov2_vits14_imgfocus",
    "dinov2_vitb14_reg",
    "dinov2_vitl14_reg",
]
# what a model can be chosen by: YouTube-VIS metrics (AR at the first two evaluation.max_dets) or DAVIS J&F
SelectMetric = Literal["AP", "AP50", "AP75", "AR1", "AR10", "JF"]
Amp = Literal["auto", "off", "bf16", "fp16"]
TrackScore = Literal["class", "quality", "main"]  # how output tracks are ranked (inference.track_score)


@dataclass(frozen=True)
class DiscoveryConfig:
    """S0: self-supervised ViT features + normalised cuts (MaskCut) on unlabeled images."""

    arch: ViTArch = "dino_vitb8"  # official: DINO ViT-B/8
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
    # the one background-region rule: a mask covering more than max_area of its image or touching more than
    # max_borders of its 4 borders is a region (usually background), not an object. Discovery drops such cuts,
    # and the self-training selection does not select such frames, however confident. Official: 1.0 and 4
    # (no rule)
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

    preset: Preset = "paper_r50"  # the architecture's sizes (autoqvis.model.build.PRESETS)
    backbone: BackboneName = "resnet"
    weights: str | None = None  # initial weights (official .pth, or our safetensors)
    # backbone=vit: a DINO/DINOv2 ViT through a simple feature pyramid (CPU / offline path)
    vit_arch: ViTArch = "dinov2_vits14_imgfocus"
    vit_weights: str | None = None  # ViT weights file (default: the weights cache)
    freeze_vit: bool = True  # a frozen ViT runs without autograd
    # a small trainable conv stem on the image added to the stride-4/8 maps: edges the stride-16 tokens lack
    vit_image_stem: bool = False

    def __post_init__(self) -> None:
        check_section(self, "model")


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
    amp: Amp = "off"
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
    # DropLoss (no mask loss where a matched mask's soft IoU <= droploss_tau) and the frozen quality head: the
    # one home of both. None: the official value of the stage (off for VideoCutLER, the initial stage M0 and
    # `autoqvis train`; on in the self-training rounds); true or false: that, in every stage (the paper's
    # Table 3 ablations: droploss=false, freeze_quality_head=false for the rounds). See stage_losses()
    droploss: bool | None = None
    droploss_tau: float = 0.01
    # quality loss targets: "all" (code) every query vs its best-mean-IoU GT; "matched" (paper) matched only
    quality_loss: Literal["all", "matched"] = "all"
    # the quality head is trained on the masks of every decoder output (official) or of the final one only
    # (a quarter of the head's training cost for the 3-layer tiny decoder)
    quality_outputs: Literal["all", "last"] = "all"
    freeze_quality_head: bool | None = None  # see droploss

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

    def stage_losses(self, self_training: bool = False) -> TrainingConfig:
        """This section as a stage trains with it: ``droploss`` and ``freeze_quality_head`` left at None
        become the stage's official value (True in a self-training round, False in any other stage)."""
        return replace(
            self,
            droploss=self_training if self.droploss is None else self.droploss,
            freeze_quality_head=self_training
            if self.freeze_quality_head is None
            else self.freeze_quality_head,
        )


@dataclass(frozen=True)
class SelectionConfig:
    """S4: which pseudo-labels a self-training round keeps: per-frame selection, the objects kept, fusion with
    earlier rounds and the videos used (the ablations of the paper's Table 3 on the labels). A round's
    selection is fingerprinted with this whole section: any change selects again."""

    top_k: int = 10  # queries kept per video before NMS
    nms_iou: float = 0.5  # two tracks are one object if mask IoU >= this in any frame
    score_min: float = 0.25  # class-score threshold
    quality_min: float = 0.75  # per-frame threshold on Q (0.3 for dense scenes, the paper's UVO setting)
    selection_score: Literal["quality", "confidence"] = "quality"  # Q = s * IoU_hat, or s alone (ablation)
    min_frames: int = 2  # keep an object only if selected in >= this many non-empty frames (paper: 1)
    # (a frame whose mask is a background region by discovery.max_area / max_borders is not selected)
    fusion: Literal["fuse", "replace"] = "fuse"  # adaptive fusion with earlier rounds, or replace (ablation)
    fuse_iou: float = 0.5  # new and old label are one object if IoU >= this in any frame
    min_eligible_frames: int = 2  # a video is used only with >= this many eligible frames
    # track filters after min_frames (not in the official code; 0 = off; bench/studies/label_precision.py):
    # keep a track only if the mean IoU of its consecutive non-empty masks is >= min_consistency, and if it
    # has a non-empty mask in >= min_persistence of the video's frames
    min_consistency: float = 0.0
    min_persistence: float = 0.0
    # keep a track only if it agrees with the MaskCut teacher: the mean IoU of its masks with the teacher's
    # best-matching cut, over the frames the teacher cuts (every third frame, t % 3 == 1), is >= this. Runs
    # MaskCut (the discovery section) on those frames of every unlabeled video once per run; 0 = off
    min_teacher_iou: float = 0.0

    def __post_init__(self) -> None:
        check_section(
            self,
            "selection",
            {
                "min_consistency": FRACTION,
                "min_persistence": FRACTION,
                "min_teacher_iou": FRACTION,
                "top_k": COUNT,
                "nms_iou": FRACTION,
                "score_min": FRACTION,
                "quality_min": FRACTION,
                "min_frames": COUNT,
                "fuse_iou": FRACTION,
                "min_eligible_frames": COUNT,
            },
        )


@dataclass(frozen=True)
class RoundsConfig:
    """S4: how each self-training round trains, as a change of the ``training`` section (:meth:`training`:
    its iterations, batch and rate; DropLoss and the frozen quality head are ``training.droploss`` and
    ``training.freeze_quality_head``, on in the rounds unless set), and how its batches mix the
    pseudo-labelled videos with synthetic clips. Each round's training is fingerprinted with this whole
    section."""

    iters: int = 10000  # iterations of each round (training.max_iters of a round)
    batch_size: int = 4  # clips per iteration (global; training.batch_size of a round)
    lr: float = 0.0  # the rounds' learning rate; 0 = training.lr (official: one rate for every stage)
    mix_prob: float = 0.5  # probability that a batch comes from the pseudo-labelled real videos
    # mixing that follows the amount of labels: with mix_frames > 0 the real-video probability is
    # mix_prob x min(1, labelled frames / mix_frames), so a handful of labelled frames is not drawn half the
    # time (overfitting them). Official: 0 (a fixed mix_prob)
    mix_frames: int = 0

    def __post_init__(self) -> None:
        check_section(
            self,
            "rounds",
            {
                "iters": COUNT,
                "batch_size": COUNT,
                "lr": NON_NEGATIVE,
                "mix_prob": FRACTION,
                "mix_frames": NON_NEGATIVE,
            },
        )

    def training(self, training: TrainingConfig) -> TrainingConfig:
        """A round's training: ``training`` changed by this section (iterations, batch, the rate when set),
        with the losses of a self-training round (:meth:`TrainingConfig.stage_losses`)."""
        changed = replace(
            training, max_iters=self.iters, batch_size=self.batch_size, lr=self.lr or training.lr
        )
        return changed.stage_losses(self_training=True)


@dataclass(frozen=True)
class SelfTrainConfig:
    """S4: the self-training loop: how many rounds, where each starts, and which model is the result. No
    output depends on these but ``best.json``, chosen again on every run (so a run can be extended by a
    round without training the earlier ones again)."""

    num_rounds: int = 2  # K self-training rounds
    reset_each_round: bool = True  # each round trains from M0 (ablation: from the previous round)
    # with a labelled validation set: the best model (M0 or a round) by this metric is reported as the result
    select_metric: SelectMetric = "AP50"
    # without one: the model with the best label-free criterion on the unlabeled videos (selftrain/pick.py):
    # "teacher" (agreement with MaskCut on the held-out videos), "quality" (mean Q of its objects),
    # "stability", "agreement", or "last" (the last round)
    label_free_pick: Literal["last", "teacher", "quality", "stability", "agreement"] = "teacher"
    # fraction of the unlabeled videos (by a hash of the name) that give no pseudo-label to any round: the
    # teacher criterion's videos. 0: every video is pseudo-labelled (the official loop)
    holdout: float = 0.2
    # a round replaces M0 only if its criterion beats M0's, paired by video, by more than this many standard
    # errors; else best.json names M0 ("no criterion could tell; kept M0"). 0: the highest mean criterion
    pick_margin: float = 2.0

    def __post_init__(self) -> None:
        check_section(
            self,
            "selftrain",
            {"num_rounds": NON_NEGATIVE, "holdout": Range(0.0, 0.9), "pick_margin": NON_NEGATIVE},
        )


@dataclass(frozen=True)
class InferenceConfig:
    """Whole-video or streaming prediction and post-processing."""

    short_side: int = 360
    max_size: int = 1333
    top_k: int = 10
    window: int = 0  # frames per window in streaming mode; 0 = whole video in one clip (the reference)
    overlap: int = 4  # frames shared by consecutive windows
    # autocast of the network at inference: bf16 (CPU or CUDA) or fp16 (CUDA only); post-processing stays float32;
    # auto: bf16 where the device computes it natively, else float32 (as training.amp)
    amp: Amp = "off"
    # how output tracks are ranked: "class" = the foreground probability (the official test); "quality" = that x
    # the track's mean predicted IoU (Mask Scoring R-CNN's rescoring with the quality head). Pseudo-labelling
    # always uses the class score (its selection multiplies in the predicted IoU per frame itself).
    track_score: TrackScore = "class"
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
    # detections per video (a, b, c): AP at c, AR at a and b (the columns AR<a>, AR<b>; see ytvis_metric_names)
    max_dets: tuple[int, int, int] = (1, 10, 100)
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
        )
        if len(self.max_dets) != 3 or not self.max_dets[0] < self.max_dets[1] < self.max_dets[2]:
            raise ConfigError(
                f"'evaluation.max_dets' must be 3 increasing numbers of detections per video (AR at the first "
                f"two, AP at the last), got {list(self.max_dets)}",
                key="evaluation.max_dets",
            )
        if self.area_small >= self.area_large:
            raise ConfigError(
                f"'evaluation.area_small' ({self.area_small:g}) must be smaller than 'evaluation.area_large' "
                f"({self.area_large:g})",
                key="evaluation.area_small",
            )


def ytvis_metric_names(max_dets: tuple[int, ...] = (1, 10, 100)) -> tuple[str, ...]:
    """The YouTube-VIS metrics reported for ``evaluation.max_dets`` ``(a, b, c)``, in the official order:
    AP, AP50, AP75, APs, APm, APl (at ``c`` detections per video), then AR<a> and AR<b>."""
    if len(max_dets) != 3:
        raise ValueError(
            f"max_dets must hold 3 numbers of detections (AR at two, AP at the last), got {max_dets}"
        )
    return ("AP", "AP50", "AP75", "APs", "APm", "APl", f"AR{max_dets[0]}", f"AR{max_dets[1]}")


@dataclass(frozen=True)
class Config:
    # auto | cpu | cuda | cuda:N: where every stage of a command computes (discovery, training, prediction,
    # scoring; auto: the GPU when CUDA is usable). Chosen once: the --device flag overrides it, the command
    # resolves it, and the config.yaml it writes holds the device that ran
    device: str = "auto"
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    selftrain: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def __post_init__(self) -> None:
        """The device's name, and rules between sections."""
        check_device_name(self.device, "device")
        metric, reported = self.selftrain.select_metric, ytvis_metric_names(self.evaluation.max_dets)
        if metric.startswith("AR") and metric not in reported:
            allowed = [m for m in choices(SelectMetric) if m in (*reported, "JF")]
            raise ConfigError(
                f"'selftrain.select_metric' {metric} is not reported with 'evaluation.max_dets' "
                f"{list(self.evaluation.max_dets)}; choose one of {', '.join(allowed)}",
                key="selftrain.select_metric",
            )
