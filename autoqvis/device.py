"""Where a command computes, and in which precision.

Every command that runs a model takes ``--device auto | cpu | cuda | cuda:N`` (the same notion as the config's
top-level ``device``, chosen once for every stage; the flag wins). ``auto`` is the first GPU when CUDA is usable and the CPU otherwise; under
``torchrun`` ``auto`` and ``cuda`` mean this process's GPU, ``cuda:LOCAL_RANK``. A string that is not a device,
``cuda`` on a machine without CUDA and ``cuda:N`` beyond the device count are :class:`DeviceError` s that say
what the machine has.

Mixed precision (``training.amp``, ``inference.amp``): ``bf16`` autocasts to bfloat16 on CUDA (when the GPU
supports it) and on the CPU; ``fp16`` autocasts to float16 on CUDA only (training then scales the loss). On the
CPU, float16 autocast runs but is slower than float32 (``paper_r50`` eval on 2 cores: float32 6.0 s, bfloat16
3.6 s, float16 10.1 s), so it is refused with a message instead. ``auto`` follows the hardware: bfloat16 where the
device computes it natively (a CUDA GPU with bfloat16, a CPU with AVX512-BF16 or AMX), float32 elsewhere. A CPU
without a bfloat16 unit emulates it: a 2048x384 by 384x1536 matmul took 52.6 ms in float32 and 244.5 ms in
bfloat16 on such a CPU, and training ran ~3x slower.

    device = resolve_device("auto")                      # torch.device("cpu") here, "cuda:0" on a GPU
    with autocast("bf16", device):
        out = model(images)
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator

import torch

from autoqvis.errors import AutoqvisError

__all__ = [
    "DEVICE_CHOICES",
    "DeviceError",
    "autocast",
    "autocast_dtype",
    "cpu_capabilities",
    "describe_amp",
    "describe_device",
    "native_bf16",
    "resolve_amp",
    "resolve_device",
]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
AMP_CHOICES = ("auto", "off", "bf16", "fp16")

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceError(AutoqvisError, ValueError):
    """A device or precision this machine cannot provide, or a device string that is not one."""


def resolve_device(spec: str | torch.device | None = "auto", source: str = "--device") -> torch.device:
    """The :class:`torch.device` for ``spec`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; ``None`` = ``auto``).

    ``source`` names where the string came from (the flag or the config key) in error messages."""
    text = "auto" if spec is None else str(spec).strip().lower()
    match = _DEVICE_RE.match(text)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise DeviceError(f"{source} {spec!r} is not a device: use {DEVICE_CHOICES} (N = 0, 1, ...)")
    kind, index = match.group(1), match.group(2)
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = _cuda_count(f"{source} {text}")
    local = os.environ.get("LOCAL_RANK")
    if index is None:  # auto or cuda: this process's GPU under torchrun, else the first
        slot = int(local) if local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
        if slot >= count:
            raise DeviceError(
                f"{source} {text}: torchrun started local rank {slot} but this machine has {count} CUDA "
                f"device(s); start at most {count} processes per node (torchrun --nproc-per-node {count})"
            )
        return torch.device("cuda", slot)
    n = int(index)
    if n >= count:
        raise DeviceError(
            f"{source} {text}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1}); "
            "pick one of them or pass cuda"
        )
    if local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1 and n != int(local):
        raise DeviceError(
            f"{source} {text} under torchrun: each process uses its own GPU (cuda:LOCAL_RANK, here "
            f"cuda:{local}); pass --device cuda or auto, and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    return torch.device("cuda", n)


def _cuda_count(what: str) -> int:
    """The number of usable CUDA devices; a :class:`DeviceError` that says why when there is none."""
    if torch.version.cuda is None:
        why = f"this torch ({torch.__version__}) is a CPU-only build"
        fix = "install a CUDA build of torch (pytorch.org lists the pip command for your CUDA version) or "
    elif not torch.cuda.is_available():
        why = f"torch {torch.__version__} was built for CUDA {torch.version.cuda} but finds no GPU or driver"
        fix = "check nvidia-smi and CUDA_VISIBLE_DEVICES, or "
    else:
        return torch.cuda.device_count()
    raise DeviceError(f"{what}: no CUDA device ({why}); {fix}use --device cpu or auto")


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU with bfloat16 support, or a CPU with the
    AVX512-BF16 instructions or AMX tiles (elsewhere torch emulates it, several times slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """``amp`` with ``auto`` replaced by what ``device`` runs fast: ``bf16`` where :func:`native_bf16`, else
    ``off`` (float32). Other values are returned as they are (checked by :func:`autocast_dtype`)."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "off"


def describe_amp(amp: str, device: torch.device | str) -> str:
    """One line saying which precision ``amp`` gives on ``device`` and, for ``auto``, why."""
    chosen = resolve_amp(amp, device)
    name = {"off": "float32", "bf16": "bfloat16 autocast", "fp16": "float16 autocast"}.get(chosen, chosen)
    if amp != "auto":
        return name
    device = torch.device(device)
    what = "CUDA device" if device.type == "cuda" else "CPU"
    why = (
        "computes bfloat16 natively" if chosen == "bf16" else "has no bfloat16 unit (emulated bf16 is slower)"
    )
    return f"{name} (amp=auto: this {what} {why})"


def cpu_capabilities() -> str:
    """One line for every speed figure: the CPU's vector and bfloat16 units, its cores, threads and torch."""
    units = [
        f"AVX512-BF16 {'yes' if torch.cpu._is_avx512_bf16_supported() else 'no'}",
        f"AMX {'yes' if torch.cpu._is_amx_tile_supported() else 'no'}",
        f"AVX-512 {'yes' if torch.cpu._is_avx512_supported() else 'no'}",
    ]
    return (
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {', '.join(units)}; "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads; torch {torch.__version__}"
    )


def autocast_dtype(amp: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``auto`` | ``off`` | ``bf16`` | ``fp16``) on ``device``; None for
    float32 (``off``, or ``auto`` on a device without native bfloat16).

    Raises :class:`DeviceError` for ``fp16`` on the CPU and for ``bf16`` on a GPU without bfloat16."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise DeviceError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    amp = resolve_amp(amp, device)
    if amp == "off":
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise DeviceError(
                "amp=fp16 needs a CUDA device: float16 autocast on the CPU is slower than float32; on the "
                "CPU use auto, bf16 or off"
            )
        return torch.bfloat16
    if device.type == "cuda":
        if amp == "bf16" and not torch.cuda.is_bf16_supported():
            raise DeviceError(
                f"amp=bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use amp=fp16, auto or off"
            )
        return torch.bfloat16 if amp == "bf16" else torch.float16
    raise DeviceError(f"amp={amp} is supported on cpu and cuda devices, not {device.type}")


@contextlib.contextmanager
def autocast(amp: str, device: torch.device | str) -> Iterator[None]:
    """``torch.autocast`` for ``amp`` on ``device`` (nothing for ``off``); see :func:`autocast_dtype`."""
    dtype = autocast_dtype(amp, device)
    if dtype is None:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=dtype):
        yield


def describe_device(device: torch.device | str) -> str:
    """One line for logs and benchmarks: the device, its name and memory, the driver and the torch build."""
    device = torch.device(device)
    build = f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else "")
    if device.type != "cuda":
        return f"cpu ({torch.get_num_threads()} threads), {build}"
    props = torch.cuda.get_device_properties(device)
    driver = _driver_version()
    return (
        f"{device} ({props.name}, {props.total_memory / 2**30:.0f} GiB, capability {props.major}.{props.minor}"
        f"{', driver ' + driver if driver else ''}), {build}, cuDNN {torch.backends.cudnn.version()}"
    )


def _driver_version() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi``, or None when it cannot be read."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None
