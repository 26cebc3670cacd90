"""The mask-count normaliser is averaged over the world when torch.distributed is initialised (gloo, 2 CPU
processes): total tracks / world size, clamped to >= 1, identical on every rank."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autoqvis.losses.criterion import average_num_masks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, counts: list[tuple[int, ...]], out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        out = []
        for per_rank in counts:
            targets = [{"labels": torch.zeros(per_rank[rank], dtype=torch.int64)}]
            out.append(average_num_masks(targets, torch.device("cpu")))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)
def test_normaliser_is_all_reduced_over_two_processes(tmp_path: Path) -> None:
    counts = [(3, 0), (1, 0), (4, 6)]  # tracks on rank 0 and rank 1, per call
    mp.spawn(_worker, args=(2, _free_port(), counts, str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    expected = [1.5, 1.0, 5.0]  # (3+0)/2, max((1+0)/2, 1), (4+6)/2
    assert results[0] == results[1] == expected
