"""What a weights file's tensors must be before they are loaded into a model: the right kind of number, and
finite.

- A floating-point tensor where the model holds another floating-point dtype (float16, bfloat16 or float64
  where float32 is expected) is cast to the model's dtype, with one log line: the values are the same weights
  at another precision.
- An integer, bool or complex tensor where the model holds a float (or a float where it holds an integer)
  is refused: ``load_state_dict`` would cast it silently, but such a file is not these weights.
- A NaN or infinite value is refused: the model would output NaN scores and masks (a diverged training, or a
  damaged file).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from autoqvis.errors import CheckpointError

__all__ = ["checked_state"]

log = logging.getLogger("autoqvis")


def checked_state(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: str | Path
) -> dict[str, torch.Tensor]:
    """``state`` ready to load into a model whose own tensors are ``expected`` (keys missing from either are
    left to the caller); raises :class:`CheckpointError` naming the first bad tensor of ``path``."""
    out = dict(state)
    cast: dict[str, int] = {}
    wrong: list[tuple[str, str, str]] = []  # (key, its dtype, the model's)
    for key, value in state.items():
        own = expected.get(key)
        if own is None or value.dtype == own.dtype:
            continue
        if value.is_floating_point() and own.is_floating_point():
            out[key] = value.to(own.dtype)
            cast[_name(value.dtype)] = cast.get(_name(value.dtype), 0) + 1
        else:
            wrong.append((key, _name(value.dtype), _name(own.dtype)))
    if wrong:
        key, dtype, own_dtype = wrong[0]
        raise CheckpointError(
            f"{path}: {len(wrong)} tensor(s) of the wrong kind (first: {key} is {dtype}, the model's is {own_dtype}); "
            f"weights must be floating point ({own_dtype}; float16, bfloat16 and float64 are cast): the file is not "
            "the weights of this model, or was written wrongly"
        )
    if cast:
        log.info(
            "%s: cast %s to the model's precision",
            path,
            ", ".join(f"{n} {dtype} tensor(s)" for dtype, n in cast.items()),
        )
    for key, value in out.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{path}: tensor {key} holds {bad} NaN or infinite value(s) of {value.numel()}; these weights "
                "would give NaN scores and masks (a training that diverged, or a damaged file): pass other weights"
            )
    return out


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
