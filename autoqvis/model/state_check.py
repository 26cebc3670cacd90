"""What a weights file's tensors must be before they are loaded into a model: the right kind of number, and
finite.

- A floating-point tensor where the model holds another floating-point dtype (float16, bfloat16 or float64
  where float32 is expected) is cast to the model's dtype, with one log line: the values are the same weights
  at another precision.
- An integer, bool or complex tensor where the model holds a float (or a float where it holds an integer)
  is refused: ``load_state_dict`` would cast it silently, but such a file is not these weights.
- A NaN or infinite value is refused: the model would output NaN scores and masks (a diverged training, or a
  damaged file).
- Weights that give fewer than :data:`MIN_MATCHED_FRACTION` of the model's tensors are refused
  (:func:`check_matched`): the rest would stay at their random initialisation and the model would run on
  random weights. The official checkpoints give every tensor (a VideoCutLER checkpoint every one but the
  quality head's, which counts as optional).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import torch

from autoqvis.errors import CheckpointError

__all__ = ["MIN_MATCHED_FRACTION", "check_matched", "checked_state"]

# The least share of a model's tensors a weights file must give (a model folder, an official checkpoint, --init)
MIN_MATCHED_FRACTION = 0.9

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


def check_matched(
    expected: Collection[str],
    given: Collection[str],
    path: str | Path,
    optional: Callable[[str], bool] = lambda key: False,
) -> None:
    """Refuse weights ``path`` whose keys ``given`` hold fewer than :data:`MIN_MATCHED_FRACTION` of the model's
    keys ``expected``. Keys that are ``optional`` do not count when the file holds none of them (a part the
    file's model does not have, as the quality head of a VideoCutLER checkpoint)."""
    given = set(given)
    needed = (
        [k for k in expected if not optional(k)] if not any(optional(k) for k in given) else list(expected)
    )
    if not needed:
        return
    found = sum(k in given for k in needed)
    if found >= MIN_MATCHED_FRACTION * len(needed):
        return
    absent = next(k for k in needed if k not in given)
    extra = sorted(given - set(expected))
    other = f"; its own keys look like {extra[0]!r}" if extra else ""
    raise CheckpointError(
        f"{path}: only {found} of the model's {len(needed)} tensors are in the file (autoqvis needs at least "
        f"{MIN_MATCHED_FRACTION:.0%}; the rest would stay random; first missing: {absent!r}{other}): these are "
        "not weights of this model; pass the model's own weights (a folder written by autoqvis or an official "
        "checkpoint of this preset)"
    )


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
