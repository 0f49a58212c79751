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
import traceback
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


def _detached(exc: BaseException) -> BaseException:
    """``exc`` with the frames of its traceback and of its chained exceptions cleared.

    Those frames hold the failed attempt's half-open libpq connection (psycopg's
    connect generator): after a timeout its socket stays open, and its server
    backend holds a connection slot while it waits in authentication, for as long
    as they live. Kept in ``last`` they lived through the sleep and the next
    attempt, and after a success until the cyclic garbage collector ran (the
    traceback holds the retry loop's own frame, which holds ``last``): a herd of
    1,000 clients saw "too many clients" with room for all of them. Cleared, the
    connection is closed at once.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if item.__traceback__ is not None:
            traceback.clear_frames(item.__traceback__)  # running frames are left alone
        stack += [item.__cause__, item.__context__]
    exc.__traceback__ = None
    exc.__cause__ = None
    exc.__context__ = None
    return exc


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


def _begin(
    strategy: Strategy | str,
    t0: float,
    rng: random.Random | None,
    connect_timeout: float | None,
    deadline: float | None,
    budget: RetryBudget | None,
) -> tuple[RetryPlanner, Trace]:
    strat = _resolve(strategy)
    planner = RetryPlanner(
        strat,
        rng=rng if rng is not None else random.Random(),
        start=t0,
        connect_timeout=connect_timeout,
        deadline=deadline,
        budget=budget,
    )
    return planner, Trace(strategy=strategy_name(strat), t0=t0)


def _after_failure(
    dsn: str,
    trace: Trace,
    planner: RetryPlanner,
    attempt: Attempt,
    exc: BaseException,
    retryable: Callable[[BaseException], bool],
) -> float:
    """Seconds to sleep before the next attempt, or RetryError when giving up."""
    if not retryable(exc):
        trace.ended_at = attempt.end
        raise _give_up(dsn, trace, "not_retryable", exc) from None
    decision = planner.after_failure(attempt.end)
    if isinstance(decision, GiveUp):
        trace.ended_at = attempt.end
        raise _give_up(dsn, trace, decision.reason, exc) from None
    attempt.sleep_after = decision.seconds
    attempt.sleep_planned = decision.planned
    attempt.sleep_truncated = decision.truncated
    return decision.seconds


def _connected(trace: Trace, number: int, start: float, end: float, timeout: float | None) -> None:
    trace.attempts.append(
        Attempt(number=number, start=start, end=end, outcome="ok", timeout=timeout)
    )
    trace.connected_at = trace.ended_at = end


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
    planner, trace = _begin(strategy, clock(), rng, connect_timeout, deadline, budget)
    last: BaseException | None = None
    while True:
        plan = planner.begin(clock())
        if isinstance(plan, GiveUp):
            trace.ended_at = clock()
            raise _give_up(dsn, trace, plan.reason, last)
        effective = libpq_timeout(plan.timeout)
        kwargs = dict(connect_kwargs)
        if effective is not None:
            kwargs["connect_timeout"] = effective
        start = clock()
        try:
            conn = psycopg.connect(dsn, **kwargs)
        except Exception as exc:
            attempt = _record_failure(trace, plan.number, start, clock(), effective, exc)
            last = _detached(exc)
        else:
            _connected(trace, plan.number, start, clock(), effective)
            return conn, trace
        pause = _after_failure(dsn, trace, planner, attempt, last, retryable)
        if pause > 0:
            sleep(pause)


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
    planner, trace = _begin(strategy, clock(), rng, connect_timeout, deadline, budget)
    last: BaseException | None = None
    while True:
        plan = planner.begin(clock())
        if isinstance(plan, GiveUp):
            trace.ended_at = clock()
            raise _give_up(dsn, trace, plan.reason, last)
        kwargs = dict(connect_kwargs)
        backstop = libpq_timeout(plan.timeout)
        if backstop is not None:
            kwargs["connect_timeout"] = backstop
        start = clock()
        try:
            async with asyncio.timeout(plan.timeout):
                conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        except Exception as exc:
            attempt = _record_failure(trace, plan.number, start, clock(), plan.timeout, exc)
            last = _detached(exc)
        else:
            _connected(trace, plan.number, start, clock(), plan.timeout)
            return conn, trace
        pause = _after_failure(dsn, trace, planner, attempt, last, retryable)
        if pause > 0:
            await sleep(pause)
