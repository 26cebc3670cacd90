"""Training scalars as TensorBoard event files, when the optional ``tensorboard`` package is installed.

``metrics.jsonl`` stays the source of truth; this is a view of the same values for ``tensorboard --logdir``.
Without ``tensorboard`` (``pip install -e ".[tensorboard]"``) every call is a no-op, so callers need no check.

    board = TensorBoardLog(run_dir / "tensorboard")  # resuming at iteration N: purge_step=N + 1
    board.log(iteration, {"total": 1.93, "loss_ce": 0.41, "lr": 2e-5})
    board.close()

Tags are the metric names as given (the keys of a ``metrics.jsonl`` line); the step is the iteration. Create
it on the main process only, as the JSON lines are written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "TensorBoardLog", "tensorboard_available"]

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[tensorboard]"'


def _summary_writer_class() -> type | None:
    """``torch.utils.tensorboard.SummaryWriter``, or None when the ``tensorboard`` package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def tensorboard_available() -> bool:
    """True when event files can be written (the ``tensorboard`` package imports)."""
    return _summary_writer_class() is not None


class TensorBoardLog:
    """Writes ``log(iteration, values)`` as scalars into event files in ``out_dir``; a no-op without the
    ``tensorboard`` package.

    Args:
        out_dir: folder of the event files (created when needed).
        purge_step: when resuming from a checkpoint at iteration N, pass N + 1: events at steps >= N + 1 that
            the interrupted run wrote are hidden (TensorBoard's ``purge_step``), as the ``metrics.jsonl``
            lines after the checkpoint are dropped; None for a fresh run.
        enabled: False makes it a no-op even when tensorboard is installed.
    """

    def __init__(self, out_dir: str | Path, purge_step: int | None = None, enabled: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self._writer: Any = None
        writer_class = _summary_writer_class() if enabled else None
        if enabled and writer_class is None:
            log.info("tensorboard is not installed: no event files (%s to get them)", INSTALL_HINT)
        if writer_class is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._writer = writer_class(log_dir=str(self.out_dir), purge_step=purge_step)

    @property
    def active(self) -> bool:
        """True when values are written (tensorboard installed, enabled, not closed)."""
        return self._writer is not None

    def log(self, iteration: int, values: Mapping[str, float]) -> None:
        """One scalar per entry at step ``iteration`` (floats, ints, 0-d tensors); other values are skipped.

        Non-finite values are written as they are (TensorBoard shows NaN / inf), like the JSON lines."""
        if self._writer is None:
            return
        for tag, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            self._writer.add_scalar(tag, number, global_step=int(iteration))

    def flush(self) -> None:
        """Write pending events to disk now."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; later calls to :meth:`log` are no-ops."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
