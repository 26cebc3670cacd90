"""The rounds' own optimisation settings: learning rate and label-following mixing."""

from __future__ import annotations

import pytest

from autoqvis.config import Config, ConfigError, SelectionConfig, TrainingConfig
from autoqvis.selftrain.loop import real_mix_prob, round_training_config


def test_mix_follows_the_number_of_labelled_frames():
    fixed = SelectionConfig(mix_prob=0.5)
    assert real_mix_prob(fixed, 3) == 0.5  # official: a fixed 50/50 whatever the labels
    following = SelectionConfig(mix_prob=0.5, mix_frames=400)
    assert real_mix_prob(following, 100) == pytest.approx(0.125)
    assert real_mix_prob(following, 400) == pytest.approx(0.5)
    assert real_mix_prob(following, 4000) == pytest.approx(0.5)  # never above mix_prob


def test_round_learning_rate_defaults_to_the_training_rate():
    cfg = Config(training=TrainingConfig(lr=1e-4), selection=SelectionConfig(round_iters=7))
    rounds = round_training_config(cfg)
    assert rounds.lr == 1e-4 and rounds.max_iters == 7 and rounds.droploss
    cfg = Config(training=TrainingConfig(lr=1e-4), selection=SelectionConfig(round_lr=2e-5))
    assert round_training_config(cfg).lr == 2e-5


@pytest.mark.parametrize("field", ["mix_frames", "round_lr"])
def test_round_settings_are_range_checked(field):
    with pytest.raises(ConfigError, match=field):
        SelectionConfig(**{field: -1})
