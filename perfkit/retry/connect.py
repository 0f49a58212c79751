"""``connect_with_retry``: connect to PostgreSQL with a retry strategy, recording every attempt.

Usable from real code as well as from experiments::

    conn, trace = connect_with_retry(dsn, "full_jitter", connect_timeout=2, deadline=30)

Only transient connection errors are retried (``psycopg.OperationalError``
and timeouts); bad credentials or a missing database (SQLSTATE class 28,
3D000) fail at once. On giving up :class:`RetryError` is raised; it carries
the trace, and its message shows the DSN masked.

Connect timeouts: the sync form uses libpq's ``connect_timeout``, which is
whole seconds and at least 2 (a 0.3 s timeout becomes 2 s, and an attempt cut
short by the deadline may overrun it by up to that much); the asyncio form
enforces the exact float with ``asyncio.timeout``. ``None`` means psycopg's
default (130 s).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from perfkit.dsn import mask
from perfkit.errors import RetryError
from perfkit.retry.budget import RetryBudget
from perfkit.retry.planner import GiveUp, RetryPlanner
from perfkit.retry.strategies import Strategy, get_strategy, strategy_name
from perfkit.retry.trace import Attempt, Trace, error_kind, short_message, sqlstate_of

NOT_RETRYABLE_SQLSTATES = frozenset({"28P01", "28000", "3D000"})


def is_retryable(exc: BaseException) -> bool:
    """Transient connection failures are retried; auth and missing-database errors are not."""
    if isinstance(exc, TimeoutError | psycopg.errors.ConnectionTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    return sqlstate_of(exc) not in NOT_RETRYABLE_SQLSTATES


def libpq_timeout(timeout: float | None) -> int | None:
    """libpq's ``connect_timeout`` for a float: whole seconds, at least 2, None for none."""
    if timeout is None:
        return None
    return max(2, math.ceil(timeout))


def _resolve(strategy: Strategy | str) -> Strategy:
    return get_strategy(strategy) if isinstance(strategy, str) else strategy


def _record_failure(
    trace: Trace, number: int, start: float, end: float, timeout: float | None, exc: BaseException
) -> Attempt:
    timed_out = isinstance(exc, TimeoutError | psycopg.errors.ConnectionTimeout)
    attempt = Attempt(
        number=number,
        start=start,
        end=end,
        outcome="timeout" if timed_out else "error",
        timeout=timeout,
        error_class=type(exc).__name__,
        error_kind=error_kind(exc, timed_out=timed_out),
        sqlstate=None if timed_out else sqlstate_of(exc),
        message=short_message(exc),
    )
    trace.attempts.append(attempt)
    return attempt


def _give_up(dsn: str, trace: Trace, reason: str, last: BaseException | None) -> RetryError:
    trace.gave_up = reason
    elapsed = trace.elapsed or 0.0
    last_text = short_message(last) if last is not None else "none"
    return RetryError(
        f"could not connect to {mask(dsn)} with strategy {trace.strategy!r}: gave up "
        f"({reason}) after {trace.n_attempts} attempt(s) in {elapsed:.3f} s; "
        f"last error: {last_text}",
        trace,
    )


class _Attempts:
    """The bookkeeping both connect loops share: plan, record, decide, give up.

    The sync and the asyncio loop differ only in how they connect and sleep;
    everything else (the planner, the trace, the give-up errors) lives here.
    """

    def __init__(
        self,
        dsn: str,
        strategy: Strategy | str,
        clock: Callable[[], float],
        rng: random.Random | None,
        connect_timeout: float | None,
        deadline: float | None,
        budget: RetryBudget | None,
        retryable: Callable[[BaseException], bool],
    ) -> None:
        strat = _resolve(strategy)
        t0 = clock()
        self.dsn, self.clock, self.retryable = dsn, clock, retryable
        self.planner = RetryPlanner(
            strat,
            rng=rng if rng is not None else random.Random(),
            start=t0,
            connect_timeout=connect_timeout,
            deadline=deadline,
            budget=budget,
        )
        self.trace = Trace(strategy=strategy_name(strat), t0=t0)
        self.last: BaseException | None = None

    def next(self) -> Any:
        """The next attempt's plan (number, timeout); RetryError when the planner gives up."""
        plan = self.planner.begin(self.clock())
        if isinstance(plan, GiveUp):
            self.trace.ended_at = self.clock()
            raise _give_up(self.dsn, self.trace, plan.reason, self.last)
        return plan

    def failed(self, plan: Any, start: float, timeout: float | None, exc: BaseException) -> float:
        """Record a failed attempt; seconds to sleep before the next, or RetryError."""
        attempt = _record_failure(self.trace, plan.number, start, self.clock(), timeout, exc)
        self.last = exc
        if not self.retryable(exc):
            self.trace.ended_at = attempt.end
            raise _give_up(self.dsn, self.trace, "not_retryable", exc) from None
        decision = self.planner.after_failure(attempt.end)
        if isinstance(decision, GiveUp):
            self.trace.ended_at = attempt.end
            raise _give_up(self.dsn, self.trace, decision.reason, exc) from None
        attempt.sleep_after = decision.seconds
        attempt.sleep_planned = decision.planned
        attempt.sleep_truncated = decision.truncated
        return decision.seconds

    def connected(self, plan: Any, start: float, timeout: float | None) -> Trace:
        end = self.clock()
        self.trace.attempts.append(
            Attempt(number=plan.number, start=start, end=end, outcome="ok", timeout=timeout)
        )
        self.trace.connected_at = self.trace.ended_at = end
        return self.trace


def _kwargs(connect_kwargs: dict[str, Any], libpq_seconds: int | None) -> dict[str, Any]:
    return (
        connect_kwargs
        if libpq_seconds is None
        else {**connect_kwargs, "connect_timeout": libpq_seconds}
    )


def connect_with_retry(
    dsn: str,
    strategy: Strategy | str,
    *,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    budget: RetryBudget | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    **connect_kwargs: Any,
) -> tuple[psycopg.Connection[Any], Trace]:
    """Connect with ``psycopg.connect``, retrying per ``strategy``; return ``(conn, trace)``.

    ``deadline`` is the most seconds the whole call may take (see
    :mod:`perfkit.retry.planner`); ``connect_kwargs`` go to ``psycopg.connect``.
    """
    tries = _Attempts(dsn, strategy, clock, rng, connect_timeout, deadline, budget, retryable)
    while True:
        plan = tries.next()
        effective = libpq_timeout(plan.timeout)
        start = clock()
        try:
            conn = psycopg.connect(dsn, **_kwargs(connect_kwargs, effective))
        except Exception as exc:
            if (pause := tries.failed(plan, start, effective, exc)) > 0:
                sleep(pause)
            continue
        return conn, tries.connected(plan, start, effective)


async def async_connect_with_retry(
    dsn: str,
    strategy: Strategy | str,
    *,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
    budget: RetryBudget | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    **connect_kwargs: Any,
) -> tuple[psycopg.AsyncConnection[Any], Trace]:
    """The asyncio form of :func:`connect_with_retry` (``psycopg.AsyncConnection.connect``).

    Per-attempt timeouts are exact (``asyncio.timeout``), not rounded up.
    """
    tries = _Attempts(dsn, strategy, clock, rng, connect_timeout, deadline, budget, retryable)
    while True:
        plan = tries.next()
        start = clock()
        try:
            async with asyncio.timeout(plan.timeout):  # exact; libpq's is a whole-second backstop
                kwargs = _kwargs(connect_kwargs, libpq_timeout(plan.timeout))
                conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        except Exception as exc:
            if (pause := tries.failed(plan, start, plan.timeout, exc)) > 0:
                await sleep(pause)
            continue
        return conn, tries.connected(plan, start, plan.timeout)
