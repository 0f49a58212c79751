"""A retry token bucket: thread-safe, shared by many clients (a limit on retries, not time).

Every *retry* (not the first attempt) costs one token; tokens refill at
``refill_per_s`` up to ``capacity``. When the bucket is empty a client either
gives up (``on_empty="give_up"``, Finagle/Envoy style: retries may not grow the
load past the bucket) or waits for its token (``on_empty="wait"``: the bucket
becomes a rate limiter; a client reserves its token for the moment it means to
retry, and is told how much later it may). It is kept in GCRA form (one
theoretical arrival time instead of a token count), which makes "at most
``capacity`` at once plus ``refill_per_s`` per second" hold for the times the
retries actually start. The clock is injectable so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from perfkit.errors import ConfigError

OnEmpty = Literal["give_up", "wait"]


class RetryTokenBucket:
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
                raise ConfigError(f"RetryTokenBucket.{name} must be a number > 0, got {value!r}")
        if on_empty not in ("give_up", "wait"):
            raise ConfigError(
                f"RetryTokenBucket.on_empty must be 'give_up' or 'wait', got {on_empty!r}"
            )
        start = capacity if initial is None else initial
        if not 0 <= start <= capacity:
            raise ConfigError(f"RetryTokenBucket.initial must be in [0, capacity], got {initial!r}")
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self.on_empty: OnEmpty = on_empty
        self._clock = clock
        # GCRA ("virtual scheduling") form of the bucket: one token every ``_interval``
        # seconds, ``capacity`` of them at once; ``_tat`` is the theoretical arrival time.
        self._interval = 1.0 / self.refill_per_s
        self._tolerance = (self.capacity - 1.0) * self._interval
        self._tat = clock() + (self.capacity - start) * self._interval
        self._lock = threading.Lock()
        self.granted = 0
        self.denied = 0

    def tokens(self) -> float:
        """Tokens available now (negative while reservations are outstanding)."""
        with self._lock:
            ahead = max(0.0, self._tat - self._clock())
            return self.capacity - ahead / self._interval

    def try_acquire(self) -> bool:
        """Take one token if one is there now; never waits."""
        with self._lock:
            now = self._clock()
            if self._tat - now <= self._tolerance + 1e-12:
                self._tat = max(self._tat, now) + self._interval
                self.granted += 1
                return True
            self.denied += 1
            return False

    def reserve(self, at: float | None = None) -> float:
        """Reserve one token for use at clock time ``at`` (default now).

        Returns how many seconds after ``at`` the token may be used; the
        retries then start no faster than ``capacity`` at once plus
        ``refill_per_s`` per second, counted at the times they are used.
        """
        with self._lock:
            when = self._clock() if at is None else at
            start = max(when, self._tat - self._tolerance)
            self._tat = max(self._tat, start) + self._interval
            self.granted += 1
            return start - when

    def __repr__(self) -> str:
        return (
            f"RetryTokenBucket(capacity={self.capacity:g}, refill_per_s={self.refill_per_s:g}, "
            f"on_empty={self.on_empty!r}, granted={self.granted}, denied={self.denied})"
        )
