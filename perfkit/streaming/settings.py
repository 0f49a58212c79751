"""What the streaming lab reads and how: the methods, the query and :class:`StreamSettings`.

Imports nothing beyond the standard library and :mod:`perfkit.errors`: the
measuring child process (:mod:`perfkit.streaming.child`) imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from perfkit.errors import ConfigError

METHODS = ("fetchall", "fetchmany", "server_cursor", "stream")
#: The largest batch: FETCH's count and libpq's chunked-rows size are 32-bit ints.
MAX_BATCH_SIZE = 2**31 - 1
DSN_ENV = "PERFKIT_STREAM_DSN"
SQL = (
    "SELECT i AS id, md5(i::text) AS payload, (i * 0.5)::float8 AS x "
    "FROM generate_series(1, %s::bigint) AS i"
)
#: Rows in the result, full and quick (the notebook's ``rows`` defaults; the goal is stated
#: for FULL_ROWS).
FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000


@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    """How big a result to read and how: ``rows`` rows, ``batch_size`` rows per batch.

    ``sample_interval`` is the memory sampling period (s); ``timeout`` bounds
    one child process (s).
    """

    rows: int = 1_000_000
    batch_size: int = 5_000
    sample_interval: float = 0.01
    timeout: float = 600.0

    def __post_init__(self) -> None:
        for name in ("rows", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"StreamSettings.{name} must be an int >= 1, got {value!r}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ConfigError(
                f"StreamSettings.batch_size must be <= {MAX_BATCH_SIZE} (FETCH and libpq "
                f"take a 32-bit count), got {self.batch_size!r}"
            )
        for name in ("sample_interval", "timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"StreamSettings.{name} must be > 0 seconds, got {value!r}")


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """The methods as a tuple; ConfigError naming any unknown one."""
    out = tuple(methods)
    unknown = [m for m in out if m not in METHODS]
    if unknown or not out:
        raise ConfigError(f"methods {unknown or out!r} unknown; choose from {', '.join(METHODS)}")
    return out
