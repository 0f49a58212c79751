"""Open-loop load through a ``psycopg_pool.ConnectionPool``: arrivals that do not wait.

A closed-loop worker sends its next request only after the previous one came
back, so a slow response also delays the requests that would have arrived
meanwhile and their wait is never measured (coordinated omission). Here the
requests arrive on a schedule fixed in advance (:mod:`perfkit.pool.arrivals`,
seeded) whatever happens to earlier ones:

- the calling thread dispatches each request at its intended start time into
  a queue; ``threads`` client threads take them in order, get a connection from
  the pool (waiting there in psycopg_pool's queue when all are busy), run the
  query and give the connection back;
- each latency is measured from the request's **intended** start: the time in
  the dispatch queue and in the pool's queue counts;
- a request whose latency exceeds ``latency_limit_ms`` is *late*; one that is
  already later than the limit when a thread picks it up is *skipped* (not
  sent: pgbench ``--rate --latency-limit`` does the same); one that gets no
  connection within the pool's ``timeout`` is *failed*; a query error is an
  *error*. Goodput is on-time completions per second.

Latencies go to per-thread :class:`~perfkit.pool.latency.LatencyHistogram`
(merged at the end), so memory does not grow with the run's length: the
queue holds at most the requests of the last ``timeout`` seconds, the rest are
counters. The dispatcher's own lateness (``dispatch_lag``) is kept as well: a
run whose dispatcher could not keep up says so.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.pool.arrivals import arrivals, check_arrivals, within
from perfkit.pool.latency import RESOLUTION, LatencyHistogram
from perfkit.pool.runner import OPEN_TIMEOUT_S, make_pool
from perfkit.pool.server_processes import new_application_name, wait_for_no_server_processes
from perfkit.pool.settings import PoolSettings, Query
from perfkit.postgres.cpu import CpuMeter
from perfkit.workload import ClientState, run_script

Clock = Callable[[], float]
#: The quantiles every open-loop row reports (column suffix, q).
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))


@dataclass(frozen=True, kw_only=True)
class OpenLoad:
    """What an open-loop run offers: ``rate`` requests/s for ``duration`` s of ``mix``.

    ``threads`` client threads carry requests to the pool (at most that many
    in flight); the rest wait in the dispatch queue, their latency running.
    """

    rate: float
    duration: float
    arrivals: str
    latency_limit_ms: float
    threads: int
    mix: tuple[Query, ...]
    seed: int = 0

    def __post_init__(self) -> None:
        validate.number("OpenLoad.rate", self.rate, strict=True)
        validate.number("OpenLoad.duration", self.duration, strict=True)
        validate.number("OpenLoad.latency_limit_ms", self.latency_limit_ms, strict=True)
        validate.integer("OpenLoad.threads", self.threads, minimum=1)
        validate.integer("OpenLoad.seed", self.seed, minimum=0)
        check_arrivals(self.arrivals)
        if not self.mix or not all(isinstance(q, Query) for q in self.mix):
            raise ConfigError(f"OpenLoad.mix must be a non-empty tuple of Query, got {self.mix!r}")


@dataclass
class Tally:
    """One client thread's counts and latency histogram."""

    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    on_time: int = 0
    late: int = 0
    skipped: int = 0
    failed: int = 0
    errors: int = 0


def latency_columns(latency: LatencyHistogram) -> dict[str, Any]:
    """``latency_{p50,p90,p99,p999}_ms`` with ``_low``/``_high``/``_n`` (order-statistic
    95 % intervals): the quantile columns every open-loop row carries."""
    columns: dict[str, Any] = {}
    for name, q in QUANTILES:
        est = latency.quantile(q)
        columns |= {
            f"latency_{name}_ms": est.value * 1000.0,
            f"latency_{name}_ms_low": est.low * 1000.0,
            f"latency_{name}_ms_high": est.high * 1000.0,
            f"latency_{name}_ms_n": est.n,
        }
    return columns


def choose_queries(mix: tuple[Query, ...], seed: int) -> Callable[[], Query]:
    """A seeded chooser of the next request's query, by weight."""
    rng = random.Random(f"perfkit-open-mix:{seed}")
    weights = [q.weight for q in mix]
    return lambda: rng.choices(mix, weights=weights)[0]


Item = tuple[float, Query] | None


def _serve(
    pool: Any,
    jobs: queue.SimpleQueue[Item],
    limit_s: float,
    clock: Clock,
    t: Tally,
    client: ClientState,
) -> None:
    """A client thread: take requests in order until the sentinel, and count each.

    A query with a pgbench-format ``script`` runs it with this thread's seeded
    ``client`` state (:mod:`perfkit.workload`); a plain one runs its ``sql``.
    """
    while (item := jobs.get()) is not None:
        intended, query = item
        if clock() - intended > limit_s:
            t.skipped += 1
            continue
        try:
            conn = pool.getconn()
        except psycopg.Error:  # PoolTimeout, TooManyRequests: never dispatched
            t.failed += 1
            continue
        try:
            if query.script is not None:
                run_script(conn, query.script, client)
            else:
                conn.execute(query.sql).fetchall()
            ok = True
        except psycopg.Error:
            ok = False
        finally:
            pool.putconn(conn)
        latency = clock() - intended
        if not ok:
            t.errors += 1
            continue
        t.latency.record(latency)
        if latency > limit_s:
            t.late += 1
        else:
            t.on_time += 1


def _dispatch(
    load: OpenLoad, jobs: queue.SimpleQueue[Item], start: float, clock: Clock, lag: LatencyHistogram
) -> int:
    """Put each request in the queue at its intended time; the number sent."""
    choose = choose_queries(load.mix, load.seed)
    n = 0
    for offset in within(arrivals(load.rate, load.arrivals, seed=load.seed), load.duration):
        intended = start + offset
        while (left := intended - clock()) > 0:
            time.sleep(left)
        lag.record(clock() - intended)
        jobs.put((intended, choose()))
        n += 1
    return n


def _drop_queued(jobs: queue.SimpleQueue[Item]) -> None:
    while True:
        try:
            jobs.get_nowait()
        except queue.Empty:
            return


@dataclass(frozen=True, kw_only=True)
class OpenLoopResult:
    """One open-loop run: counts, the merged latency histogram, the dispatcher's lag."""

    settings: PoolSettings
    load: OpenLoad
    scheduled: int
    tally: Tally
    dispatch_lag: LatencyHistogram
    elapsed_s: float
    leaked: int | None

    def row(self) -> dict[str, Any]:
        """One flat row (``loop="open"``); latencies in ms with order-statistic intervals."""
        t, load = self.tally, self.load
        completed = t.on_time + t.late
        row: dict[str, Any] = {
            "loop": "open",
            "client": "pool",
            "pool": self.settings.name,
            "connections": self.settings.effective_max_size,
            "threads": load.threads,
            "arrivals": load.arrivals,
            "offered_rps": load.rate,
            "duration_s": load.duration,
            "latency_limit_ms": load.latency_limit_ms,
            "scheduled": self.scheduled,
            "scheduled_rps": self.scheduled / load.duration,
            "completed": completed,
            "on_time": t.on_time,
            "late": t.late,
            "skipped": t.skipped,
            "failed": t.failed,
            "errors": t.errors,
            "elapsed_s": self.elapsed_s,
            "achieved_rps": completed / self.elapsed_s,
            "goodput_rps": t.on_time / self.elapsed_s,
            "latency_mean_ms": t.latency.mean * 1000.0,
            "latency_max_ms": t.latency.max * 1000.0,
        }
        row |= latency_columns(t.latency)
        row |= {
            "dispatch_lag_p99_ms": self.dispatch_lag.quantile(0.99).value * 1000.0,
            "dispatch_lag_max_ms": self.dispatch_lag.max * 1000.0,
            "histogram_bytes": t.latency.nbytes,
            "resolution": RESOLUTION,
            "leaked": self.leaked,
        }
        return row


def merge_tallies(tallies: list[Tally]) -> Tally:
    """The counts of every thread added up, histograms merged."""
    out = Tally()
    out.latency.merge(t.latency for t in tallies)
    for name in ("on_time", "late", "skipped", "failed", "errors"):
        setattr(out, name, sum(getattr(t, name) for t in tallies))
    return out


def run_open_loop(
    dsn: str,
    settings: PoolSettings,
    load: OpenLoad,
    *,
    clock: Clock = time.perf_counter,
    cpu: CpuMeter | None = None,
    leak_timeout: float = 5.0,
) -> OpenLoopResult:
    """Offer ``load`` to a pool built from ``settings`` (opened to ``min_size`` first)."""
    if not settings.pooled:
        raise ConfigError("the open-loop runner needs a pool (PoolSettings.pooled=True)")
    app = new_application_name()
    pool = make_pool(dsn, settings, app)
    jobs: queue.SimpleQueue[Item] = queue.SimpleQueue()
    tallies = [Tally() for _ in range(load.threads)]
    lag = LatencyHistogram()
    limit_s = load.latency_limit_ms / 1000.0
    threads = [
        threading.Thread(
            target=_serve,
            args=(pool, jobs, limit_s, clock, t, ClientState(seed=load.seed, client_id=i)),
            name=f"{app}-o{i}",
            daemon=True,
        )
        for i, t in enumerate(tallies)
    ]
    try:
        pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
        for th in threads:
            th.start()
        if cpu is not None:
            cpu.start()
        start = clock()
        try:
            scheduled = _dispatch(load, jobs, start, clock, lag)
        except BaseException:  # e.g. Ctrl-C: drop what is queued, let the threads finish
            _drop_queued(jobs)
            raise
        finally:
            for _ in threads:
                jobs.put(None)
            for th in threads:
                th.join()
        elapsed = max(clock() - start, load.duration)
        if cpu is not None:
            cpu.stop()
    finally:
        pool.close()
    leaked = wait_for_no_server_processes(dsn, app, timeout=leak_timeout)
    return OpenLoopResult(
        settings=settings,
        load=load,
        scheduled=scheduled,
        tally=merge_tallies(tallies),
        dispatch_lag=lag,
        elapsed_s=elapsed,
        leaked=leaked,
    )
