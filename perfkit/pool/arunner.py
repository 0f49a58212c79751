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
    kwargs = connection_kwargs(app, settings)
    book = RunBook(workers=workload.workers)
    pool: AsyncConnectionPool | None = None

    if settings.pooled:
        pool = AsyncConnectionPool(
            dsn,
            open=False,
            name=app,
            kwargs=kwargs,
            check=AsyncConnectionPool.check_connection if settings.check else None,
            **settings.pool_kwargs(),
        )
        acquire: Callable[[], Awaitable[AConn]] = pool.getconn
        release: Callable[[AConn], Awaitable[None]] = pool.putconn
    else:

        async def acquire() -> AConn:
            return await psycopg.AsyncConnection.connect(dsn, **kwargs)

        async def release(conn: AConn) -> None:
            await conn.close()

    stop = asyncio.Event()

    async def sampler() -> None:
        assert pool is not None
        while True:
            book.samples.append((clock(), pool.get_stats()))
            try:
                await asyncio.wait_for(stop.wait(), workload.stats_interval)
                book.samples.append((clock(), pool.get_stats()))
                return
            except TimeoutError:
                pass

    async def actor(start_at: float) -> None:
        for action in sorted(actions, key=lambda a: a.at_s):
            await _sleep_until(clock, start_at + action.at_s)
            t = clock()
            try:
                await asyncio.to_thread(action.fn, app)
                error = ""
            except Exception as exc:
                error = mask(f"{type(exc).__name__}: {exc}")
            book.events.append((t, clock(), action.name, error))

    background: list[asyncio.Task[None]] = []
    try:
        if pool is not None:
            await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
            background.append(asyncio.create_task(sampler()))
        t0 = clock()
        start_at = t0 + workload.start_delay
        deadline = start_at + workload.duration
        if actions:
            background.append(asyncio.create_task(actor(start_at)))
        workers = asyncio.gather(
            *(
                _worker(
                    i, workload, clock, start_at, deadline, acquire, release, book.per_worker[i]
                )
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
