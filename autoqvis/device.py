"""Where a command computes, and in which precision.

Every command that runs a model takes ``--device auto | cpu | cuda | cuda:N`` (the same notion as the config key
``inference.device``; the flag wins). ``auto`` is the first GPU when CUDA is usable and the CPU otherwise; under
``torchrun`` ``auto`` and ``cuda`` mean this process's GPU, ``cuda:LOCAL_RANK``. A string that is not a device,
``cuda`` on a machine without CUDA and ``cuda:N`` beyond the device count are :class:`DeviceError` s that say
what the machine has.

Mixed precision (``training.amp``, ``inference.amp``): ``bf16`` autocasts to bfloat16 on CUDA (when the GPU
supports it) and on the CPU; ``fp16`` autocasts to float16 on CUDA only (training then scales the loss). On the
CPU, float16 autocast runs but is slower than float32 (``paper_r50`` eval on 2 cores: float32 6.0 s, bfloat16
3.6 s, float16 10.1 s), so it is refused with a message instead.

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
    "describe_device",
    "resolve_device",
]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
AMP_CHOICES = ("off", "bf16", "fp16")

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


def autocast_dtype(amp: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (``off`` | ``bf16`` | ``fp16``) on ``device``; None for ``off``.

    Raises :class:`DeviceError` for ``fp16`` on the CPU and for ``bf16`` on a GPU without bfloat16."""
    device = torch.device(device)
    if amp not in AMP_CHOICES:
        raise DeviceError(f"amp must be one of {', '.join(AMP_CHOICES)}, got {amp!r}")
    if amp == "off":
        return None
    if device.type == "cpu":
        if amp == "fp16":
            raise DeviceError(
                "amp=fp16 needs a CUDA device: float16 autocast on the CPU is slower than float32; on the "
                "CPU use bf16 or off"
            )
        return torch.bfloat16
    if device.type == "cuda":
        if amp == "bf16" and not torch.cuda.is_bf16_supported():
            raise DeviceError(
                f"amp=bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use amp=fp16 or off"
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
