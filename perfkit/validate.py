"""Checks for settings and notebook parameters: numbers, integers and lists of them.

Each raises :class:`~perfkit.errors.ConfigError` naming the value's label
(``PoolSettings.timeout``, ``parameter 'pool_sizes'``) and what was given.
``bool`` is never accepted as a number, nor NaN or infinity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from perfkit.errors import ConfigError


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def number(label: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` if it is a finite number >= ``minimum`` (> with ``strict``), else ConfigError."""
    if not _is_number(value) or (value <= minimum if strict else value < minimum):  # type: ignore[operator]
        op = ">" if strict else ">="
        raise ConfigError(f"{label} must be {op} {minimum:g} (a finite number), got {value!r}")
    return float(value)  # type: ignore[arg-type]


def integer(label: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{label} must be >= {minimum}, got {value!r}")
    return value


def numbers(
    label: str,
    values: Sequence[Any],
    *,
    integers: bool = False,
    minimum: float = 0.0,
    strict: bool = False,
) -> tuple[Any, ...]:
    """A non-empty list of numbers (or ints) each >= ``minimum`` (> with ``strict``)."""
    ok = bool(values) and not isinstance(values, str)
    for item in values if ok else ():
        kind_ok = (isinstance(item, int) and not isinstance(item, bool)) if integers else True
        in_range = _is_number(item) and (item > minimum if strict else item >= minimum)
        ok = ok and kind_ok and in_range
    if not ok:
        kind = "ints" if integers else "numbers"
        op = ">" if strict else ">="
        raise ConfigError(
            f"{label} must be a non-empty list of {kind} {op} {minimum:g}, got {values!r}"
        )
    return tuple(values)
