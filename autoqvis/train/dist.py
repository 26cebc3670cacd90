"""Distributed helpers over ``torch.distributed`` (launched by ``torchrun``; gloo on CPU, nccl on CUDA).

A single process is the world of size 1: every helper works without initialisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as torch_dist

from autoqvis.errors import AutoqvisError

__all__ = [
    "all_gather_objects",
    "backend_for",
    "barrier",
    "broadcast_object",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_rank",
    "rank",
    "shard",
    "shutdown",
    "world_size",
]

T = TypeVar("T")


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def backend_for(device: torch.device | str) -> str:
    """The process-group backend for ``device``: ``nccl`` for CUDA (GPU-to-GPU all-reduce), ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: torch.device) -> bool:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), with :func:`backend_for`
    ``device``; on CUDA this process's GPU becomes the current one. Returns True if distributed."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    device = torch.device(device)
    backend = backend_for(device)
    if backend == "nccl" and not torch_dist.is_nccl_available():
        raise AutoqvisError(
            "torchrun on CUDA needs the nccl backend, which this torch build lacks; run on the CPU (--device "
            "cpu, gloo) or install a torch build with NCCL"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device.index if device.index is not None else local_rank())
    torch_dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return True


def shutdown() -> None:
    """Leave the process group once every rank got here (a rank that tears its gloo threads down while
    another still talks to it can abort the process)."""
    if is_distributed():
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    if not is_distributed():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items`` (round-robin, so ranks get near-equal counts)."""
    return list(items[rank() :: world_size()])
