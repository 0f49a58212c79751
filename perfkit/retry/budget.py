"""A retry budget: a thread-safe token bucket that many clients share.

Every *retry* (not the first attempt) costs one token; tokens refill at
``refill_per_s`` up to ``capacity``. When the bucket is empty a client either
gives up (``on_empty="give_up"``, Finagle/Envoy style: retries may not grow the
load past the budget) or waits for its token (``on_empty="wait"``: the bucket
becomes a rate limiter; tokens may be reserved ahead, so waiting clients queue
in order). The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from perfkit.errors import ConfigError

OnEmpty = Literal["give_up", "wait"]


class RetryBudget:
    """Token bucket: ``capacity`` tokens, ``refill_per_s`` tokens per second."""

    def __init__(
        self,
        *,
        capacity: float,
        refill_per_s: float,
        on_empty: OnEmpty = "give_up",
        clock: Callable[[], float] = time.monotonic,
        initial: float | None = None,
    ) -> None:
        for name, value in (("capacity", capacity), ("refill_per_s", refill_per_s)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"RetryBudget.{name} must be a number > 0, got {value!r}")
        if on_empty not in ("give_up", "wait"):
            raise ConfigError(f"RetryBudget.on_empty must be 'give_up' or 'wait', got {on_empty!r}")
        start = capacity if initial is None else initial
        if not 0 <= start <= capacity:
            raise ConfigError(f"RetryBudget.initial must be in [0, capacity], got {initial!r}")
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self.on_empty: OnEmpty = on_empty
        self._clock = clock
        self._tokens = float(start)
        self._updated = clock()
        self._lock = threading.Lock()
        self.granted = 0
        self.denied = 0

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_s)
        self._updated = max(self._updated, now)

    def tokens(self) -> float:
        """Tokens available now (negative while waiters hold reservations)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def try_acquire(self) -> bool:
        """Take one token if one is there; never waits."""
        with self._lock:
            self._refill(self._clock())
            if self._tokens >= 1:
                self._tokens -= 1
                self.granted += 1
                return True
            self.denied += 1
            return False

    def reserve(self) -> float:
        """Take one token, possibly on credit; return the seconds until it is yours."""
        with self._lock:
            self._refill(self._clock())
            self._tokens -= 1
            self.granted += 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.refill_per_s

    def __repr__(self) -> str:
        return (
            f"RetryBudget(capacity={self.capacity:g}, refill_per_s={self.refill_per_s:g}, "
            f"on_empty={self.on_empty!r}, granted={self.granted}, denied={self.denied})"
        )
