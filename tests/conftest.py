"""Shared test helpers: the reference-fixture root and the shared real-data root.

Parity tests read the fixture root from ``AUTOQVIS_FIXTURES`` (default ``../shared/fixtures/reference``
beside the repository). When the variable is set, a missing or incomplete folder is a failure; when it is
not set and the default folder is absent, fixture tests are skipped with a message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"
DEFAULT_FIXTURES = SHARED_ROOT / "fixtures" / "reference"


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
