"""A ViT backbone for the VIS model through a simple feature pyramid (ViTDet style).

For the CPU / offline path: a DINO or DINOv2 ViT (``autoqvis.model.vit``, e.g. the imported DINOv2 ViT-S/14)
gives one map of last-layer tokens at stride 16 (the input is resized by patch/16 first, so a patch-14 model
also lands on stride 16); transposed convs and a max-pool turn it into ``res2..res5`` (strides 4, 8, 16, 32)
for the pixel decoder. A frozen ViT runs without autograd, so training never back-propagates through it.

With ``image_stem``, a small trainable conv stem on the image adds stride-4 and stride-8 detail to ``res2`` and
``res3`` (the tokens alone give blobby masks at low resolution).

A frozen ViT is the same in every model trained on it (M0 and every self-training round share it), so at
inference its tokens can be reused across models: give the backbone a :class:`TokenCache` (``token_cache``)
and each image's tokens are looked up by the image's content and the ViT's weights before they are computed.
The self-training loop predicts the same unlabeled frames with two or three models, and a benchmark scores
several models on the same videos; the ViT is most of a small model's inference.

Legend: ``N`` images (in the VIS model the ``B*T`` frames of a batch, fused), ``D`` the ViT width, ``H, W``
the padded input size (multiples of 32).

Keys: ``vit.*`` (the ViT's own names), ``pyramid.res{2..5}.*`` and, with the stem, ``stem.*``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoqvis.model.backbone import Backbone, FeatureLevel
from autoqvis.model.vit import ARCHS, build_vit, load_vit

__all__ = ["TokenCache", "ViTBackbone", "use_token_cache"]


class TokenCache:
    """The frozen ViT's tokens of images already seen, least recently used dropped past ``max_bytes``.

    Keys are the sha1 of the ViT's input image (float32 bytes, after resizing and padding) and of the ViT's
    weights, so a hit returns exactly what the ViT computed for that input (a batch of one image or several
    gives the same tokens up to float summation order)."""

    def __init__(self, max_bytes: int = 2**30):
        self.max_bytes = max_bytes
        self.entries: OrderedDict[bytes, Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key: bytes) -> Tensor | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: Tensor) -> None:
        if key in self.entries:
            return
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        self.entries[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()


def use_token_cache(model: nn.Module, cache: TokenCache | None) -> nn.Module:
    """Give ``model``'s frozen ViT backbone (if it has one) the token cache; returns the model."""
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, ViTBackbone):
        backbone.token_cache = cache
    return model


class Upsample2x(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d(cin, cout, 2, 2)`` (same parameters and outputs) computed as one matrix product
    and a pixel shuffle: with kernel = stride = 2 every output pixel comes from one input pixel, and the
    product is 1.2-1.4x faster than the transposed convolution on a CPU, forward and backward."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 2, 2)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, h, w) -> (N, C_out, 2h, 2w)."""
        N, _, h, w = x.shape
        C = self.out_channels
        y = x.permute(0, 2, 3, 1) @ self.weight.flatten(1)  # (N, h, w, C_out * 4): per pixel, (C_out, 2, 2)
        y = y.view(N, h, w, C, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(N, C, 2 * h, 2 * w)
        return y + self.bias.view(1, C, 1, 1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


class ViTBackbone(Backbone):
    def __init__(
        self,
        arch: str = "dinov2_vits14_imgfocus",
        weights: str | None = None,
        out_channels: tuple[int, int, int, int] | None = None,
        frozen: bool = True,
        image_stem: bool = False,
    ):
        super().__init__()
        self.vit = load_vit(arch, weights) if weights else build_vit(arch)
        self.patch_size = ARCHS[arch].patch_size
        D = self.vit.embed_dim
        c2, c3, c4, c5 = out_channels or (D // 4, D // 2, D, D)
        self.feature_info = tuple(
            FeatureLevel(f"res{i + 2}", c, 2 ** (i + 2)) for i, c in enumerate((c2, c3, c4, c5))
        )
        self.pyramid = nn.ModuleDict(
            {
                "res2": nn.Sequential(
                    Upsample2x(D, D // 2),
                    _norm(D // 2),
                    nn.GELU(),
                    Upsample2x(D // 2, D // 4),
                    nn.Conv2d(D // 4, c2, 1),
                    _norm(c2),
                ),
                "res3": nn.Sequential(Upsample2x(D, D // 2), nn.Conv2d(D // 2, c3, 1), _norm(c3)),
                "res4": nn.Sequential(nn.Conv2d(D, c4, 1), _norm(c4)),
                "res5": nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(D, c5, 1), _norm(c5)),
            }
        )
        # optional image stem: two stride-2 convs give stride-4 detail, a third stride 8; each adds to the
        # pyramid's map through a 1x1 projection
        self.stem = (
            nn.ModuleDict(
                {
                    "s4": nn.Sequential(
                        nn.Conv2d(3, 32, 3, 2, 1),
                        _norm(32),
                        nn.GELU(),
                        nn.Conv2d(32, 64, 3, 2, 1),
                        _norm(64),
                        nn.GELU(),
                    ),
                    "s8": nn.Sequential(nn.Conv2d(64, 128, 3, 2, 1), _norm(128), nn.GELU()),
                    "res2": nn.Sequential(nn.Conv2d(64, c2, 1), _norm(c2)),
                    "res3": nn.Sequential(nn.Conv2d(128, c3, 1), _norm(c3)),
                }
            )
            if image_stem
            else None
        )
        self.frozen = frozen
        if frozen:
            self.vit.requires_grad_(False)
        self.token_cache: TokenCache | None = None  # reuse a frozen ViT's tokens at inference (see above)

    def train(self, mode: bool = True) -> ViTBackbone:
        super().train(mode)
        if self.frozen:
            self.vit.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) float normalised images, H and W multiples of 32 -> ``{"res2": (N, C2, H/4, W/4),
        "res3": (N, C3, H/8, W/8), "res4": (N, C4, H/16, W/16), "res5": (N, C5, H/32, W/32)}`` float, the
        widths in ``self.feature_info``.

        The ViT sees the images resized to (H/16, W/16) patches, so its (N, D, H/16, W/16) token map is stride
        16 for any patch size; a frozen ViT runs without autograd. Images are independent (N = B*T)."""
        B, _, H, W = images.shape
        h, w = H // 16, W // 16
        x = images
        if self.patch_size != 16:
            x = F.interpolate(
                x, size=(h * self.patch_size, w * self.patch_size), mode="bilinear", align_corners=False
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            tokens = self._tokens(x.float())
        first = 1 + self.vit.num_register_tokens
        grid = tokens[:, first:].transpose(1, 2).reshape(B, -1, h, w)
        out = {name: layer(grid) for name, layer in self.pyramid.items()}
        if self.stem is not None:
            s4 = self.stem["s4"](images)
            out["res2"] = out["res2"] + self.stem["res2"](s4)
            out["res3"] = out["res3"] + self.stem["res3"](self.stem["s8"](s4))
        return out

    def _tokens(self, x: Tensor) -> Tensor:
        """(N, T, D) last-block tokens of (N, 3, h', w') ViT inputs, from the token cache where possible (a
        frozen ViT without autograd only)."""
        cache = self.token_cache
        if cache is None or not self.frozen or self.training:  # training: augmented frames, never seen twice
            return self.vit.get_intermediate_layers(x, n=1)[0]
        digest = hashlib.sha1()  # the weights, hashed on every call (~50 ms for ViT-S): never a stale key
        for name, value in sorted(self.vit.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        kind = x.device.type
        if torch.is_autocast_enabled(kind):  # tokens computed under autocast are another result
            digest.update(str(torch.get_autocast_dtype(kind)).encode())
        weights = digest.digest()
        keys = [
            hashlib.sha1(weights + image.detach().cpu().contiguous().numpy().tobytes()).digest()
            for image in x
        ]
        found = [cache.get(k) for k in keys]
        todo = [i for i, t in enumerate(found) if t is None]
        if todo:
            computed = self.vit.get_intermediate_layers(x[todo], n=1)[0]
            for i, tokens in zip(todo, computed, strict=True):
                found[i] = tokens.clone()
                cache.put(keys[i], found[i])
        return torch.stack([t.to(x.device) for t in found])
