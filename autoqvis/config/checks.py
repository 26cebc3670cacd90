"""What a configuration value may be: :class:`ConfigError`, numeric ranges and the check every section runs
when it is made (defaults, YAML files, ``--set``, ``dataclasses.replace``, a saved config read back)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from autoqvis.errors import AutoqvisError

__all__ = [
    "COUNT",
    "DEVICE_CHOICES",
    "DEVICE_NAME",
    "FRACTION",
    "NON_NEGATIVE",
    "POSITIVE",
    "SIDE",
    "ConfigError",
    "Range",
    "check_device_name",
    "check_section",
    "choices",
]


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


def check_section(
    section: Any, name: str, ranges: Mapping[str, Range] | None = None, ordered: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` naming ``name.key``, the value and what is allowed for the first field of
    ``section`` that breaks its rule: a field typed ``Literal[...]`` must be one of its values (whoever made
    the section: a file, ``--set`` or ``dataclasses.replace``); a field in ``ranges`` must lie in its range (a
    tuple field value by value, and not empty); the ``ordered`` tuple fields must be non-decreasing
    (``(lo, hi)`` ranges, ascending lists)."""
    for key, allowed in _literal_fields(type(section)).items():
        value = getattr(section, key)
        if value not in allowed:
            raise ConfigError(
                f"'{name}.{key}' must be one of {', '.join(map(repr, allowed))}, got {value!r}",
                key=f"{name}.{key}",
            )
    for key, allowed in (ranges or {}).items():
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


def choices(hint: Any) -> tuple:
    """The values a ``Literal[...]`` type (or an optional one) allows; ``()`` for any other type."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        found = tuple(v for arg in args for v in choices(arg))
        return found + ((None,) if found and type(None) in args else ())
    return ()


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple]:
    """``{field: allowed values}`` of a section's ``Literal`` fields (its type hints read once per class)."""
    hints = typing.get_type_hints(cls)
    return {f.name: allowed for f in dataclasses.fields(cls) if (allowed := choices(hints[f.name]))}


# a device name as ``autoqvis.device.resolve_device`` reads it (that module needs torch, this one must not)
DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(?::\d+)?)$")
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def check_device_name(value: str, key: str) -> None:
    """A device name is ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (which devices exist is checked when a
    command runs)."""
    if not DEVICE_NAME.match(value.strip().lower()):
        raise ConfigError(f"'{key}' must be {DEVICE_CHOICES} (N = 0, 1, ...), got {value!r}", key=key)
