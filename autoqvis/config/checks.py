"""What a configuration value may be: :class:`ConfigError`, numeric ranges and the check every section runs
when it is made (defaults, YAML files, ``--set``, ``dataclasses.replace``, a saved config read back)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoqvis.errors import AutoqvisError

__all__ = ["COUNT", "FRACTION", "NON_NEGATIVE", "POSITIVE", "SIDE", "ConfigError", "Range", "check_section"]


class ConfigError(AutoqvisError, ValueError):
    """A configuration file or override that cannot be applied. ``key``: the dotted key at fault, if one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# every numeric field of every section declares a range, checked whenever a section is made


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric field: ``lo <= value <= hi`` (``<`` on an open side); NaN and
    infinities are never allowed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "a finite number"


COUNT = Range(lo=1)  # how many of something: >= 1
NON_NEGATIVE = Range(lo=0)
POSITIVE = Range(lo=0, lo_open=True)
FRACTION = Range(lo=0, hi=1)  # probabilities, IoU and score thresholds
SIDE = Range(lo=32)  # an image side in pixels: the model's coarsest feature map has stride 32


def check_section(section: Any, name: str, ranges: Mapping[str, Range], ordered: Sequence[str] = ()) -> None:
    """Raise :class:`ConfigError` naming ``name.key``, the value and the allowed range for the first field of
    ``section`` outside its range; a tuple field is checked value by value and must not be empty; the
    ``ordered`` tuple fields must be non-decreasing (``(lo, hi)`` ranges, ascending lists)."""
    for key, allowed in ranges.items():
        value = getattr(section, key)
        values = value if isinstance(value, tuple) else (value,)
        if not values:
            raise ConfigError(f"'{name}.{key}' must hold at least one value, got []", key=f"{name}.{key}")
        for v in values:
            if v not in allowed:
                each = "each value of " if isinstance(value, tuple) else ""
                raise ConfigError(
                    f"{each}'{name}.{key}' must be {allowed}, got {_show(value)}", key=f"{name}.{key}"
                )
    for key in ordered:
        value = getattr(section, key)
        if any(a > b for a, b in itertools.pairwise(value)):
            raise ConfigError(
                f"'{name}.{key}' must be in ascending order (low, high), got {_show(value)}",
                key=f"{name}.{key}",
            )


def _show(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else repr(value)
