"""Shared test helpers: the tiny-model settings, the reference-fixture root and the shared real-data root.

Tests that train or predict end to end start from :data:`TINY_SETTINGS` (``--set`` values: the tiny model preset,
few sampled points, 64-pixel frames): :func:`set_args` turns them into CLI arguments, :func:`tiny_config` (or
the ``tiny_cfg`` fixture) into a resolved :class:`~autoqvis.config.Config`. Add a test's own settings after them
(a later ``--set`` wins).

Parity tests read the fixture root from ``AUTOQVIS_FIXTURES`` (default ``fixtures/reference`` in the shared
folder: ``../shared`` beside the repository, or ``AUTOQVIS_SHARED``). When the variable is set, a missing or
incomplete folder is a failure; when it is not set and the default folder is absent, fixture tests are skipped
with a message.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest

from autoqvis.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the repository; AUTOQVIS_SHARED names another (a git worktree elsewhere, a CI cache)
SHARED_ROOT = Path(os.environ.get("AUTOQVIS_SHARED") or REPO_ROOT.parent / "shared")
DEFAULT_FIXTURES = SHARED_ROOT / "fixtures" / "reference"

# The tiny-model overrides shared by every end-to-end test: the CPU-sized preset (same code paths as paper_r50),
# 256 sampled points per mask instead of 12544, two clips per batch, 64-pixel short sides for inference and for
# synthetic clips. Iteration counts and periods stay with each test.
TINY_SETTINGS: tuple[str, ...] = (
    "model.preset=tiny",
    "training.num_points=256",
    "training.batch_size=2",
    "inference.short_side=64",
    "synthesis.short_sides=[64]",
)


def set_args(*settings: str | Iterable[str]) -> list[str]:
    """``["--set", a, "--set", b, ...]`` for the CLI; each argument is one ``key=value`` or a list of them.

    ``set_args(TINY_SETTINGS, "training.max_iters=4")``
    """
    args: list[str] = []
    for item in settings:
        for value in [item] if isinstance(item, str) else item:
            args += ["--set", value]
    return args


def tiny_config(*overrides: str) -> Config:
    """The defaults + :data:`TINY_SETTINGS` + ``overrides`` (``key=value`` strings, applied last)."""
    return load_config([], [*TINY_SETTINGS, *overrides])


@pytest.fixture
def tiny_cfg() -> Config:
    """The resolved tiny configuration (:func:`tiny_config` without extra overrides)."""
    return tiny_config()


def fixture_root() -> Path:
    """The reference fixture folder (see module docstring)."""
    explicit = os.environ.get("AUTOQVIS_FIXTURES")
    if explicit:
        root = Path(explicit)
        if not root.is_dir():
            pytest.fail(f"AUTOQVIS_FIXTURES={explicit} is not a folder")
        return root
    if not DEFAULT_FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {DEFAULT_FIXTURES}; set AUTOQVIS_FIXTURES")
    return DEFAULT_FIXTURES


def fixture_file(*parts: str) -> Path:
    """A file inside the fixture root; missing is a failure (the folder is incomplete)."""
    path = fixture_root().joinpath(*parts)
    if not path.exists():
        pytest.fail(f"fixture folder is incomplete: {path} is missing")
    return path


def shared_data(*parts: str) -> Path:
    """A path under ``../shared/data``; skips when the shared data folder is absent."""
    path = SHARED_ROOT.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return fixture_root()


def fixture_params(read) -> list:
    """Values to parametrize over, read from the fixture folder by ``read()``; when the default folder is absent,
    one skipped case instead (a folder named by AUTOQVIS_FIXTURES that is incomplete still fails)."""
    try:
        return list(read())
    except pytest.skip.Exception as err:
        return [pytest.param(None, marks=pytest.mark.skip(reason=str(err)))]


@pytest.fixture(autouse=True)
def _cpu_unless_marked_gpu(request, monkeypatch):
    """Every test not marked ``gpu`` sees a machine without CUDA, in this process and in the processes it
    starts, so that ``--device auto`` (the default) means the CPU there as on the machines the suite was
    written on: bit-exact resume tests rely on CPU kernels. Tests marked ``gpu`` see the GPUs."""
    if request.node.get_closest_marker("gpu") is None:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def fake_discovery(tmp_path, monkeypatch):
    """Discovery's bookkeeping without a ViT: MaskCut replaced by one full-frame mask per image (the number of
    images of each call recorded in the returned list) and a discovery section whose weights file
    (``tmp_path/w.safetensors``) exists. Returns ``(calls, cfg.discovery)``."""
    import importlib
    from types import SimpleNamespace

    import numpy as np

    calls: list[int] = []

    def fake_maskcut(images, vit, cfg):
        calls.append(len(images))
        return [SimpleNamespace(masks=[np.ones(img.shape[:2], bool)], scores=[0.5]) for img in images]

    monkeypatch.setattr(importlib.import_module("autoqvis.discover.maskcut"), "maskcut_batch", fake_maskcut)
    (tmp_path / "w.safetensors").write_bytes(b"weights")
    return calls, load_config(overrides=[f"discovery.weights={tmp_path / 'w.safetensors'}"]).discovery
