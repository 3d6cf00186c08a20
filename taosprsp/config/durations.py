"""Durations: written as text (`"250ms"`, `"30s"`, `"1d"`) or a number of seconds, held as float seconds."""

from __future__ import annotations

import math
import re
import typing
from typing import Annotated, Any

from taosprsp.errors import ConfigError

_DURATION_MARK = "duration"
Duration = Annotated[float, _DURATION_MARK]
"""Seconds; written in TOML and the environment as text such as `"250ms"` or as a number of seconds."""

DAY = 86_400.0
_DURATION_TEXT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"d": DAY, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_DURATION_EXAMPLE = "a duration such as '250ms', '30s' or '1d'"


def parse_duration(value: str | int | float, key: str = "") -> float:
    """Seconds in `value`: a number of seconds or text such as `250ms`, `30s`, `1d`; empty text is zero.

    Anything else is a ConfigError, its message prefixed with `key` when given.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    if isinstance(value, str) and not value.strip():
        return 0.0
    match = _DURATION_TEXT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        prefix = f"{key}: " if key else ""
        raise ConfigError(f"{prefix}expected {_DURATION_EXAMPLE}, got {value!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def format_duration(seconds: float) -> str:
    """`seconds` as text `parse_duration` reads back: a whole number of the largest unit that fits."""
    if seconds == 0:
        return "0s"
    for unit, size in _UNIT_SECONDS.items():
        count = seconds / size
        if count >= 1 and math.isclose(count, round(count), rel_tol=1e-9):
            return f"{round(count)}{unit}"
    return f"{round(seconds / _UNIT_SECONDS['ns'])}ns"


def is_duration(expected: Any) -> bool:
    """Whether the type hint `expected` is `Duration`."""
    return typing.get_origin(expected) is Annotated and _DURATION_MARK in expected.__metadata__
