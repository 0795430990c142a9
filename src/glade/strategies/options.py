"""Validation of strategy options: a bad value is a :class:`ConfigError` naming the option."""

from __future__ import annotations

import math
from typing import Any

from glade.errors import ConfigError

__all__ = ["check_float", "check_int"]


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (``*_open``: bound excluded).

    >>> check_float("beta", 0.2, low=0.0, high=0.5, high_open=True)
    0.2
    """
    interval = (
        ("(" if low_open else "[")
        + ("-inf" if low is None else f"{low:g}")
        + ", "
        + ("inf" if high is None else f"{high:g}")
        + (")" if high_open else "]")
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
    number = float(value)
    ok = math.isfinite(number)
    if low is not None:
        ok = ok and (number > low if low_open else number >= low)
    if high is not None:
        ok = ok and (number < high if high_open else number <= high)
    if not ok:
        raise ConfigError(f"{name} must be a number in {interval}, got {value!r}")
    return number


def check_int(name: str, value: Any, *, low: int = 0) -> int:
    """``value`` as an integer ``>= low`` (bool is not an integer here).

    >>> check_int("num_byzantine", 2, low=0)
    2
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value
