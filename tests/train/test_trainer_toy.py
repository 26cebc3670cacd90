"""The training loop's mechanics on a toy model with the VideoMaskFormer interface (fast)."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from autoqvis.config import TrainingConfig
from autoqvis.structures import Clip
from autoqvis.train.trainer import Trainer, TrainingDivergedError


class ToyCriterion(nn.Module):
    def forward(self, outputs, targets):
        pred = outputs["pred"]
        target = torch.stack([t["mean"] for t in targets])
        noise = torch.rand(()) * 1e-3  # the real criterion draws random points: resume must restore the RNG
        return {"loss_a": ((pred - target) ** 2).mean() + noise, "loss_b": pred.abs().mean() * 0.1}


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 1)
        self.dropout = nn.Dropout(0.2)
        self.criterion = ToyCriterion()

    def preprocess(self, videos):
        images = torch.stack([v.float() / 255 for v in videos])
        return images, [tuple(v.shape[-2:]) for v in videos]

    def prepare_targets(self, clips, padded_hw):
        return [{"mean": c.masks.float().mean()} for c in clips]

    def forward(self, images, num_videos=None):
        B, T = images.shape[:2]
        x = self.norm(self.backbone(images.flatten(0, 1))).mean((2, 3))
        return {"pred": self.head(self.dropout(x)).view(B, T).mean(1)}


class Source:
    def __init__(self, n, poison_at=None):
        self.n, self.poison_at = n, poison_at

    def __len__(self):
        return self.n

    def clip(self, index, seed):
        g = torch.Generator().manual_seed(seed)
        frames = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8, generator=g)
        if index == self.poison_at:
            frames = frames * 0
        masks = torch.rand(1, 2, 8, 8, generator=g) > 0.5
        return Clip(frames=frames, masks=masks, ids=torch.zeros(1, 2, dtype=torch.long))


def make(tmp, iters, **kw):
    torch.manual_seed(0)
    cfg = TrainingConfig(
        max_iters=iters, batch_size=2, lr=1e-2, checkpoint_period=5, log_period=5, clip_grad_norm=1.0, **kw
    )
    return Trainer(ToyModel(), [Source(7), Source(5)], [0.5, 0.5], cfg, tmp, torch.device("cpu"))


def test_resume_is_exact(tmp_path):
    straight = make(tmp_path / "a", 20)
    straight.train()
    first = make(tmp_path / "b", 20)
    first.cfg = TrainingConfig(**{**first.cfg.__dict__, "max_iters": 10})
    first.train()
    # a different process would start with different global RNG state: resume must restore it
    torch.manual_seed(123)
    second = make(tmp_path / "b", 20)
    second.train(resume=True)
    assert second.iteration == 20
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[k], v, rtol=0, atol=0)
    log_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log_b] == [5, 10, 15, 20]
    assert [r["total"] for r in log_a] == [r["total"] for r in log_b]


def test_metrics_written_after_the_checkpoint_are_replaced_on_resume(tmp_path):
    run = make(tmp_path, 10)
    run.train()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(
            '{"iteration": 15, "total": 1.0}\n{"iteration": 2'
        )  # logged after the checkpoint, then a torn line
    again = make(tmp_path, 12)
    again.train()
    assert [json.loads(x)["iteration"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [
        5,
        10,
        12,
    ]


def test_nan_loss_stops_with_terms_and_keeps_checkpoint(tmp_path):
    run = make(tmp_path, 30)

    def poisoned(clips):
        losses = Trainer.forward_losses(run, clips)
        if run.iteration >= 7:
            losses["loss_b"] = losses["loss_b"] * float("nan")
        return losses

    run.forward_losses = poisoned
    with pytest.raises(
        TrainingDivergedError,
        match=r"loss is nan at iteration 8 \(loss_a=.*, loss_b=nan\); the last good checkpoint .*last\.pt is kept",
    ):
        run.train()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 5


def test_optimizer_groups_follow_the_official_rules(tmp_path):
    run = make(tmp_path, 1)
    groups = {name: g for g in run.optimizer.param_groups for name in g["names"]}
    assert len(run.optimizer.param_groups) == len({(g["lr"], g["weight_decay"]) for g in groups.values()})
    assert groups["backbone.weight"]["lr"] == pytest.approx(1e-3)  # backbone x0.1
    assert groups["head.weight"]["lr"] == pytest.approx(1e-2)
    assert groups["norm.weight"]["weight_decay"] == 0.0  # no decay on norms
    assert groups["head.weight"]["weight_decay"] == 0.05


def test_learning_rate_schedules():
    from autoqvis.train.optim import lr_factor

    base = TrainingConfig(max_iters=100, warmup_iters=10, warmup_factor=0.001)
    assert lr_factor(0, base) == pytest.approx(0.001) and lr_factor(10, base) == 1.0
    assert lr_factor(99, base) == 1.0  # constant: the official schedule (its step is at the last iteration)
    step = dataclasses.replace(base, schedule="step", steps=(50, 80), gamma=0.1)
    assert [lr_factor(i, step) for i in (49, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])
    cosine = dataclasses.replace(base, schedule="cosine", warmup_iters=0)
    assert [lr_factor(i, cosine) for i in (0, 50, 100)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert lr_factor(100, cosine) <= lr_factor(99, cosine) < lr_factor(98, cosine)


def test_weight_average_resumes_exactly_and_is_the_output(tmp_path):
    straight = make(tmp_path / "a", 12, ema_decay=0.9)
    straight.train()
    first = make(tmp_path / "b", 12, ema_decay=0.9)
    first.cfg = dataclasses.replace(first.cfg, max_iters=5)
    first.train()
    second = make(tmp_path / "b", 12, ema_decay=0.9)
    second.train(resume=True)
    for k, v in straight.ema.state_dict().items():
        torch.testing.assert_close(second.ema.state_dict()[k], v, rtol=0, atol=0)
    # one step: the average moves from the initial weights by (1 - decay_at(0)) = 0.9 towards the new ones
    one = make(tmp_path / "c", 1, ema_decay=0.9)
    start = one.model.head.weight.detach().clone()
    one.train()
    expected = start + 0.9 * (one.model.head.weight.detach() - start)
    torch.testing.assert_close(one.ema.state_dict()["head.weight"], expected)
    assert [one.ema.decay_at(i) for i in (0, 1, 2, 1000)] == pytest.approx([0.1, 2 / 11, 0.25, 0.9])
    raw = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight.final_weights()
    averaged = straight.model.state_dict()
    assert not torch.equal(averaged["head.weight"], raw["head.weight"])
    torch.testing.assert_close(averaged["head.weight"], straight.ema.state_dict()["head.weight"])
    # without an average the output is the last weights
    plain = make(tmp_path / "d", 3)
    plain.train()
    before = {k: v.clone() for k, v in plain.model.state_dict().items()}
    plain.final_weights()
    assert all(torch.equal(before[k], v) for k, v in plain.model.state_dict().items())


def test_a_fresh_run_drops_stale_metric_lines_and_writes_tensorboard_events(tmp_path):
    from autoqvis.train.tensorboard import tensorboard_available

    (tmp_path / "metrics.jsonl").write_text('{"iteration": 5, "total": 9.0}\n')  # a killed run, no checkpoint
    run = make(tmp_path, 5)
    run.train()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [5] and lines[0]["total"] != 9.0
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert bool(events) == tensorboard_available()
