"""The ViT backbone: the frozen ViT's token cache (the same outputs with and without it, a hit per image seen
before, the least recently used entries dropped past the size limit, never used while training) and the
pyramid's matrix-product upsampling (the transposed convolution it replaces)."""

import dataclasses

import torch

from autoqvis.model import PRESETS, build_model
from autoqvis.model.vit_backbone import TokenCache, use_token_cache


def _model(seed: int = 0):
    torch.manual_seed(seed)
    spec = dataclasses.replace(PRESETS["tiny"], backbone="vit", vit_image_stem=True)
    return build_model(spec, pretrained_backbone=False).eval()


def test_cached_tokens_give_the_same_predictions_and_are_shared_by_models():
    frames = (torch.rand(3, 3, 64, 96) * 255).to(torch.uint8)
    a, b = _model(0), _model(1)
    b.backbone.vit.load_state_dict(a.backbone.vit.state_dict())  # two models on one frozen ViT
    plain = a.inference(frames, top_k=3)
    cache = TokenCache()
    first = use_token_cache(a, cache).inference(frames, top_k=3)
    assert (cache.hits, cache.misses) == (0, 3)
    assert torch.allclose(first.scores, plain.scores, atol=1e-5) and torch.equal(first.masks, plain.masks)
    use_token_cache(b, cache).inference(frames[1:], top_k=3)  # the other model, frames seen before
    assert (cache.hits, cache.misses) == (2, 3)
    other = _model(2)  # another ViT: its own tokens
    use_token_cache(other, cache).inference(frames[:1], top_k=3)
    assert cache.misses == 4


def test_least_recently_used_entries_are_dropped_past_the_limit():
    cache = TokenCache(max_bytes=3 * 4 * 10)
    for k in range(4):
        cache.put(bytes([k]), torch.zeros(10))
    assert cache.bytes == 120 and cache.get(bytes([0])) is None and cache.get(bytes([3])) is not None


def test_training_never_uses_the_cache():
    model = use_token_cache(_model(), cache := TokenCache())
    model.train()
    images = torch.randn(2, 3, 64, 64)
    model.backbone(images)
    assert cache.hits == cache.misses == 0 and not cache.entries


def test_upsample2x_is_the_transposed_convolution():
    """The pyramid's matrix-product upsampling equals nn.ConvTranspose2d(cin, cout, 2, 2), gradients too."""
    from autoqvis.model.vit_backbone import Upsample2x

    torch.manual_seed(0)
    fast = Upsample2x(12, 5)
    reference = torch.nn.ConvTranspose2d(12, 5, 2, 2)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(3, 12, 4, 7, requires_grad=True)
    y, y_ref = fast(x), reference(x)
    assert y.shape == (3, 5, 8, 14) and torch.allclose(y, y_ref, atol=1e-6)
    g = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, g)
    assert torch.allclose(gx, gx_ref, atol=1e-5)
