"""Checks for settings and notebook parameters: numbers, integers and lists of them.

Each raises :class:`~perfkit.errors.ConfigError` naming the value's label
(``PoolSettings.timeout``, ``parameter 'pool_sizes'``) and what was given.
``bool`` is never accepted as a number, nor NaN or infinity. Every int a lab
parameter holds must fit in a signed 64-bit integer (:func:`int64`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from perfkit.errors import ConfigError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def number(label: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` if it is a finite number >= ``minimum`` (> with ``strict``), else ConfigError."""
    if not _is_number(value) or (value <= minimum if strict else value < minimum):  # type: ignore[operator]
        op = ">" if strict else ">="
        raise ConfigError(f"{label} must be {op} {minimum:g} (a finite number), got {value!r}")
    return float(value)  # type: ignore[arg-type]


def integer(
    label: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an int (not a bool) in ``minimum``..``maximum``, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{label} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{label} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{label} must be <= {maximum}, got {value!r}")
    return value


def int64(label: str, value: object) -> None:
    """ConfigError unless every int in ``value`` (also inside lists and tuples) fits in int64.

    A signed 64-bit integer (PostgreSQL's ``bigint``, numpy's ``int64``) is the
    widest any value reaches; a larger one would only fail later, mid-measurement.
    """
    for item in value if isinstance(value, list | tuple) else (value,):
        if isinstance(item, list | tuple):
            int64(label, item)
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            raise ConfigError(
                f"{label} must fit in a signed 64-bit integer "
                f"({INT64_MIN} .. {INT64_MAX}), got {item!r}"
            )


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
