"""The same workload through ``psycopg_pool.AsyncConnectionPool`` with asyncio tasks.

Produces the same frames as :func:`perfkit.pool.runner.run_workload` (``mode``
is ``"async"``). :func:`run_workload_async` is a coroutine; in a Jupyter cell
use ``await``. :func:`run_workload_async_blocking` runs it from plain code,
in a helper thread when an event loop is already running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from perfkit.asyncrun import run_coroutine
from perfkit.dsn import mask
from perfkit.pool.records import Request
from perfkit.pool.result import Action, RunBook, WorkloadResult
from perfkit.pool.runner import OPEN_TIMEOUT_S, Clock, connection_kwargs
from perfkit.pool.server_processes import new_application_name, wait_for_no_server_processes
from perfkit.pool.settings import PoolSettings, Workload
from perfkit.pool.worker import adrive, worker_loop
from perfkit.postgres.cpu import CpuMeter

AConn = psycopg.AsyncConnection[Any]


async def _sleep_until(clock: Clock, t: float) -> None:
    left = t - clock()
    if left > 0:
        await asyncio.sleep(left)


async def _worker(
    index: int,
    workload: Workload,
    clock: Clock,
    start_at: float,
    deadline: float,
    acquire: Callable[[], Awaitable[AConn]],
    release: Callable[[AConn], Awaitable[None]],
    out: list[Request],
) -> None:
    loop = worker_loop(index, workload, clock, start_at, deadline)
    out.extend(await adrive(loop, acquire=acquire, release=release))


AAcquire = Callable[[], Awaitable[AConn]]
ARelease = Callable[[AConn], Awaitable[None]]


def _connections(
    dsn: str, settings: PoolSettings, app: str
) -> tuple[AsyncConnectionPool | None, AAcquire, ARelease]:
    """The (unopened) async pool, and how a task gets and gives back a connection.

    Without a pool a task connects per request and closes afterwards.
    """
    kwargs = connection_kwargs(app, settings)
    if settings.pooled:
        pool = AsyncConnectionPool(
            dsn,
            open=False,
            name=app,
            kwargs=kwargs,
            check=AsyncConnectionPool.check_connection if settings.check else None,
            **settings.pool_kwargs(),
        )
        return pool, pool.getconn, pool.putconn

    async def acquire() -> AConn:
        return await psycopg.AsyncConnection.connect(dsn, **kwargs)

    async def release(conn: AConn) -> None:
        await conn.close()

    return None, acquire, release


async def _sampler(
    pool: AsyncConnectionPool,
    clock: Clock,
    interval: float,
    stop: asyncio.Event,
    out: list[tuple[float, dict[str, int]]],
) -> None:
    while True:
        out.append((clock(), pool.get_stats()))
        try:
            await asyncio.wait_for(stop.wait(), interval)
            out.append((clock(), pool.get_stats()))
            return
        except TimeoutError:
            pass


async def _actor(
    actions: Sequence[Action],
    clock: Clock,
    start_at: float,
    app: str,
    out: list[tuple[float, float, str, str]],
) -> None:
    for action in sorted(actions, key=lambda a: a.at_s):
        await _sleep_until(clock, start_at + action.at_s)
        t = clock()
        try:
            await asyncio.to_thread(action.fn, app)
            error = ""
        except Exception as exc:
            error = mask(f"{type(exc).__name__}: {exc}")
        out.append((t, clock(), action.name, error))


async def _run_workers(
    workload: Workload,
    clock: Clock,
    start_at: float,
    acquire: AAcquire,
    release: ARelease,
    book: RunBook,
    cpu: CpuMeter | None,
) -> float:
    """Run the worker tasks, measuring ``cpu`` over their window: the end time."""
    deadline = start_at + workload.duration
    workers = asyncio.gather(
        *(
            _worker(i, workload, clock, start_at, deadline, acquire, release, book.per_worker[i])
            for i in range(workload.workers)
        )
    )
    if cpu is not None:
        await _sleep_until(clock, start_at)
        cpu.start()
    await workers
    end = clock()
    if cpu is not None:
        cpu.stop()
    return end


async def run_workload_async(
    dsn: str,
    settings: PoolSettings,
    workload: Workload,
    *,
    actions: Sequence[Action] = (),
    clock: Clock = time.perf_counter,
    leak_timeout: float = 5.0,
    cpu: CpuMeter | None = None,
    application_name: str | None = None,
) -> WorkloadResult:
    """Run ``workload`` with asyncio tasks through an AsyncConnectionPool (or no pool).

    ``cpu`` and ``application_name`` as in :func:`perfkit.pool.runner.run_workload`.
    """
    app = application_name or new_application_name()
    book = RunBook(workers=workload.workers)
    pool, acquire, release = _connections(dsn, settings, app)
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    try:
        if pool is not None:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
            sampler = _sampler(pool, clock, workload.stats_interval, stop, book.samples)
            background.append(asyncio.create_task(sampler))
        start_at = clock() + workload.start_delay
        if actions:
            actor = _actor(actions, clock, start_at, app, book.events)
            background.append(asyncio.create_task(actor))
        end = await _run_workers(workload, clock, start_at, acquire, release, book, cpu)
        if pool is not None:
            book.final_stats = pool.get_stats()
    finally:
        stop.set()
        # The actor runs all its actions (a server taken down is brought back up).
        await asyncio.gather(*background, return_exceptions=True)
        if pool is not None:
            await pool.close()
    leaked = await asyncio.to_thread(wait_for_no_server_processes, dsn, app, timeout=leak_timeout)
    return book.result(
        settings=settings,
        workload=workload,
        mode="async",
        start_at=start_at,
        end=end,
        leaked=leaked,
    )


def run_workload_async_blocking(
    dsn: str, settings: PoolSettings, workload: Workload, **kwargs: Any
) -> WorkloadResult:
    """Run :func:`run_workload_async` to completion from synchronous code.

    Works inside Jupyter too (where a loop already runs): the coroutine then
    gets its own loop in a helper thread.
    """
    return run_coroutine(lambda: run_workload_async(dsn, settings, workload, **kwargs))
