"""The rounds' own optimisation settings: learning rate and label-following mixing."""

from __future__ import annotations

import pytest

from autoqvis.config import Config, ConfigError, RoundsConfig, TrainingConfig
from autoqvis.selftrain.loop import round_training_config
from autoqvis.train.sources import mixing_probs, real_mix_prob


def test_mix_follows_the_number_of_labelled_frames():
    fixed = RoundsConfig(mix_prob=0.5)
    assert real_mix_prob(fixed, 3) == 0.5  # official: a fixed 50/50 whatever the labels
    following = RoundsConfig(mix_prob=0.5, mix_frames=400)
    assert real_mix_prob(following, 100) == pytest.approx(0.125)
    assert real_mix_prob(following, 400) == pytest.approx(0.5)
    assert real_mix_prob(following, 4000) == pytest.approx(0.5)  # never above mix_prob


def test_mixing_probs_share_the_real_probability_among_real_sources():
    rounds = RoundsConfig(mix_prob=0.4, mix_frames=100)
    assert mixing_probs(2, [30, 20], rounds) == pytest.approx([0.4, 0.4, 0.1, 0.1])  # 0.4 x 50/100
    assert mixing_probs(3, [], rounds) == pytest.approx([1 / 3] * 3)  # one kind: equally likely
    assert mixing_probs(0, [5, 5], rounds) == pytest.approx([0.5, 0.5])


def test_round_learning_rate_defaults_to_the_training_rate():
    cfg = Config(training=TrainingConfig(lr=1e-4), rounds=RoundsConfig(iters=7))
    rounds = round_training_config(cfg)
    assert rounds.lr == 1e-4 and rounds.max_iters == 7 and rounds.droploss
    cfg = Config(training=TrainingConfig(lr=1e-4), rounds=RoundsConfig(lr=2e-5))
    assert round_training_config(cfg).lr == 2e-5


def test_a_round_changes_the_training_section_and_its_losses_have_one_home():
    """DropLoss and the frozen head are ``training``'s: unset, on in the rounds and off elsewhere; set, the
    same in every stage (the ablations); the rounds change only iterations, batch and rate."""
    cfg = Config(
        training=TrainingConfig(num_points=64, ema_decay=0.9), rounds=RoundsConfig(iters=7, batch_size=3)
    )
    rounds = round_training_config(cfg)
    assert (rounds.droploss, rounds.freeze_quality_head) == (True, True)
    assert (cfg.training.stage_losses().droploss, cfg.training.stage_losses().freeze_quality_head) == (
        False,
        False,
    )
    assert rounds == TrainingConfig(
        num_points=64, ema_decay=0.9, max_iters=7, batch_size=3, droploss=True, freeze_quality_head=True
    )
    ablation = Config(training=TrainingConfig(droploss=False, freeze_quality_head=False))
    assert (
        round_training_config(ablation).droploss,
        round_training_config(ablation).freeze_quality_head,
    ) == (
        False,
        False,
    )
    everywhere = TrainingConfig(droploss=True).stage_losses()
    assert everywhere.droploss and not everywhere.freeze_quality_head


@pytest.mark.parametrize("field", ["mix_frames", "lr"])
def test_round_settings_are_range_checked(field):
    with pytest.raises(ConfigError, match=f"rounds.{field}"):
        RoundsConfig(**{field: -1})
