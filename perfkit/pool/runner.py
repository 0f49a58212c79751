"""Run a workload through a ``psycopg_pool.ConnectionPool`` (or no pool) with threads.

W worker threads loop for ``duration`` seconds: acquire (timed here, since
psycopg_pool reports no percentiles), run the query, release, think. A sampler
thread records ``pool.get_stats()`` over time; an action thread injects
faults (see :class:`perfkit.pool.result.Action`). After the pool is closed
the server is asked which of the run's server processes are still there
(``leaked``, expected 0). A :class:`~perfkit.postgres.cpu.CpuMeter` given as
``cpu`` measures exactly the workers' window (not the pool's open and close).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from perfkit.dsn import mask
from perfkit.pool.records import Request
from perfkit.pool.result import Action, RunBook, WorkloadResult
from perfkit.pool.server_processes import new_application_name, wait_for_no_server_processes
from perfkit.pool.settings import PoolSettings, Workload
from perfkit.pool.worker import drive, worker_loop
from perfkit.postgres.cpu import CpuMeter

#: libpq connect timeout (whole seconds) for pool connections and per-request connects.
CONNECT_TIMEOUT_S = 5
#: How long open() may take to fill the pool to min_size.
OPEN_TIMEOUT_S = 30.0

Clock = Callable[[], float]


def connection_kwargs(application_name: str, settings: PoolSettings) -> dict[str, Any]:
    """Keyword arguments for every connection of a run (autocommit, tagged, bounded connect)."""
    timeout = CONNECT_TIMEOUT_S if settings.pooled else max(2, round(settings.timeout))
    return {"autocommit": True, "application_name": application_name, "connect_timeout": timeout}


def make_pool(dsn: str, settings: PoolSettings, application_name: str) -> ConnectionPool:
    """An unopened ConnectionPool for ``settings`` (check callback if ``settings.check``)."""
    return ConnectionPool(
        dsn,
        open=False,
        name=application_name,
        kwargs=connection_kwargs(application_name, settings),
        check=ConnectionPool.check_connection if settings.check else None,
        **settings.pool_kwargs(),
    )


class _Stopwatch:
    """The shared bits of a run: clock, t0, deadline, stop flag."""

    def __init__(self, clock: Clock, workload: Workload) -> None:
        self.clock = clock
        self.t0 = clock()
        self.start_at = self.t0 + workload.start_delay
        self.deadline = self.start_at + workload.duration
        self.stop = threading.Event()

    def sleep_until(self, t: float) -> None:
        while (left := t - self.clock()) > 0:
            time.sleep(min(left, 0.05))


def _worker(
    index: int,
    workload: Workload,
    watch: _Stopwatch,
    acquire: Callable[[], psycopg.Connection[Any]],
    release: Callable[[psycopg.Connection[Any]], None],
    out: list[Request],
) -> None:
    loop = worker_loop(index, workload, watch.clock, watch.start_at, watch.deadline)
    out.extend(drive(loop, acquire=acquire, release=release))


def _sampler(
    pool: ConnectionPool,
    watch: _Stopwatch,
    interval: float,
    out: list[tuple[float, dict[str, int]]],
) -> None:
    out.append((watch.clock(), pool.get_stats()))
    while not watch.stop.wait(interval):
        out.append((watch.clock(), pool.get_stats()))
    out.append((watch.clock(), pool.get_stats()))


def _actor(
    actions: Sequence[Action],
    watch: _Stopwatch,
    application_name: str,
    out: list[tuple[float, float, str, str]],
) -> None:
    # Every action runs, even after the workers have finished: a run that took the
    # server down must also bring it back up.
    for action in sorted(actions, key=lambda a: a.at_s):
        watch.sleep_until(watch.start_at + action.at_s)
        t = watch.clock()
        try:
            action.fn(application_name)
            error = ""
        except Exception as exc:
            error = mask(f"{type(exc).__name__}: {exc}")
        out.append((t, watch.clock(), action.name, error))


Acquire = Callable[[], psycopg.Connection[Any]]
Release = Callable[[psycopg.Connection[Any]], None]


def _connections(
    dsn: str, settings: PoolSettings, app: str
) -> tuple[ConnectionPool | None, Acquire, Release]:
    """The (unopened) pool, and how a worker gets and gives back a connection.

    Without a pool a worker connects per request and closes afterwards.
    """
    if settings.pooled:
        pool = make_pool(dsn, settings, app)
        return pool, pool.getconn, pool.putconn
    kwargs = connection_kwargs(app, settings)

    def acquire() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, **kwargs)

    def release(conn: psycopg.Connection[Any]) -> None:
        conn.close()

    return None, acquire, release


def _background(
    pool: ConnectionPool | None,
    actions: Sequence[Action],
    watch: _Stopwatch,
    workload: Workload,
    app: str,
    book: RunBook,
) -> list[threading.Thread]:
    """The stats sampler (with a pool) and the action thread (with actions), not started."""
    threads = []
    if pool is not None:
        args = (pool, watch, workload.stats_interval, book.samples)
        threads.append(
            threading.Thread(target=_sampler, args=args, name=f"{app}-stats", daemon=True)
        )
    if actions:
        args = (actions, watch, app, book.events)
        threads.append(threading.Thread(target=_actor, args=args, name=f"{app}-act", daemon=True))
    return threads


def _run_workers(
    workload: Workload,
    watch: _Stopwatch,
    acquire: Acquire,
    release: Release,
    book: RunBook,
    app: str,
    cpu: CpuMeter | None,
) -> float:
    """Start the worker threads, measure ``cpu`` over their window, join them: the end time.

    Raises the first exception a worker raised.
    """
    failures: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            _worker(i, workload, watch, acquire, release, book.per_worker[i])
        except BaseException as exc:
            failures.append(exc)

    workers = [
        threading.Thread(target=guarded, args=(i,), name=f"{app}-w{i}", daemon=True)
        for i in range(workload.workers)
    ]
    for w in workers:
        w.start()
    if cpu is not None:
        watch.sleep_until(watch.start_at)
        cpu.start()
    for w in workers:
        w.join()
    end = watch.clock()
    if cpu is not None:
        cpu.stop()
    if failures:
        raise failures[0]
    return end


def run_workload(
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
    """Run ``workload`` through a pool built from ``settings`` (threads) and collect frames.

    ``cpu`` is started when the workers start and stopped when they have all
    finished; ``application_name`` (default: a new unique one) tags the run's
    connections.
    """
    app = application_name or new_application_name()
    book = RunBook(workers=workload.workers)
    pool, acquire, release = _connections(dsn, settings, app)
    threads: list[threading.Thread] = []
    try:
        if pool is not None:
            pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
        watch = _Stopwatch(clock, workload)
        threads = _background(pool, actions, watch, workload, app, book)
        for t in threads:
            t.start()
        end = _run_workers(workload, watch, acquire, release, book, app, cpu)
        if pool is not None:
            book.final_stats = pool.get_stats()
    finally:
        if threads:
            watch.stop.set()
            for t in threads:
                t.join()
        if pool is not None:
            pool.close()
    leaked = wait_for_no_server_processes(dsn, app, timeout=leak_timeout)
    return book.result(
        settings=settings,
        workload=workload,
        mode="sync",
        start_at=watch.start_at,
        end=end,
        leaked=leaked,
    )
