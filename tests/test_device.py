"""``--device`` resolution, autocast dtypes and the DDP backend choice, checked without a GPU: CUDA's presence
and device count are simulated where a case needs them."""

from __future__ import annotations

import pytest
import torch

from autoqvis.device import DeviceError, autocast, autocast_dtype, resolve_device
from autoqvis.train import dist


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine with a CPU-only torch build."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine with a CUDA build of torch and two GPUs (nothing is run on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


@pytest.mark.parametrize("spec", ["auto", None, "cpu", "CPU", " auto "])
def test_auto_and_cpu_resolve_to_the_cpu_without_cuda(no_cuda, spec):
    assert resolve_device(spec) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "cuda:-1", "", "mps"])
def test_a_string_that_is_not_a_device_names_the_choices(spec):
    with pytest.raises(DeviceError, match=r"is not a device: use auto, cpu, cuda or cuda:N"):
        resolve_device(spec, source="--device")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_on_a_cpu_only_build_says_so(no_cuda, spec):
    with pytest.raises(DeviceError) as err:
        resolve_device(spec)
    text = str(err.value)
    assert f"--device {spec}: no CUDA device" in text and "CPU-only build" in text
    assert "use --device cpu or auto" in text


def test_cuda_build_without_a_gpu_says_to_check_the_driver(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    with pytest.raises(DeviceError, match=r"built for CUDA 12.4 but finds no GPU or driver.*nvidia-smi"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_beyond_the_device_count(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(
        DeviceError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)"
    ):
        resolve_device("cuda:2")


def test_under_torchrun_each_process_takes_its_local_rank(two_gpus, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="each process uses its own GPU"):
        resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DeviceError, match="local rank 2 but this machine has 2 CUDA"):
        resolve_device("cuda")


def test_autocast_dtypes_per_device(monkeypatch):
    assert autocast_dtype("off", "cpu") is None
    assert autocast_dtype("bf16", "cpu") == torch.bfloat16
    with pytest.raises(DeviceError, match=r"amp=fp16 needs a CUDA device.*use auto, bf16 or off"):
        autocast_dtype("fp16", "cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_dtype("fp16", "cuda:0") == torch.float16
    assert autocast_dtype("bf16", "cuda:0") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(DeviceError, match="Tesla V100 has no bfloat16 support; use amp=fp16"):
        autocast_dtype("bf16", "cuda:0")


def test_bf16_autocast_runs_on_the_cpu():
    layer = torch.nn.Linear(4, 4)
    with autocast("bf16", "cpu"):
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast("off", "cpu"):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


# ---------------------------------------------------------------------------------------------------------
# DDP backend


def test_backend_is_nccl_on_cuda_and_gloo_on_cpu():
    assert dist.backend_for(torch.device("cuda", 1)) == "nccl"
    assert dist.backend_for("cuda") == "nccl"
    assert dist.backend_for(torch.device("cpu")) == "gloo"


@pytest.mark.parametrize(("device", "backend"), [("cpu", "gloo"), ("cuda:1", "nccl")])
def test_init_from_env_joins_with_the_backend_of_the_device(monkeypatch, device, backend):
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_distributed", lambda: False)
    monkeypatch.setattr(dist.torch_dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(
        dist.torch_dist, "init_process_group", lambda backend, timeout: calls.update(b=backend)
    )
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.update(gpu=index))
    assert dist.init_from_env(torch.device(device)) is True
    assert calls["b"] == backend
    assert calls.get("gpu") == (1 if backend == "nccl" else None)


def test_single_process_does_not_join_a_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(dist.torch_dist, "init_process_group", lambda **kw: pytest.fail("joined a group"))
    assert dist.init_from_env(torch.device("cpu")) is False


# ---------------------------------------------------------------------------------------------------------
# the commands


@pytest.fixture(scope="module")
def tiny_model_and_video(tmp_path_factory):
    import numpy as np
    from PIL import Image

    from autoqvis.io.world import WorldConfig, render_video
    from autoqvis.model import build_model, save_model

    root = tmp_path_factory.mktemp("device_cli")
    torch.manual_seed(0)
    save_model(build_model("tiny"), root / "model")
    video = render_video(np.random.default_rng(0), WorldConfig(height=48, width=64, num_frames=4))
    (root / "clip").mkdir()
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(root / "clip" / f"{t:05d}.png")
    return root


COMMANDS = {
    "predict": lambda root, out: [
        "predict",
        str(root / "clip"),
        "--weights",
        str(root / "model"),
        "--out",
        out,
    ],
    "train": lambda root, out: ["train", "--out", out, "--world", "2", "--set", "model.preset=tiny"],
    "selftrain": lambda root, out: [
        "selftrain",
        "--videos",
        str(root / "clip"),
        "--out",
        out,
        "--world",
        "2",
    ],
    "discover": lambda root, out: ["discover", "--images", str(root / "clip"), "--out", out + ".json"],
    "demo": lambda root, out: ["demo", "--quick", "--out", out],
    "evaluate": lambda root, out: [
        *("evaluate", "--gt", str(root / "gt.json"), "--gt-frames", str(root / "clip")),
        *("--weights", str(root / "model"), "--out", out),
    ],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cuda"], "error: --device cuda: no CUDA device (this torch"),
        (["--device", "cuda:1"], "error: --device cuda:1: no CUDA device"),
        (["--device", "gpu0"], "error: --device 'gpu0' is not a device: use auto, cpu, cuda or cuda:N"),
        (["--set", "device=cuda"], "error: device cuda: no CUDA device"),
    ],
)
def test_every_command_refuses_a_device_the_machine_lacks(
    no_cuda, tiny_model_and_video, tmp_path, capsys, command, extra, message
):
    from autoqvis.cli import main

    code = main(COMMANDS[command](tiny_model_and_video, str(tmp_path / "out")) + extra)
    err = capsys.readouterr().err
    assert code == 2 and f"autoqvis {command}: {message}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("command", ["predict", "train", "selftrain", "demo", "evaluate"])
def test_fp16_on_the_cpu_is_refused_before_any_work(tiny_model_and_video, tmp_path, capsys, command):
    from autoqvis.cli import main

    section = "training" if command == "train" else "inference"
    args = COMMANDS[command](tiny_model_and_video, str(tmp_path / "out"))
    code = main([*args, "--device", "cpu", "--set", f"{section}.amp=fp16"])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {section}.amp=fp16 needs a CUDA device" in err
    assert not (tmp_path / "out").exists()


def test_predict_records_the_device_that_ran_and_runs_bf16_on_the_cpu(tiny_model_and_video, tmp_path):
    import json

    import yaml

    from autoqvis.cli import main

    root = tiny_model_and_video
    base = [
        "predict",
        str(root / "clip"),
        "--weights",
        str(root / "model"),
        "--short-side",
        "48",
        "--no-overlay",
    ]
    assert main([*base, "--out", str(tmp_path / "fp32")]) == 0
    assert main([*base, "--out", str(tmp_path / "bf16"), "--set", "inference.amp=bf16"]) == 0
    for name in ("fp32", "bf16"):
        saved = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert saved["device"] == str(resolve_device("auto"))  # what ran, not "auto"
    assert saved["inference"]["amp"] == "bf16"
    fp32, bf16 = (json.loads((tmp_path / n / "predictions.json").read_text()) for n in ("fp32", "bf16"))
    assert len(fp32) == len(bf16) > 0
    for a, b in zip(fp32, bf16, strict=True):
        assert abs(a["score"] - b["score"]) < 0.02
        assert all(0 <= v <= 1 for v in b["predicted_ious"])


@pytest.mark.parametrize(
    ("bf16_unit", "amx", "expected"), [(False, False, "off"), (True, False, "bf16"), (False, True, "bf16")]
)
def test_amp_auto_follows_the_cpus_bfloat16_unit(monkeypatch, bf16_unit, amx, expected):
    """auto is bf16 only where the CPU computes it natively (AVX512-BF16 or AMX); elsewhere float32."""
    from autoqvis.device import describe_amp, resolve_amp

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_unit)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_amp("auto", "cpu") == expected
    assert autocast_dtype("auto", "cpu") == (torch.bfloat16 if expected == "bf16" else None)
    assert resolve_amp("bf16", "cpu") == "bf16" and resolve_amp("off", "cpu") == "off"  # explicit values stay
    assert ("no bfloat16 unit" in describe_amp("auto", "cpu")) == (expected == "off")


def test_amp_auto_on_cuda_follows_the_gpu(monkeypatch):
    from autoqvis.device import resolve_amp

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_amp("auto", "cuda:0") == "off"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_amp("auto", "cuda:0") == "bf16"


@pytest.mark.parametrize("bf16_unit", [False, True])
def test_train_records_the_precision_auto_chose(
    tiny_model_and_video, tmp_path, monkeypatch, bf16_unit, capsys
):
    """`training.amp=auto` is resolved on the device: the run's config.yaml holds what ran, and it is logged."""
    import yaml

    from autoqvis.cli import main

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_unit)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    args = COMMANDS["train"](tiny_model_and_video, str(tmp_path / "out"))
    flags = ["--set", "training.amp=auto", "--set", "training.max_iters=1"]
    assert main([*args, "--device", "cpu", *flags]) == 0
    saved = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())["training"]
    assert saved["amp"] == ("bf16" if bf16_unit else "off")
    chosen = "bfloat16 autocast" if bf16_unit else "float32"
    assert f"training precision on cpu: {chosen}" in capsys.readouterr().out
