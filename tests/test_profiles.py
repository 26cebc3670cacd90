"""The named profiles in ``autoqvis/configs/``: each loads through ``load_config`` (an unknown key is an error) and holds
the official values of its stage (``../shared/docs/method.md`` sections 1, 2 and 4; the official configs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoqvis.config import Config, all_keys, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "autoqvis" / "configs"
PROFILES = sorted(CONFIGS.glob("*.yaml"))


def _keys(delta: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in delta.items():
        if isinstance(value, dict):
            out += _keys(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_every_profile_loads_and_names_only_existing_keys(path):
    cfg = load_config([path])
    assert isinstance(cfg, Config)
    delta = yaml.safe_load(path.read_text())
    unknown = sorted(set(_keys(delta)) - set(all_keys()))
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    assert path.read_text().startswith("#"), f"{path.name}: start with a comment saying what the profile is"


def test_the_paper_profiles_exist():
    names = {p.name for p in PROFILES}
    assert {"paper_videocutler.yaml", "paper_s3_initial.yaml", "paper_s4_selftrain.yaml"} <= names


def test_videocutler_profile_is_the_official_s2_run():
    cfg = load_config([CONFIGS / "paper_videocutler.yaml"])
    t = cfg.training
    assert cfg.model.preset == "videocutler_r50"  # no quality head
    assert (t.max_iters, t.batch_size, t.lr, t.schedule) == (80000, 16, 5e-6, "constant")
    assert (t.warmup_iters, t.weight_decay, t.backbone_lr_mult, t.clip_grad_norm) == (10, 0.05, 0.1, 0.01)
    assert t.amp == "fp16" and not t.droploss
    s = cfg.synthesis
    assert (s.num_frames, s.crop_min, s.crop_max, s.short_sides) == (3, 600, 720, (360, 480))
    assert s.copy_paste and s.paste_scale == (0.8, 1.0)
    assert cfg.inference.short_side == 360
    assert "--nproc-per-node 8" in (CONFIGS / "paper_videocutler.yaml").read_text()


def test_s3_profile_is_the_official_initial_stage():
    cfg = load_config([CONFIGS / "paper_s3_initial.yaml"])
    t = cfg.training
    assert cfg.model.preset == "paper_r50"
    assert (t.max_iters, t.batch_size, t.lr, t.schedule) == (8000, 2, 2e-5, "constant")
    assert t.quality_loss == "all" and t.quality_weight == 20.0
    assert t.stage_losses() == t.stage_losses(self_training=False) and t.amp == "fp16"
    assert t.stage_losses().freeze_quality_head is False and t.stage_losses().droploss is False
    assert "--num-gpus 1" in (CONFIGS / "paper_s3_initial.yaml").read_text()


def test_s4_profile_is_the_official_self_training():
    cfg = load_config([CONFIGS / "paper_s4_selftrain.yaml"])
    s, r, loop, t = cfg.selection, cfg.rounds, cfg.selftrain, cfg.training
    assert (loop.num_rounds, r.iters, r.batch_size) == (2, 10000, 4)
    assert (s.top_k, s.nms_iou, s.score_min, s.quality_min, s.min_frames) == (10, 0.5, 0.25, 0.75, 2)
    assert s.selection_score == "quality" and s.fusion == "fuse" and s.min_eligible_frames == 2
    assert loop.reset_each_round and r.mix_prob == 0.5
    rounds = r.training(t)  # a round's training: head frozen, DropLoss (FREEZE_MASKIOU, USE_DROPLOSS)
    assert (
        rounds.freeze_quality_head and rounds.droploss and (rounds.max_iters, rounds.batch_size) == (10000, 4)
    )
    initial = t.stage_losses()  # M0 with the same profile: the head trains, no DropLoss
    assert initial.freeze_quality_head is False and initial.droploss is False
    assert loop.select_metric == "AP50"
    assert (t.lr, t.schedule, t.amp, t.droploss_tau) == (2e-5, "constant", "fp16", 0.01)
    assert (cfg.inference.short_side, cfg.inference.top_k, cfg.inference.window) == (360, 10, 0)
    assert "--nproc-per-node 2" in (CONFIGS / "paper_s4_selftrain.yaml").read_text()


def test_s3_and_s4_profiles_combine_without_contradiction():
    """The self-training command takes both: S3's keys for the initial stage, S4's for the rounds."""
    s3, s4 = (
        yaml.safe_load((CONFIGS / n).read_text())
        for n in ("paper_s3_initial.yaml", "paper_s4_selftrain.yaml")
    )
    shared = {k for k in _keys(s3)} & {k for k in _keys(s4)}
    both = load_config([CONFIGS / "paper_s3_initial.yaml", CONFIGS / "paper_s4_selftrain.yaml"])
    for key in shared:
        section, name = key.split(".")
        assert getattr(getattr(both, section), name) == getattr(
            getattr(load_config([CONFIGS / "paper_s3_initial.yaml"]), section), name
        ), key
    assert (both.training.max_iters, both.training.batch_size) == (8000, 2)
    assert (both.rounds.iters, both.rounds.batch_size) == (10000, 4)
