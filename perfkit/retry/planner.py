"""The retry loop's decisions as a pure state machine: when to try, how long, when to stop.

:class:`RetryPlanner` is fed clock readings and answers two questions:
``begin(now)`` (may attempt ``k`` start, and with which connect timeout?)
and ``after_failure(now)`` (how long to sleep, or give up?). It never sleeps
or reads a clock itself, so the sync and asyncio drivers, the analytic worst
case and the unit tests share it.

Stop conditions:

- ``max_attempts`` of the strategy (every try counts, the first included);
- ``deadline``: a hard limit on elapsed time from ``start``. No attempt starts
  at or after it; an attempt's connect timeout is cut to the time left; a
  sleep that would end at or after it is truncated to end exactly there, and
  then the planner gives up;
- a :class:`~perfkit.retry.token_bucket.RetryTokenBucket` (optional) that may refuse a retry.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from perfkit.errors import ConfigError
from perfkit.retry.strategies import Strategy
from perfkit.retry.token_bucket import RetryTokenBucket

GiveUpReason = Literal["max_attempts", "deadline", "token_bucket", "not_retryable"]


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    """The planner's verdict that no further attempt will be made."""

    reason: GiveUpReason


@dataclass(frozen=True, kw_only=True)
class AttemptPlan:
    """Attempt ``number`` may start now and may take ``timeout`` seconds (None: no limit)."""

    number: int
    timeout: float | None


@dataclass(frozen=True, kw_only=True)
class Sleep:
    """Sleep ``seconds`` before the next attempt; ``truncated`` if the deadline cut it."""

    seconds: float
    planned: float
    truncated: bool


def check_stop_settings(connect_timeout: float | None, deadline: float | None) -> None:
    """Validate the call-level stop settings (ConfigError names the bad one)."""
    for name, value in (("connect_timeout", connect_timeout), ("deadline", deadline)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be a number > 0 or None, got {value!r}")
        if math.isinf(value) or math.isnan(value):
            raise ConfigError(f"{name} must be finite, got {value!r}")


class RetryPlanner:
    """Decides attempt by attempt; see the module docstring for the rules."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        rng: random.Random,
        start: float,
        connect_timeout: float | None = None,
        deadline: float | None = None,
        token_bucket: RetryTokenBucket | None = None,
    ) -> None:
        check_stop_settings(connect_timeout, deadline)
        self.strategy = strategy
        self.start = start
        self.deadline_at = None if deadline is None else start + deadline
        self.connect_timeout = connect_timeout
        self.token_bucket = token_bucket
        self.attempts = 0
        self._delays = strategy.delays(rng)
        self._backoff = 0.0
        self._attempt_started = start
        self._expired = False

    def begin(self, now: float) -> AttemptPlan | GiveUp:
        """May the next attempt start at ``now``? If so with which timeout."""
        if self._expired or (self.deadline_at is not None and now >= self.deadline_at):
            return GiveUp(reason="deadline")
        self.attempts += 1
        self._backoff = float(next(self._delays))
        self._attempt_started = now
        timeout = self.strategy.attempt_timeout(self.attempts, self._backoff, self.connect_timeout)
        if self.deadline_at is not None:
            left = self.deadline_at - now
            timeout = left if timeout is None else min(timeout, left)
        return AttemptPlan(number=self.attempts, timeout=timeout)

    def after_failure(self, now: float) -> Sleep | GiveUp:
        """The attempt that began last failed at ``now``: sleep how long, or give up?"""
        limit = self.strategy.max_attempts
        if limit is not None and self.attempts >= limit:
            return GiveUp(reason="max_attempts")
        if self.strategy.anchor == "attempt_start":
            wake = max(now, self._attempt_started + self._backoff)
        else:
            wake = now + self._backoff
        planned = wake - now
        if self.deadline_at is not None and wake >= self.deadline_at:
            self._expired = True
            return Sleep(seconds=max(0.0, self.deadline_at - now), planned=planned, truncated=True)
        if self.token_bucket is not None:
            if self.token_bucket.on_empty == "give_up":
                if not self.token_bucket.try_acquire():
                    return GiveUp(reason="token_bucket")
            else:
                wake += self.token_bucket.reserve(at=wake)
                if self.deadline_at is not None and wake >= self.deadline_at:
                    self._expired = True
                    return Sleep(
                        seconds=max(0.0, self.deadline_at - now), planned=planned, truncated=True
                    )
        return Sleep(seconds=wake - now, planned=planned, truncated=False)
