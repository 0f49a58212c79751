"""One worker's request loop, written once for threads and for asyncio (sans-I/O).

:func:`worker_loop` is a generator: it yields what to do next — :class:`Acquire`
a connection, :class:`Execute` a query on it, :class:`Release` it,
:class:`Sleep` — and receives each result, or has the driver's exception
thrown in. :func:`drive` performs the steps with blocking calls (threads),
:func:`adrive` with awaits (asyncio), so the request bookkeeping exists once
(the shape of psycopg's own ``generators`` module).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import psycopg

from perfkit.pool.records import Request
from perfkit.pool.schedule import WorkerPlan
from perfkit.pool.settings import Workload
from perfkit.workload import ClientState, Script, arun_script, run_script

#: Pause after a failed request so a worker does not spin on a dead server.
ERROR_PAUSE_S = 0.01


@dataclass(frozen=True)
class Acquire:
    """Get a connection (from the pool, or a new one without a pool)."""


@dataclass(frozen=True)
class Execute:
    """Run ``sql`` on ``conn`` and fetch every row; or, with a ``script``, run the script
    with the worker's ``client`` state (:mod:`perfkit.workload`)."""

    conn: Any
    sql: str
    script: Script | None = None
    client: ClientState | None = None


@dataclass(frozen=True)
class Release:
    """Give ``conn`` back (to the pool, or close it)."""

    conn: Any


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (asyncio yields to the loop even for 0)."""

    seconds: float


Step = Acquire | Execute | Release | Sleep
Loop = Generator[Step, Any, list[Request]]


def worker_loop(
    index: int, workload: Workload, clock: Callable[[], float], start_at: float, deadline: float
) -> Loop:
    """Worker ``index``'s requests from ``start_at`` until ``deadline``; returns their records."""
    out: list[Request] = []
    plan = WorkerPlan(workload=workload, worker=index)
    if (wait := start_at - clock()) > 0:
        yield Sleep(wait)
    seq = 0
    while clock() < deadline:
        query, think = plan.next()
        t_start = clock()
        try:
            conn = yield Acquire()
        except psycopg.Error as exc:
            out.append(
                Request.acquire_failed(
                    worker=index,
                    seq=seq,
                    query=query.name,
                    start=t_start,
                    end=clock(),
                    error=type(exc).__name__,
                )
            )
            seq += 1
            yield Sleep(max(think, ERROR_PAUSE_S))
            continue
        t_got = clock()
        sql_s: float | None = None
        error = ""
        try:
            yield Execute(conn, query.sql, query.script, plan.client)
            sql_s = clock() - t_got
        except psycopg.Error as exc:
            error = type(exc).__name__
        except GeneratorExit:
            raise
        except BaseException:
            yield Release(conn)  # give it back before the failure propagates
            raise
        yield Release(conn)
        out.append(
            Request.completed(
                worker=index,
                seq=seq,
                query=query.name,
                start=t_start,
                got=t_got,
                done=clock(),
                sql=sql_s,
                error=error,
            )
        )
        seq += 1
        yield Sleep(max(think, ERROR_PAUSE_S) if error else think)
    return out


@dataclass(frozen=True)
class _Done:
    records: list[Request]


def _advance(loop: Loop, result: Any, error: BaseException | None) -> Step | _Done:
    """Hand the last step's result (or exception) to ``loop``; its next step, or _Done."""
    try:
        return loop.throw(error) if error is not None else loop.send(result)
    except StopIteration as done:
        return _Done(list(done.value))


def drive(
    loop: Loop,
    *,
    acquire: Callable[[], Any],
    release: Callable[[Any], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Request]:
    """Run ``loop`` with blocking calls; return its request records."""
    result: Any = None
    error: BaseException | None = None
    while not isinstance(step := _advance(loop, result, error), _Done):
        result, error = None, None
        try:
            if isinstance(step, Acquire):
                result = acquire()
            elif isinstance(step, Execute):
                if step.script is not None and step.client is not None:
                    run_script(step.conn, step.script, step.client, sleep)
                else:
                    step.conn.execute(step.sql).fetchall()
            elif isinstance(step, Release):
                release(step.conn)
            elif step.seconds > 0:
                sleep(step.seconds)
        except BaseException as exc:  # thrown into the loop, which decides
            error = exc
    return step.records


async def adrive(
    loop: Loop,
    *,
    acquire: Callable[[], Awaitable[Any]],
    release: Callable[[Any], Awaitable[None]],
) -> list[Request]:
    """Run ``loop`` with awaits; return its request records."""
    result: Any = None
    error: BaseException | None = None
    while not isinstance(step := _advance(loop, result, error), _Done):
        result, error = None, None
        try:
            if isinstance(step, Acquire):
                result = await acquire()
            elif isinstance(step, Execute):
                if step.script is not None and step.client is not None:
                    await arun_script(step.conn, step.script, step.client)
                else:
                    cursor = await step.conn.execute(step.sql)
                    await cursor.fetchall()
            elif isinstance(step, Release):
                await release(step.conn)
            else:
                await asyncio.sleep(step.seconds)
        except BaseException as exc:  # thrown into the loop, which decides
            error = exc
    return step.records
