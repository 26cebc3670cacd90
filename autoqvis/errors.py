"""The error types autoqvis raises for bad input. The CLI prints their message (no traceback)."""

from __future__ import annotations

__all__ = ["AutoqvisError", "CheckpointError", "DataError", "OutputInUseError", "StaleOutputError"]


class AutoqvisError(Exception):
    """Base class: a problem the user can fix. The message says what was expected, what arrived and
    what to do."""


class DataError(AutoqvisError, ValueError):
    """Malformed or missing input data (JSON, frames, videos, masks)."""


class CheckpointError(AutoqvisError, ValueError):
    """A weights file that cannot be loaded."""


class StaleOutputError(AutoqvisError):
    """Outputs of an earlier run made with other settings or inputs, where a rerun would resume: the message
    names what changed and the ways on (a new output folder, or ``--no-resume`` to start that unit over)."""


class OutputInUseError(AutoqvisError):
    """Outputs another autoqvis process is writing now (its lock is held), or that another command made: the
    message names the other writer or command and the ways on (wait, or another output folder)."""
