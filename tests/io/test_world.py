"""The demo world: footage conditions change how the videos look, never what is in them or the stills."""

import numpy as np
import pytest

from autoqvis.demo.pipeline import DemoPlan
from autoqvis.errors import DataError
from autoqvis.io.world import FOOTAGE, WorldConfig, render_image, render_video


def _world(footage: str) -> WorldConfig:
    return WorldConfig(height=48, width=64, num_frames=6, **FOOTAGE[footage])


def test_real_footage_changes_the_look_of_videos_only():
    clean, real = _world("clean"), _world("real")
    still_clean, masks_clean = render_image(np.random.default_rng(3), clean)
    still_real, masks_real = render_image(np.random.default_rng(3), real)
    assert np.array_equal(still_clean, still_real) and np.array_equal(masks_clean, masks_real)
    for seed in range(4):
        a, b = (
            render_video(np.random.default_rng(seed), clean),
            render_video(np.random.default_rng(seed), real),
        )
        assert np.array_equal(a.masks, b.masks) and np.array_equal(a.present, b.present)
        assert b.frames.shape == a.frames.shape and b.frames.dtype == np.uint8
        diff = np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16)).mean()
        assert diff > 4, f"seed {seed}: real footage should look different (mean abs diff {diff:.1f})"


def test_motion_blur_smears_along_the_camera_motion():
    base = WorldConfig(height=48, width=64, num_frames=6, noise_std=(0.0, 0.0), max_blur=0.0)
    blurred = WorldConfig(**{**base.__dict__, "motion_blur": 7.0})
    a = render_video(np.random.default_rng(5), base).frames.astype(np.float32)
    b = render_video(np.random.default_rng(5), blurred).frames.astype(np.float32)

    def sharpness(frames):
        return np.abs(np.diff(frames, axis=1)).mean() + np.abs(np.diff(frames, axis=2)).mean()

    assert sharpness(b) < 0.9 * sharpness(a)


def test_plan_checks_the_footage_name():
    assert DemoPlan().world().motion_blur == FOOTAGE["real"]["motion_blur"]
    assert DemoPlan(footage="clean").world().motion_blur == 0.0
    with pytest.raises(DataError, match="footage must be one of clean, real"):
        DemoPlan(footage="film").world()
