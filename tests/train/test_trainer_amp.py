"""Mixed precision in the trainer on the CPU: bf16 autocast trains, fp16 is refused when the trainer is built."""

import pytest
import torch

from autoqvis.config import TrainingConfig
from autoqvis.device import DeviceError
from autoqvis.train.trainer import Trainer
from tests.train.test_trainer_toy import Source, ToyModel


def _cfg(amp: str) -> TrainingConfig:
    return TrainingConfig(max_iters=3, batch_size=2, lr=1e-2, log_period=1, clip_grad_norm=1.0, amp=amp)


def test_bf16_autocast_trains_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(ToyModel(), [Source(4)], [1.0], _cfg("bf16"), tmp_path, torch.device("cpu"))
    trainer.train()
    assert trainer.iteration == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_fp16_on_the_cpu_is_refused_at_construction(tmp_path):
    with pytest.raises(DeviceError, match="amp=fp16 needs a CUDA device"):
        Trainer(ToyModel(), [Source(4)], [1.0], _cfg("fp16"), tmp_path, torch.device("cpu"))
    assert not (tmp_path / "last.pt").exists()
