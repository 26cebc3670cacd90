"""The trainer with the real (tiny) VIS model: exact resume, frozen quality head, finite losses."""

import json
import math

import pytest
import torch

from autoqvis.io.world import WorldClipSource, WorldConfig
from autoqvis.model import build_model
from autoqvis.train.trainer import Trainer
from tests.conftest import tiny_config

WORLD = WorldConfig(height=64, width=64, num_frames=3, max_objects=2)


def _trainer(out, iters, *settings):
    torch.manual_seed(0)
    cfg = tiny_config(
        f"training.max_iters={iters}",
        "training.deterministic=true",
        f"training.checkpoint_period={4 if iters < 100 else 500}",
        "training.log_period=2",
        "training.lr=1e-4",
        *settings,
    )
    model = build_model(cfg.model, cfg.training)  # the criterion of cfg.training, the head frozen if asked
    sources = [WorldClipSource(16, WORLD), WorldClipSource(8, WORLD)]
    return Trainer(model, sources, [0.5, 0.5], cfg.training, out, torch.device("cpu"))


def _resume_matches(tmp_path, total):
    straight = _trainer(tmp_path / "a", total)
    straight.train()
    half = _trainer(tmp_path / "b", total // 2)
    half.train()
    torch.manual_seed(999)  # a fresh process has other global RNG state
    rest = _trainer(tmp_path / "b", total)
    rest.train(resume=True)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(rest.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["total"]) for r in a] == [(r["iteration"], r["total"]) for r in b]
    assert all(math.isfinite(r["total"]) for r in a)


def test_tiny_model_resume_is_exact(tmp_path):
    _resume_matches(tmp_path, 8)


@pytest.mark.slow
def test_tiny_model_resume_is_exact_over_2000_steps(tmp_path):
    _resume_matches(tmp_path, 2000)


def test_frozen_quality_head_is_untouched_by_training(tmp_path):
    trainer = _trainer(tmp_path, 3, "training.freeze_quality_head=true", "training.droploss=true")
    before = {k: v.clone() for k, v in trainer.model.quality_head.state_dict().items()}
    trainer.train()
    for k, v in trainer.model.quality_head.state_dict().items():
        assert torch.equal(v, before[k]), k
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert not any("loss_maskiou" in k for k in log[-1])
