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
from perfkit.retry.planner import GiveUp, RetryPlanner
from perfkit.retry.strategies import Strategy, get_strategy, strategy_name
from perfkit.retry.token_bucket import RetryTokenBucket
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
        token_bucket: RetryTokenBucket | None,
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
            token_bucket=token_bucket,
        )
        self.trace = Trace(strategy=strategy_name(strat), t0=t0)
        self.last: BaseException | None = None
        self._give_up_reason: str | None = None
        self._pause = 0.0

    def next(self) -> Any:
        """The next attempt's plan (number, timeout); RetryError when the planner gives up."""
        plan = self.planner.begin(self.clock())
        if isinstance(plan, GiveUp):
            self.trace.ended_at = self.clock()
            raise _give_up(self.dsn, self.trace, plan.reason, self.last)
        return plan

    def failed(self, plan: Any, start: float, timeout: float | None, exc: BaseException) -> None:
        """Record a failed attempt and decide what comes next (see :meth:`pause`).

        Only a detached copy of ``exc`` is kept, so nothing holds the failed
        attempt's half-open connection once the ``except`` block ends.
        """
        attempt = _record_failure(self.trace, plan.number, start, self.clock(), timeout, exc)
        self.last = _detached(exc)
        self._give_up_reason = None
        if not self.retryable(exc):
            self._give_up_reason = "not_retryable"
        elif isinstance(decision := self.planner.after_failure(attempt.end), GiveUp):
            self._give_up_reason = decision.reason
        else:
            attempt.sleep_after = decision.seconds
            attempt.sleep_planned = decision.planned
            attempt.sleep_truncated = decision.truncated
        if self._give_up_reason is not None:
            self.trace.ended_at = attempt.end
        self._pause = attempt.sleep_after or 0.0

    def pause(self) -> float:
        """Seconds to sleep after the failure just recorded; RetryError when giving up.

        Called outside the ``except`` block, so the error raised carries no
        handled exception (and no traceback with the failed attempt) as context.
        """
        if self._give_up_reason is not None:
            raise _give_up(self.dsn, self.trace, self._give_up_reason, self.last)
        return self._pause

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
    token_bucket: RetryTokenBucket | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    **connect_kwargs: Any,
) -> tuple[psycopg.Connection[Any], Trace]:
    """Connect with ``psycopg.connect``, retrying per ``strategy``; return ``(conn, trace)``.

    ``deadline`` is the most seconds the whole call may take (see
    :mod:`perfkit.retry.planner`); ``connect_kwargs`` go to ``psycopg.connect``.
    """
    tries = _Attempts(dsn, strategy, clock, rng, connect_timeout, deadline, token_bucket, retryable)
    while True:
        plan = tries.next()
        effective = libpq_timeout(plan.timeout)
        start = clock()
        try:
            conn = psycopg.connect(dsn, **_kwargs(connect_kwargs, effective))
        except Exception as exc:
            tries.failed(plan, start, effective, exc)
        else:
            return conn, tries.connected(plan, start, effective)
        if (pause := tries.pause()) > 0:  # outside the except block: nothing holds the attempt
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
    token_bucket: RetryTokenBucket | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
    **connect_kwargs: Any,
) -> tuple[psycopg.AsyncConnection[Any], Trace]:
    """The asyncio form of :func:`connect_with_retry` (``psycopg.AsyncConnection.connect``).

    Per-attempt timeouts are exact (``asyncio.timeout``), not rounded up.
    """
    tries = _Attempts(dsn, strategy, clock, rng, connect_timeout, deadline, token_bucket, retryable)
    while True:
        plan = tries.next()
        start = clock()
        try:
            async with asyncio.timeout(plan.timeout):  # exact; libpq's is a whole-second backstop
                kwargs = _kwargs(connect_kwargs, libpq_timeout(plan.timeout))
                conn = await psycopg.AsyncConnection.connect(dsn, **kwargs)
        except Exception as exc:
            tries.failed(plan, start, plan.timeout, exc)
        else:
            return conn, tries.connected(plan, start, plan.timeout)
        if (pause := tries.pause()) > 0:
            await sleep(pause)
