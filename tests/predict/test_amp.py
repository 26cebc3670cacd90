"""``inference.amp`` on the CPU: bf16 autocast runs the network, post-processing stays float32."""

import torch

from autoqvis.model import build_model


def test_bf16_inference_keeps_float32_outputs_close_to_float32():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    frames = torch.randint(
        0, 256, (3, 3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    ref = model.inference(frames)
    out = model.inference(frames, amp="bf16")
    assert (
        out.scores.dtype == torch.float32
        and out.ious.dtype == torch.float32
        and out.masks.dtype == torch.bool
    )
    assert out.masks.shape == ref.masks.shape
    torch.testing.assert_close(out.scores, ref.scores, atol=0.02, rtol=0)
    torch.testing.assert_close(out.ious, ref.ious, atol=0.05, rtol=0)
