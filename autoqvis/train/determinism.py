"""Deterministic kernels for one stage, restored afterwards.

``torch.use_deterministic_algorithms`` is process-wide state. A stage that wants bit-exact reruns and
resumes (``training.deterministic``) switches it on for its own duration and puts back what it found, so
that a library user's later code (or another stage in the same process) is not silently slowed down.

    with deterministic_algorithms(cfg.training.deterministic):
        trainer.train()
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["deterministic_algorithms"]


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Deterministic kernels (warning, not failing, where an op has none) inside the block when ``enabled``;
    the previous setting afterwards. A no-op when not ``enabled``."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
