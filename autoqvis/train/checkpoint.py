"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimiser, scheduler and AMP-scaler states, the data sampler state, the RNG
states (python, numpy, torch CPU and CUDA), the iteration and the resolved configuration. It is saved with
``torch.save`` to a temporary file and renamed over ``last.pt``, so a run killed mid-write (even SIGKILL)
leaves the previous complete checkpoint. Loading uses ``weights_only=True``.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoqvis.errors import CheckpointError
from autoqvis.runs.atomic import atomic_path

__all__ = ["capture_rng", "load_training_state", "restore_rng", "save_training_state"]

log = logging.getLogger(__name__)


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and every CUDA device)."""
    state: dict[str, Any] = {
        "python": _python_state_to_list(random.getstate()),
        "numpy": _numpy_state_to_dict(np.random.get_state()),  # noqa: NPY002 (the global state other code uses)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(_python_state_from_list(state["python"]))
    np.random.set_state(_numpy_state_from_dict(state["numpy"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists and dicts of them) to ``path``."""
    path = Path(path)
    with atomic_path(path, suffix=".pt.tmp") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # through a Python file: a failed write (a full disk) is an OSError, not torch's
    return path


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for bad files
        from autoqvis.model.checkpoint import describe_torch_load_error

        raise CheckpointError(
            f"cannot load checkpoint {path} ({describe_torch_load_error(err)[1]}): the file is damaged or not ours. "
            f"Rerun with --no-resume to start the training over, or delete {path}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a training state; rerun with --no-resume to start the "
            f"training over, or delete {path}"
        )
    return state


# python's and numpy's RNG states hold tuples and arrays; store them as plain lists/dicts (weights_only)


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_list(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_state_to_dict(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": pos,
        "has_gauss": has_gauss,
        "cached": cached,
    }


def _numpy_state_from_dict(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached"])
