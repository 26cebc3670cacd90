"""The trainer with the real (tiny) VIS model: exact resume, frozen quality head, finite losses."""

import json

import pytest
import torch

from autoqvis.config import TrainingConfig
from autoqvis.demo.world import WorldClipSource, WorldConfig
from autoqvis.engine.trainer import Trainer
from autoqvis.model import build_model

WORLD = WorldConfig(height=64, width=64, num_frames=3, max_objects=2)


def _trainer(out, iters, **kw):
    torch.manual_seed(0)
    cfg = TrainingConfig(
        max_iters=iters,
        batch_size=2,
        num_points=256,
        deterministic=True,
        checkpoint_period=4 if iters < 100 else 500,
        log_period=2,
        lr=1e-4,
        **kw,
    )
    model = build_model("tiny")
    from autoqvis.losses.criterion import build_criterion

    model.criterion = build_criterion(cfg)
    if cfg.freeze_quality_head:
        model.freeze_quality_head()
    sources = [WorldClipSource(16, WORLD), WorldClipSource(8, WORLD)]
    return Trainer(model, sources, [0.5, 0.5], cfg, out, torch.device("cpu"))


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
    assert all(r["total"] == r["total"] for r in a)  # finite


def test_tiny_model_resume_is_exact(tmp_path):
    _resume_matches(tmp_path, 8)


@pytest.mark.slow
def test_tiny_model_resume_is_exact_over_2000_steps(tmp_path):
    _resume_matches(tmp_path, 2000)


def test_frozen_quality_head_is_untouched_by_training(tmp_path):
    trainer = _trainer(tmp_path, 3, freeze_quality_head=True, droploss=True)
    before = {k: v.clone() for k, v in trainer.model.quality_head.state_dict().items()}
    trainer.train()
    for k, v in trainer.model.quality_head.state_dict().items():
        assert torch.equal(v, before[k]), k
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert not any("loss_maskiou" in k for k in log[-1])
