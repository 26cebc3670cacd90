"""DistributedDataParallel on 2 CPU processes (gloo) equals one process with the same global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from autoqvis.config import TrainingConfig
from autoqvis.train.trainer import Trainer
from tests.train.test_trainer_toy import Source, ToyModel


class DeterministicCriterion(nn.Module):
    def forward(self, outputs, targets):
        pred = outputs["pred"]
        target = torch.stack([t["mean"] for t in targets])
        return {"loss_a": ((pred - target) ** 2).mean(), "loss_b": pred.abs().mean() * 0.1}


def _model() -> ToyModel:
    torch.manual_seed(0)
    model = ToyModel()
    model.dropout = nn.Identity()
    model.criterion = DeterministicCriterion()
    return model


def _cfg() -> TrainingConfig:
    return TrainingConfig(
        max_iters=6, batch_size=4, lr=1e-2, checkpoint_period=3, log_period=3, clip_grad_norm=1.0
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        trainer = Trainer(_model(), [Source(7), Source(5)], [0.5, 0.5], _cfg(), out, torch.device("cpu"))
        trainer.train()
        if rank == 0:
            torch.save(trainer.model.state_dict(), Path(out) / "ddp_weights.pt")
    finally:
        dist.barrier()  # no rank tears its gloo threads down while the other still saves or talks
        dist.destroy_process_group()


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)
def test_two_process_ddp_matches_a_single_process(tmp_path):
    ddp_dir = tmp_path / "ddp"
    mp.spawn(_worker, args=(2, _free_port(), str(ddp_dir)), nprocs=2, join=True)
    single = Trainer(
        _model(), [Source(7), Source(5)], [0.5, 0.5], _cfg(), tmp_path / "single", torch.device("cpu")
    )
    single.train()
    ddp = torch.load(ddp_dir / "ddp_weights.pt")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp[k], v, atol=1e-6, rtol=1e-5)
    assert (ddp_dir / "last.pt").is_file() and (ddp_dir / "metrics.jsonl").is_file()
