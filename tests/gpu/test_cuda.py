"""The CUDA path: numerics against the CPU, mixed precision, ``predict --device cuda``, streaming memory and
nccl DDP. Marked ``gpu``: skipped without CUDA. Run with ``make test-gpu`` (``pytest -q -m gpu``).

Float32 comparisons run with TF32 off (cuDNN convolutions and matmuls otherwise round to 10-bit mantissas on
Ampere and later); tolerances scale with each tensor's largest magnitude, since CPU and GPU kernels sum in
different orders.

``AUTOQVIS_GPU_TEST_DEVICE=cpu pytest -m gpu`` runs the device-independent tests on the CPU against the CPU: a
check of the tests themselves on a machine without a GPU, not of CUDA.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from autoqvis.config import TrainingConfig
from autoqvis.model import build_model, msdeform, save_model
from autoqvis.structures import Clip
from autoqvis.train.data import ClipList
from autoqvis.train.trainer import Trainer

DEVICE = torch.device(os.environ.get("AUTOQVIS_GPU_TEST_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        ON_CUDA and not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available())"
    ),
]
cuda_only = pytest.mark.skipif(
    not ON_CUDA, reason="measures CUDA itself (AUTOQVIS_GPU_TEST_DEVICE is not cuda)"
)


@pytest.fixture
def exact_fp32():
    """TF32 off for the duration of a test (matmuls and cuDNN convolutions in true float32)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def assert_close_scaled(
    actual: torch.Tensor, expected: torch.Tensor, name: str, bulk: float = 1e-4, worst: float = 1e-3
) -> None:
    """With ``scale`` = max|expected|: 99.9% of the elements within ``bulk * scale`` and every element within
    ``worst * scale`` (both on the CPU in float64). The two tiers allow for the masked attention: a mask logit
    within rounding of 0 may land on the other side of the threshold on the other device and move that query's
    outputs slightly more than rounding alone."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} vs {tuple(e.shape)}"
    scale = float(e.abs().max()) or 1.0
    diff = (a - e).abs()
    within = float((diff <= bulk * scale).double().mean())
    assert within >= 0.999, (
        f"{name}: only {within:.5f} of the elements within {bulk:g} x max|ref| {scale:.3g}"
    )
    err = float(diff.max())
    assert err <= worst * scale, f"{name}: max |diff| {err:.3g} > {worst:g} x max|ref| {scale:.3g}"


def _video(frames: int, height: int, width: int, seed: int = 1) -> torch.Tensor:
    """(T, 3, H, W) uint8: a generated scene (textured objects on a background), not noise."""
    from autoqvis.io.world import WorldConfig, render_video

    video = render_video(
        np.random.default_rng(seed), WorldConfig(height=height, width=width, num_frames=frames)
    )
    return torch.from_numpy(video.frames).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------------------
# numerics: CUDA float32 = CPU float32


def test_deformable_attention_on_cuda_equals_cpu(exact_fp32):
    """The pure-torch multi-scale deformable attention (grid_sample, in-place accumulation) gives the CPU's
    values on CUDA in float32, at the paper model's sizes (8 heads x 32 channels, 3 levels, 4 points)."""
    g = torch.Generator().manual_seed(0)
    shapes = [(12, 20), (6, 10), (3, 5)]
    S, N, M, D, Lq, L, P = sum(h * w for h, w in shapes), 2, 8, 32, 315, 3, 4
    value = torch.randn(N, S, M, D, generator=g)
    locations = torch.rand(N, Lq, M, L, P, 2, generator=g) * 1.2 - 0.1  # some samples fall outside
    weights = torch.rand(N, Lq, M, L, P, generator=g).flatten(-2).softmax(-1).view(N, Lq, M, L, P)
    ref = msdeform.ms_deform_attn_core(value, shapes, locations, weights)
    out = msdeform.ms_deform_attn_core(value.to(DEVICE), shapes, locations.to(DEVICE), weights.to(DEVICE))
    assert_close_scaled(out, ref, "ms_deform_attn_core", bulk=1e-6, worst=1e-5)


def test_paper_model_eval_forward_on_cuda_equals_cpu(exact_fp32):
    """``paper_r50`` (ResNet-50, deformable-attention pixel decoder, 9-layer masked-attention decoder, quality
    head) in eval mode on a 3-frame 224x384 clip: pixel-decoder features, class logits, mask logits of all 100
    queries and the quality head's IoUs agree with the CPU (float32, TF32 off; 99.9% of the elements within 1e-4
    of the tensor's largest magnitude, every element within 1e-3 for the pixel decoder and 1e-2 after the
    masked-attention decoder); the post-processed top-10 scores agree within 1e-4 and their masks in >= 99% of
    the pixels."""
    torch.manual_seed(0)
    cpu_model = build_model("paper_r50").eval()
    gpu_model = build_model("paper_r50").eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.to(DEVICE)
    frames = _video(3, 224, 384)
    results = []
    with torch.no_grad():
        for model in (cpu_model, gpu_model):
            images, _ = model.preprocess([frames])
            out = model(images, num_videos=1)
            _, mask_features, multi_scale = model.features(images)
            quality = model.quality_head(multi_scale[0], out.masks)  # every query, every frame
            post = model.inference(frames)
            results.append((mask_features, multi_scale, out, quality, post))
    (mf_c, ms_c, out_c, q_c, post_c), (mf_g, ms_g, out_g, q_g, post_g) = results
    assert_close_scaled(mf_g, mf_c, "mask features")
    for level, (a, b) in enumerate(zip(ms_g, ms_c, strict=True)):
        assert_close_scaled(a, b, f"multi-scale level {level}")
    assert_close_scaled(out_g.logits, out_c.logits, "class logits", worst=1e-2)
    assert_close_scaled(out_g.masks, out_c.masks, "mask logits", worst=1e-2)
    assert_close_scaled(q_g, q_c, "quality head", worst=1e-2)
    torch.testing.assert_close(post_g.scores.cpu(), post_c.scores, atol=1e-4, rtol=0)
    same = post_g.query_index.cpu() == post_c.query_index
    if same.all():  # near-tied scores may swap places; compare masks where the same query is kept
        agree = (post_g.masks.cpu() == post_c.masks).float().mean()
        assert agree >= 0.99, f"top-10 masks agree in {float(agree):.4f} of the pixels"
        assert_close_scaled(post_g.ious, post_c.ious, "kept predicted IoUs", worst=1e-2)


# ---------------------------------------------------------------------------------------------------------
# mixed precision


def _clips(n: int, frames: int, height: int, width: int) -> list[Clip]:
    clips = []
    for i in range(n):
        video = _video(frames, height, width, seed=10 + i)
        masks = torch.zeros(2, frames, height, width, dtype=torch.bool)
        masks[0, :, height // 8 : height // 2, width // 6 : width // 2] = True
        masks[1, :, height // 2 : height - 8, width // 2 : width - 16] = True
        clips.append(Clip(frames=video, masks=masks, ids=torch.tensor([[0] * frames, [1] * frames])))
    return clips


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_step_gives_finite_losses_and_gradients(tmp_path, amp):
    """``paper_r50`` with the quality head, official losses (12,544 points, deep supervision) on two 3-frame
    256x320 clips under ``training.amp``: every loss term finite at every step; the fp16 loss scaler may skip
    a first step that overflows, after which the unscaled gradients of every parameter are finite and the
    weights stay finite."""
    if amp == "fp16" and not ON_CUDA:
        pytest.skip("fp16 autocast is CUDA-only")
    torch.manual_seed(0)
    cfg = TrainingConfig(amp=amp, batch_size=2, max_iters=6)
    model = build_model("paper_r50", cfg)
    trainer = Trainer(model, [ClipList(_clips(2, 3, 256, 320))], [1.0], cfg, tmp_path, DEVICE)
    model.train()
    clips = _clips(2, 3, 256, 320)
    finite_steps = 0
    for _ in range(4):
        result = trainer.step([clips])
        assert all(np.isfinite(v) for v in result.losses.values()), result.losses
        if result.grad_norm is not None and np.isfinite(result.grad_norm):
            finite_steps += 1
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)
    assert finite_steps >= (3 if amp == "fp16" else 4), f"only {finite_steps} of 4 steps had finite gradients"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_inference_amp_keeps_float32_outputs(amp):
    """``inference.amp`` on the device: the network runs under autocast, scores and predicted IoUs come back
    float32 and the kept scores stay within 0.02 of float32 inference (tiny preset, random weights)."""
    if amp == "fp16" and not ON_CUDA:
        pytest.skip("fp16 autocast is CUDA-only")
    torch.manual_seed(0)
    model = build_model("tiny").eval().to(DEVICE)
    frames = _video(4, 96, 128).to(DEVICE)
    ref = model.inference(frames)
    out = model.inference(frames, amp=amp)
    assert out.scores.dtype == torch.float32 and out.ious.dtype == torch.float32
    assert out.masks.dtype == torch.bool and out.masks.shape == ref.masks.shape
    torch.testing.assert_close(out.scores, ref.scores, atol=0.02, rtol=0)


# ---------------------------------------------------------------------------------------------------------
# the command on CUDA


def _write_video(folder: Path, frames: int, height: int, width: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for t, frame in enumerate(_video(frames, height, width).permute(0, 2, 3, 1).numpy()):
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    return folder


def _mask_iou(a: list[dict], b: list[dict]) -> float:
    from autoqvis import rle

    inter = union = 0
    for x, y in zip(a, b, strict=True):
        mx, my = rle.decode(x), rle.decode(y)
        inter += int((mx & my).sum())
        union += int((mx | my).sum())
    return 1.0 if union == 0 else inter / union


def test_predict_on_cuda_equals_the_cpu_kept_tracks(tmp_path, exact_fp32):
    """``autoqvis predict --device cuda`` on an 8-frame video (tiny preset, random weights): every track the
    CPU keeps with a clear margin (its score more than 1e-4 above the 10th) is kept on CUDA with the same score
    (within 1e-4), per-frame predicted IoUs within 1e-3 and masks of video IoU >= 0.98; config.yaml records the
    CUDA device."""
    from autoqvis.cli import main

    torch.manual_seed(0)
    save_model(build_model("tiny"), tmp_path / "model")
    video = _write_video(tmp_path / "videos" / "clip", 8, 96, 128)
    runs = {}
    for name, device in (("cpu", "cpu"), ("dev", str(DEVICE))):
        out = tmp_path / name
        args = ["predict", str(video), "--weights", str(tmp_path / "model"), "--out", str(out)]
        assert main([*args, "--device", device, "--short-side", "96", "--no-overlay"]) == 0
        runs[name] = json.loads((out / "predictions.json").read_text())
    assert f"device: {DEVICE.type}" in (tmp_path / "dev" / "config.yaml").read_text()
    cpu, dev = runs["cpu"], runs["dev"]
    assert len(cpu) == len(dev) == 10
    floor = min(t["score"] for t in cpu)
    clear = [t for t in cpu if t["score"] - floor > 1e-4]
    assert len(clear) >= 5, "too many near-tied scores for a meaningful comparison"
    for track in clear:
        twins = [t for t in dev if abs(t["score"] - track["score"]) <= 1e-4]
        assert twins, f"CPU track {track['track_id']} (score {track['score']:.6f}) is missing on {DEVICE}"
        best = max(twins, key=lambda t: _mask_iou(t["segmentations"], track["segmentations"]))
        assert _mask_iou(best["segmentations"], track["segmentations"]) >= 0.98
        np.testing.assert_allclose(best["predicted_ious"], track["predicted_ious"], atol=1e-3)


# ---------------------------------------------------------------------------------------------------------
# streaming memory


@cuda_only
def test_streaming_memory_on_cuda_is_flat(tmp_path):
    """Streaming inference (windows of 12 frames sharing 2) keeps the CUDA peak allocation of a 500-frame video
    within 5% (+1 MiB) of a 50-frame one: the GPU holds one window, finished frames leave as RLE on the CPU."""
    from autoqvis.config import InferenceConfig
    from autoqvis.predict.predict import segment_video

    torch.manual_seed(0)
    model = build_model("tiny").eval().to(DEVICE)
    long = _write_video(tmp_path / "long", 500, 64, 96)
    short = tmp_path / "short"
    short.mkdir()
    for path in sorted(long.iterdir())[:50]:
        (short / path.name).symlink_to(path)
    options = InferenceConfig(window=12, overlap=2, short_side=64)  # on the model's device
    segment_video(model, short, options)  # warm-up: kernels, workspaces
    peaks = {}
    for name, folder in (("50", short), ("500", long)):
        torch.cuda.synchronize(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        tracks = segment_video(model, folder, options)
        torch.cuda.synchronize(DEVICE)
        peaks[name] = torch.cuda.max_memory_allocated(DEVICE)
        assert tracks.video.length == int(name)
    assert peaks["500"] <= 1.05 * peaks["50"] + 2**20, f"peak allocated bytes {peaks}"


# ---------------------------------------------------------------------------------------------------------
# data path and DDP


@cuda_only
def test_pinned_loader_with_workers_trains_like_the_plain_one(tmp_path):
    """On CUDA with ``training.num_workers`` > 0 the loader pins each clip (``Clip.pin_memory``) and batches
    are copied with ``non_blocking``: the weights after 6 iterations equal those of a run with no workers."""
    from tests.train.test_trainer_toy import Source, ToyModel

    weights = []
    for workers in (0, 2):
        torch.manual_seed(0)
        cfg = TrainingConfig(max_iters=6, batch_size=2, lr=1e-2, clip_grad_norm=1.0, num_workers=workers)
        model = ToyModel()
        model.dropout = torch.nn.Identity()
        trainer = Trainer(model, [Source(7), Source(5)], [0.5, 0.5], cfg, tmp_path / str(workers), DEVICE)
        trainer.train()
        weights.append({k: v.cpu() for k, v in trainer.model.state_dict().items()})
    for k in weights[0]:
        torch.testing.assert_close(weights[1][k], weights[0][k], atol=1e-5, rtol=1e-4)  # CUDA atomics
    clip = Source(1).clip(0, 0).pin_memory()
    assert clip.frames.is_pinned() and clip.masks.is_pinned() and clip.ids.is_pinned()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nccl_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from tests.train.test_trainer_ddp import _cfg, _model
    from tests.train.test_trainer_toy import Source

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        trainer = Trainer(
            _model(), [Source(7), Source(5)], [0.5, 0.5], _cfg(), out, torch.device("cuda", rank)
        )
        trainer.train()
        if rank == 0:
            torch.save(
                {k: v.cpu() for k, v in trainer.model.state_dict().items()}, Path(out) / "ddp_weights.pt"
            )
    finally:
        dist.destroy_process_group()


@cuda_only
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_process_nccl_ddp_equals_one_process(tmp_path):
    """DistributedDataParallel over nccl on two GPUs (one process each, global batch 4 = 2 + 2) ends with the
    weights of one process on one GPU with the same global batch (toy model, 6 iterations)."""
    import torch.multiprocessing as mp

    from tests.train.test_trainer_ddp import _cfg, _model
    from tests.train.test_trainer_toy import Source

    mp.spawn(_nccl_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = Trainer(
        _model(), [Source(7), Source(5)], [0.5, 0.5], _cfg(), tmp_path / "one", torch.device("cuda", 0)
    )
    single.train()
    ddp = torch.load(tmp_path / "ddp" / "ddp_weights.pt")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp[k], v.cpu(), atol=1e-6, rtol=1e-5)
