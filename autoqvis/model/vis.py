"""The class-agnostic VideoMask2Former with the quality head: preprocessing, forward, targets, post-processing.

State-dict layout is the official one: ``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*`` (including ``maskiou_feature_extractor.*``) and ``criterion.empty_weight``.

Eval post-processing equals the official ``inference_video``: softmax scores without the no-object column,
top-k (sorted), bilinear upsampling of the kept masks to the padded input size, crop to the frame size, resize
to the output size, ``> 0``; predicted IoUs clamped to [0, 1]. Only the kept queries are upsampled and scored
by the quality head (the official model upsamples and scores all of them; the kept outputs are the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.config import InferenceConfig, ModelConfig
from autoqvis.config.sections import BackboneName, ViTArch
from autoqvis.device import autocast
from autoqvis.model.backbone import Backbone
from autoqvis.model.decoder import VideoMaskedDecoder
from autoqvis.model.resnet import ResNet
from autoqvis.structures import DecoderOutput

__all__ = ["ModelSpec", "VideoMaskFormer", "VideoOutput"]


@dataclass(frozen=True)
class ModelSpec:
    """Every architecture number (official names in comments). ``paper_r50`` is the default.

    The backbone fields share their names, types and defaults with :class:`~autoqvis.config.ModelConfig`, which
    sets them (:func:`autoqvis.model.build.model_spec`)."""

    depth: int = 50  # MODEL.RESNETS.DEPTH
    stem_out_channels: int = 64
    width_per_group: int = 64
    res2_out_channels: int = 256
    conv_dim: int = 256  # SEM_SEG_HEAD.CONVS_DIM
    mask_dim: int = 256
    encoder_layers: int = 6  # SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
    encoder_ffn: int = 1024  # hard-coded in the official pixel decoder
    encoder_dropout: float = 0.3  # MASK_FORMER.DROPOUT of the video configs (pixel-decoder encoder only)
    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9  # masked-attention layers (= MASK_FORMER.DEC_LAYERS - 1)
    num_classes: int = 1
    quality_head: tuple[int, int, int] | None = (257, 256, 1024)  # (in, conv, fc) widths; None: no head
    size_divisibility: int = 32
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # RGB, 0..255
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    backbone: BackboneName = (
        ModelConfig.backbone
    )  # resnet | vit (then vit_arch through a simple feature pyramid)
    vit_arch: ViTArch = ModelConfig.vit_arch
    freeze_vit: bool = ModelConfig.freeze_vit
    # backbone=vit: add a small trainable conv stem on the image to the stride-4 and stride-8 maps (the ViT's
    # tokens alone are stride 16: at low resolution masks come out blobby)
    vit_image_stem: bool = ModelConfig.vit_image_stem
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_json(cls, data: dict) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        data = {k: v for k, v in data.items() if k not in _OBSOLETE}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model spec fields {sorted(unknown)}; known: {sorted(known)}")
        data = dict(data)
        for key in ("quality_head", "pixel_mean", "pixel_std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


# fields of model.json files written by earlier versions, read and ignored (test_topk: inference.top_k now;
# num_frames: the training clip length, synthesis.num_frames, never read from the spec)
_OBSOLETE = ("test_topk", "num_frames")


@dataclass
class VideoOutput:
    """Post-processed predictions of one video (``K`` kept queries)."""

    scores: Tensor  # (K,)
    labels: Tensor  # (K,)
    masks: Tensor  # (K, T, H, W) bool at the output size
    ious: Tensor | None  # (K, T) predicted IoU in [0, 1]
    query_index: Tensor  # (K,)
    embeddings: Tensor | None = None  # (K, C) final normalised query features (for linking windows)


class SemSegHead(nn.Module):
    """Container giving the official key prefix ``sem_seg_head.{pixel_decoder, predictor}``."""

    def __init__(self, pixel_decoder: nn.Module, predictor: VideoMaskedDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class VideoMaskFormer(nn.Module):
    """The VIS model from its parts: ``backbone`` (a :class:`~autoqvis.model.backbone.Backbone`), the
    ``pixel_decoder`` built on its declared levels, the video decoder ``predictor`` (with the quality head)
    and, for training, the ``criterion``. :func:`autoqvis.model.build.build_model` assembles them from a
    :class:`ModelSpec`; ``spec`` gives the input normalisation and padding and is saved with the weights."""

    def __init__(
        self,
        spec: ModelSpec,
        backbone: Backbone,
        pixel_decoder: nn.Module,
        predictor: VideoMaskedDecoder,
        criterion: nn.Module | None = None,
    ):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.sem_seg_head = SemSegHead(pixel_decoder, predictor)
        if criterion is not None:
            self.criterion = criterion
        self.register_buffer("pixel_mean", torch.tensor(spec.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(spec.pixel_std).view(-1, 1, 1), persistent=False)
        self.train_quality_head = predictor.maskiou_feature_extractor is not None
        self.quality_outputs = "all"  # training: the decoder outputs the quality head scores ("all" | "last")
        # the inference settings the model was made for (a model folder's inference.json, set by load_model):
        # autoqvis.segment and predict run with them unless told otherwise; None: the section's defaults
        self.own_inference: InferenceConfig | None = None

    # ----------------------------------------------------------------------------------------------
    # pieces

    @property
    def predictor(self) -> VideoMaskedDecoder:
        return self.sem_seg_head.predictor

    @property
    def quality_head(self) -> nn.Module | None:
        return self.predictor.maskiou_feature_extractor

    def freeze_quality_head(self, frozen: bool = True) -> None:
        """A frozen head gets no gradient and does not run in training (it only scores at inference)."""
        if self.quality_head is not None:
            self.quality_head.requires_grad_(not frozen)
        self.train_quality_head = self.quality_head is not None and not frozen

    def preprocess(self, videos: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """B videos, each (T_b, 3, H_b, W_b) uint8 RGB -> (frames, sizes).

        ``frames`` (sum_b T_b, 3, Hp, Wp) float32 on the model's device: every frame of every video fused into
        one batch, video by video (in training each T_b is the clip length ``synthesis.num_frames``, so frame t of video b is row
        ``b*T + t``: the ``(B*T, ...)`` layout the decoder unflattens), normalised by ``pixel_mean`` /
        ``pixel_std``, then zero-padded bottom/right to the largest frame rounded up to a multiple of
        ``size_divisibility``. ``sizes``: each video's (H_b, W_b) before padding."""
        frames = [f for v in videos for f in v]
        if not frames:
            raise ValueError("no frames to preprocess")
        div = self.spec.size_divisibility
        hp = max(f.shape[-2] for f in frames)
        wp = max(f.shape[-1] for f in frames)
        hp, wp = (hp + div - 1) // div * div, (wp + div - 1) // div * div
        device = self.pixel_mean.device
        batch = torch.zeros(len(frames), 3, hp, wp, device=device)
        for i, f in enumerate(frames):
            f = f.to(device)
            batch[i, :, : f.shape[-2], : f.shape[-1]] = (f.float() - self.pixel_mean) / self.pixel_std
        return batch, [tuple(v.shape[-2:]) for v in videos]

    def prepare_targets(self, clips: Sequence, padded_size: Sequence[int]) -> list[dict[str, Tensor]]:
        """Criterion targets from :class:`~autoqvis.structures.Clip` objects: masks zero-padded to the input
        size, tracks absent in every frame dropped (as the official ``prepare_targets``), class 0."""
        device = self.pixel_mean.device
        targets = []
        for clip in clips:
            ids = clip.ids.to(device, non_blocking=True)  # asynchronous from pinned memory, else a plain copy
            N, T, H, W = clip.masks.shape
            masks = torch.zeros(N, T, *padded_size, dtype=torch.bool, device=device)
            masks[:, :, :H, :W] = clip.masks.to(device, non_blocking=True)
            valid = (ids != -1).any(dim=-1)
            targets.append(
                {
                    "labels": torch.zeros(int(valid.sum()), dtype=torch.long, device=device),
                    "ids": ids[valid],
                    "masks": masks[valid].float(),
                }
            )
        return targets

    def features(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor, list[Tensor]]:
        """Per-frame features of ``images`` (B*T, 3, Hp, Wp), normalised (from :meth:`preprocess`); B and T
        stay fused (every frame on its own) until the decoder.

        Returns the backbone maps ``{res2..res5: (B*T, C_l, Hp/s, Wp/s)}`` (s = 4, 8, 16, 32), the mask
        features (B*T, mask_dim, Hp/4, Wp/4) and the multi-scale features, 3 maps (B*T, conv_dim, Hp/s, Wp/s)
        for s = 32, 16, 8 (coarsest first), all float."""
        # channels-last convolutions are ~15% faster on CPU (oneDNN) and no slower on GPU; same numbers
        if isinstance(self.backbone, ResNet):
            images = images.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(images)
        mask_features, multi_scale = self.sem_seg_head.pixel_decoder(feats)
        return feats, mask_features, multi_scale

    def forward(self, images: Tensor, num_videos: int) -> DecoderOutput:
        """Head outputs of ``images`` (B*T, 3, Hp, Wp): normalised frames of ``num_videos`` = B videos of T
        frames each, fused video by video (see :meth:`preprocess`). In training the quality head scores the
        rounds ``quality_outputs`` says unless frozen; in eval it is left to :meth:`inference`.

        Returns the decoder's :class:`~autoqvis.structures.DecoderOutput` (see
        :meth:`VideoMaskedDecoder.forward`), B and T apart: ``logits`` (B, Q, num_classes + 1), ``masks``
        (B, Q, T, Hp/4, Wp/4) logits, ``quality`` (B, Q, T, 1) or None, ``embeddings`` (B, Q, hidden_dim) and
        ``aux`` (the earlier rounds), all float."""
        _, mask_features, multi_scale = self.features(images)
        score = (self.quality_outputs if self.train_quality_head else "none") if self.training else "none"
        return self.predictor(multi_scale, mask_features, num_videos=num_videos, score_quality=score)

    # ----------------------------------------------------------------------------------------------
    # inference

    @torch.no_grad()
    def inference(
        self,
        frames: Tensor,
        output_size: tuple[int, int] | None = None,
        top_k: int = InferenceConfig.top_k,
        amp: str = "off",
    ) -> VideoOutput:
        """One video -> its top-k tracks (no gradient).

        ``frames`` (T, 3, H, W) uint8 RGB: all of the video's frames, decoded as one clip (B = 1, T = all
        frames). ``output_size`` (H_out, W_out) of the returned masks (default (H, W)); ``top_k`` queries kept
        (``inference.top_k``). ``amp`` (``off`` |
        ``bf16`` | ``fp16``, see :mod:`autoqvis.device`) runs the backbone, pixel decoder and decoder under
        autocast; post-processing stays in float32 (softmax scores, mask upsampling and the ``> 0`` threshold,
        the quality head on the kept queries), so scores and IoUs are float32 either way.

        Returns a :class:`VideoOutput` of K = min(top_k, Q * num_classes) tracks, best first: ``scores`` (K,)
        float, ``labels`` (K,) int64, ``masks`` (K, T, H_out, W_out) bool, ``ious`` (K, T) float in [0, 1]
        (None without a quality head), ``query_index`` (K,) int64, ``embeddings`` (K, hidden_dim) float."""
        images, sizes = self.preprocess([frames])
        with autocast(amp, images.device):
            _, mask_features, multi_scale = self.features(images)
            out = self.predictor(multi_scale, mask_features, num_videos=1, score_quality="none")
        if amp != "off":
            out = out._replace(
                logits=out.logits.float(), masks=out.masks.float(), embeddings=out.embeddings.float()
            )
            multi_scale = [level.float() for level in multi_scale]
        return self.postprocess(out, images.shape[-2:], sizes[0], output_size or sizes[0], top_k, multi_scale)

    def postprocess(
        self,
        out: DecoderOutput,
        padded_size: Sequence[int],
        image_size: Sequence[int],
        output_size: Sequence[int],
        top_k: int = InferenceConfig.top_k,
        multi_scale: list[Tensor] | None = None,
    ) -> VideoOutput:
        """One video's head outputs -> :class:`VideoOutput` (see :meth:`inference`).

        ``out``: the decoder's output for B = 1 (``logits`` (1, Q, num_classes + 1), ``masks`` (1, Q, T, h, w)
        logits, ``embeddings`` (1, Q, C)). Scores are the softmax without the no-object column, top-k over
        (query, class) pairs, sorted; the kept masks go through :meth:`upsample_masks` and are thresholded at
        0. The quality head scores only the kept queries, on ``multi_scale[0]`` (T, C, Hp/32, Wp/32), unless
        ``out`` already holds ``quality`` (B = 1 here, so the fused T rows are this video's frames)."""
        k = top_k
        logits, masks = out.logits[0], out.masks[0]  # (Q, K+1), (Q, T, h, w)
        num_classes = logits.shape[-1] - 1
        scores = F.softmax(logits, dim=-1)[:, :-1]
        k = min(k, scores.numel())
        top_scores, top_idx = scores.flatten().topk(k, sorted=True)
        labels = top_idx % num_classes
        query = top_idx // num_classes
        kept = masks[query]
        ious = None
        if self.quality_head is not None and multi_scale is not None:
            raw = (
                out.quality[0][query]
                if out.quality is not None
                else self.quality_head(multi_scale[0], kept[None])[0]
            )
            ious = raw[..., 0].clamp(0, 1)
        up = self.upsample_masks(kept, padded_size, image_size, output_size)
        embeds = out.embeddings[0][query] if out.embeddings is not None else None
        return VideoOutput(top_scores, labels, up > 0, ious, query, embeds)

    @staticmethod
    def upsample_masks(
        masks: Tensor, padded_size: Sequence[int], image_size: Sequence[int], output_size: Sequence[int]
    ) -> Tensor:
        """(K, T, h, w) mask logits -> (K, T, H_out, W_out) logits as the official ``inference_video``: bilinear
        to the padded input ``padded_size``, cropped to the frame ``image_size``, bilinear to
        ``output_size``."""
        up = F.interpolate(masks, size=tuple(padded_size), mode="bilinear", align_corners=False)
        up = up[:, :, : image_size[0], : image_size[1]]
        return F.interpolate(up, size=tuple(output_size), mode="bilinear", align_corners=False)
