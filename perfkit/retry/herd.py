"""Thundering herd: N clients of one strategy reconnecting after an outage, on a real server.

All N clients (asyncio tasks in one event loop, or threads) start retrying
the moment the server is stopped; after ``outage_s`` it is started again.
Connected clients hold their connection until every client is done, so the
server sees the herd pile up. Recorded:

- client side: every attempt (``attempts`` frame, times relative to the
  restart ``t_event_s``), from which the attempt rate per 100 ms follows;
- server side: client backends in ``pg_stat_activity`` sampled every 50 ms
  (peak vs ``max_connections``) and, on the local backend, the
  ``connection received`` log lines (attempts that reached the server);
- per run: time until all connected, "too many clients" (SQLSTATE 53300)
  errors, clients that gave up.

:func:`calibrate` measures what the simulation needs: the cost of one
connect, of a refused attempt, and the server's accept capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import psycopg

from perfkit.asyncrun import run_coroutine
from perfkit.errors import ConfigError, RetryError
from perfkit.postgres import PostgresServer
from perfkit.retry.connect import async_connect_with_retry, connect_with_retry
from perfkit.retry.experiments import client_rng
from perfkit.retry.probe import BackendSampler, ReadinessProbe, connection_log_times
from perfkit.retry.strategies import get_strategy
from perfkit.retry.token_bucket import RetryTokenBucket
from perfkit.retry.trace import Trace
from perfkit.serverprofile.profiler import Profiler

Mode = Literal["async", "threads"]
BIN_S = 0.1
#: What a real herd is compared with the simulation on (the lab's check and the big herd's).
SIM_METRICS = (
    "connected",
    "attempts_after_ready",
    "too_many_clients",
    "attempts_after_restart",
    "peak_rate_after_restart_per_100ms",
    "all_connected_after_ready_s",
    "median_connected_after_ready_s",
)


@dataclass(frozen=True, kw_only=True)
class HerdSettings:
    """One herd run: ``n_clients`` of ``strategy`` after an outage of ``outage_s``."""

    strategy: str
    n_clients: int
    outage_s: float = 1.0
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0
    mode: Mode = "async"
    #: A retry token bucket shared by all clients (waiting when empty): retries per
    #: second and burst size. None: no token bucket. (``budget_per_s`` is also the
    #: ``herd`` frame's column and the notebook's ``herd_budget_per_s``.)
    budget_per_s: float | None = None
    budget_burst: float = 10.0

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        if self.budget_per_s is not None:
            RetryTokenBucket(capacity=self.budget_burst, refill_per_s=self.budget_per_s)
        if isinstance(self.n_clients, bool) or not isinstance(self.n_clients, int):
            raise ConfigError(f"HerdSettings.n_clients must be an int, got {self.n_clients!r}")
        if self.n_clients < 1:
            raise ConfigError(f"HerdSettings.n_clients must be >= 1, got {self.n_clients!r}")
        if not self.outage_s >= 0:
            raise ConfigError(f"HerdSettings.outage_s must be >= 0, got {self.outage_s!r}")
        if self.mode not in ("async", "threads"):
            raise ConfigError(f"HerdSettings.mode must be 'async' or 'threads', got {self.mode!r}")

    @property
    def label(self) -> str:
        """The strategy name, with the token bucket's rate if any (e.g. ``naive+budget100/s``)."""
        if self.budget_per_s is None:
            return self.strategy
        return f"{self.strategy}+budget{self.budget_per_s:g}/s"

    def make_token_bucket(self) -> RetryTokenBucket | None:
        """A fresh shared token bucket for one run (None without one)."""
        if self.budget_per_s is None:
            return None
        return RetryTokenBucket(
            capacity=self.budget_burst, refill_per_s=self.budget_per_s, on_empty="wait"
        )


@dataclass(kw_only=True)
class HerdResult:
    """Frames of one herd run plus its one-row summary."""

    summary: dict[str, Any]
    attempts: pd.DataFrame
    backends: pd.DataFrame
    server_attempts: pd.DataFrame
    traces: list[Trace] = field(default_factory=list)


async def _async_clients(
    dsn: str, hs: HerdSettings, seed: int, tag: Sequence[object]
) -> tuple[list[Trace], list[Any]]:
    strategy = get_strategy(hs.strategy)
    bucket = hs.make_token_bucket()

    async def one(i: int) -> tuple[Trace, Any]:
        try:
            conn, trace = await async_connect_with_retry(
                dsn,
                strategy,
                connect_timeout=hs.connect_timeout,
                deadline=hs.deadline,
                token_bucket=bucket,
                rng=client_rng(seed, *tag, i),
                autocommit=True,
            )
            return trace, conn
        except RetryError as exc:
            return exc.trace, None

    results = await asyncio.gather(*(one(i) for i in range(hs.n_clients)))
    return [t for t, _ in results], [c for _, c in results]


#: Connected clients hold their connection until the backend sampler has taken a
#: sample after the last one connected (at most this long), so it sees them all.
HOLD_MAX_S = 3.0

Hold = Callable[[list[Trace]], bool]


def _release_time() -> float:
    return time.monotonic() + HOLD_MAX_S


def _run_async(
    dsn: str, hs: HerdSettings, seed: int, tag: Sequence[object], may_release: Hold
) -> list[Trace]:
    async def main() -> list[Trace]:
        traces, conns = await _async_clients(dsn, hs, seed, tag)
        until = _release_time()
        while not may_release(traces) and time.monotonic() < until:
            await asyncio.sleep(0.02)
        for conn in conns:
            if conn is not None:
                await conn.close()
        return traces

    return asyncio.run(main())


def _run_threads(
    dsn: str, hs: HerdSettings, seed: int, tag: Sequence[object], may_release: Hold
) -> list[Trace]:
    strategy = get_strategy(hs.strategy)
    bucket = hs.make_token_bucket()
    traces: list[Trace | None] = [None] * hs.n_clients
    conns: list[Any] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            conn, trace = connect_with_retry(
                dsn,
                strategy,
                connect_timeout=hs.connect_timeout,
                deadline=hs.deadline,
                token_bucket=bucket,
                rng=client_rng(seed, *tag, i),
                autocommit=True,
            )
            with lock:
                conns.append(conn)
            traces[i] = trace
        except RetryError as exc:
            traces[i] = exc.trace

    threads = [threading.Thread(target=one, args=(i,)) for i in range(hs.n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [t for t in traces if t is not None]
    until = _release_time()
    while not may_release(done) and time.monotonic() < until:
        time.sleep(0.02)
    for conn in conns:
        conn.close()
    return [t for t in traces if t is not None]


def max_connections(server: PostgresServer) -> int:
    with psycopg.connect(server.dsn, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None
    return int(row[0])


def rate_per_bin(times: np.ndarray, *, bin_s: float = BIN_S) -> tuple[np.ndarray, np.ndarray]:
    """Counts per ``bin_s`` bin of event times (seconds); returns (bin starts, counts)."""
    if len(times) == 0:
        return np.array([]), np.array([], dtype=int)
    lo = math.floor(times.min() / bin_s) * bin_s
    hi = math.ceil((times.max() + 1e-9) / bin_s) * bin_s
    edges = np.arange(lo, hi + bin_s / 2, bin_s)
    counts, edges = np.histogram(times, bins=edges)
    return edges[:-1], counts


@dataclass(frozen=True)
class _Outage:
    """What one herd run saw: the clients' traces and the monotonic times around them."""

    traces: list[Trace]
    down_at: float  # the server was taken down
    event_at: float  # its restart began
    ready_at: float | None  # the probe's first successful query (None: never)
    end_at: float  # every client had finished


def _outage(
    server: PostgresServer, hs: HerdSettings, sampler: BackendSampler, *, seed: int, rep: int
) -> _Outage:
    """Take the server down, start the herd, restart the server after ``hs.outage_s``."""
    tag = ("herd", hs.label, hs.n_clients, hs.outage_s, rep)
    runner = _run_async if hs.mode == "async" else _run_threads
    box: dict[str, Any] = {}

    def may_release(traces: list[Trace]) -> bool:
        connected = [t.connected_at for t in traces if t.connected_at is not None]
        return not connected or sampler.sampled_after(max(connected))

    def clients() -> None:
        try:
            box["traces"] = runner(server.dsn, hs, seed, tag, may_release)
        except BaseException as exc:  # surfaced in the main thread
            box["error"] = exc

    server.take_down()
    down_at = time.monotonic()
    worker = threading.Thread(target=clients, name="herd-clients")
    worker.start()
    sampler.start()
    try:
        time.sleep(hs.outage_s)
        event_at = time.monotonic()  # the restart begins (docker start takes a while)
        server.bring_up(wait=False)
        probe = ReadinessProbe(server.dsn).start()
        worker.join()
        ready_at = probe.wait()
        probe.stop()
    finally:
        worker.join()
        sampler.stop()
        if not server.is_ready():
            server.bring_up(wait=True)
    if "error" in box:
        raise box["error"]
    return _Outage(box["traces"], down_at, event_at, ready_at, time.monotonic())


def _server_attempts(
    server: PostgresServer, run: _Outage, wall_to_mono: float
) -> pd.DataFrame | None:
    """Connection attempts the server logged during the run (None without a log)."""
    log_times = connection_log_times(server, wall_to_mono=wall_to_mono)
    if log_times is None:
        return None
    in_window = [t for t in log_times if run.down_at <= t <= run.end_at]
    frame = pd.DataFrame({"at": in_window})
    frame["t_event_s"] = frame["at"] - run.event_at
    return frame


def _herd_summary(
    hs: HerdSettings,
    run: _Outage,
    attempts: pd.DataFrame,
    server_attempts: pd.DataFrame | None,
    *,
    rep: int,
    limit: int,
    peak_backends: Any,
) -> dict[str, Any]:
    """The one-row summary of a herd run (the ``herd`` frame's row)."""
    ready_at, traces = run.ready_at, run.traces
    after_ready = attempts
    if ready_at is not None:
        after_ready = attempts[attempts["start"] >= ready_at]
    # Attempts from the restart on reach a starting or running server (before it, refused).
    after_restart = attempts[attempts["start"] >= run.event_at]
    _, client_counts = rate_per_bin(after_restart["start"].to_numpy())
    _, all_counts = rate_per_bin(attempts["start"].to_numpy())
    logged = server_attempts if server_attempts is not None else pd.DataFrame({"at": []})
    _, server_counts = rate_per_bin(logged["at"].to_numpy(dtype=float))
    connected = [t.connected_at for t in traces if t.connected_at is not None]
    return {
        "strategy": hs.strategy,
        "label": hs.label,
        "budget_per_s": hs.budget_per_s,
        "n_clients": hs.n_clients,
        "outage_s": hs.outage_s,
        "mode": hs.mode,
        "rep": rep,
        "connect_timeout_s": hs.connect_timeout,
        "max_connections": limit,
        "ready_after_event_s": None if ready_at is None else ready_at - run.event_at,
        "connected": len(connected),
        "gave_up": sum(t.connected_at is None for t in traces),
        "attempts": len(attempts),
        "attempts_after_ready": len(after_ready),
        "too_many_clients": int((attempts["sqlstate"] == "53300").sum()),
        "timeouts": int((attempts["outcome"] == "timeout").sum()),
        "peak_rate_per_100ms": int(all_counts.max()) if len(all_counts) else 0,
        "attempts_after_restart": len(after_restart),
        "peak_rate_after_restart_per_100ms": int(client_counts.max()) if len(client_counts) else 0,
        "server_peak_rate_per_100ms": int(server_counts.max()) if len(server_counts) else None,
        "server_attempts": len(server_attempts) if server_attempts is not None else None,
        "peak_backends": peak_backends,
        "all_connected_after_ready_s": (max(connected) - ready_at)
        if connected and ready_at is not None and len(connected) == hs.n_clients
        else math.nan,
        "median_connected_after_ready_s": (statistics.median(connected) - ready_at)
        if connected and ready_at is not None
        else math.nan,
    }


def run_herd(
    server: PostgresServer, hs: HerdSettings, *, seed: int = 0, rep: int = 0
) -> HerdResult:
    """One herd run on a running ``server`` (left running afterwards)."""
    if not server.is_ready():
        server.bring_up(wait=True)
    limit = max_connections(server)
    wall_to_mono = time.monotonic() - time.time()
    sampler = BackendSampler(server.dsn)
    run = _outage(server, hs, sampler, seed=seed, rep=rep)
    frames = [
        t.to_frame(client=i, n_clients=hs.n_clients, rep=rep) for i, t in enumerate(run.traces)
    ]
    attempts = pd.concat(frames, ignore_index=True)
    attempts["t_event_s"] = attempts["start"] - run.event_at
    backends = pd.DataFrame(sampler.samples, columns=["at", "backends"])
    backends["t_event_s"] = backends["at"] - run.event_at
    logged = _server_attempts(server, run, wall_to_mono)
    summary = _herd_summary(
        hs, run, attempts, logged, rep=rep, limit=limit, peak_backends=sampler.peak()
    )
    server_attempts = logged if logged is not None else pd.DataFrame(columns=["at", "t_event_s"])
    for frame in (attempts, backends, server_attempts):
        frame["strategy"] = hs.strategy
        frame["label"] = hs.label
    for frame in (backends, server_attempts):
        frame["n_clients"] = hs.n_clients
        frame["rep"] = rep
    return HerdResult(
        summary=summary,
        attempts=attempts,
        backends=backends,
        server_attempts=server_attempts,
        traces=run.traces,
    )


def herd_sweep(
    server: PostgresServer,
    strategies: Sequence[str],
    client_counts: Sequence[int],
    *,
    outage_s: float = 1.0,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    mode: Mode = "async",
    reps: int = 1,
    seed: int = 0,
    token_bucket_runs: Sequence[tuple[str, int, float]] = (),
) -> dict[str, pd.DataFrame]:
    """:func:`run_herd` for every strategy x client count; frames concatenated.

    ``token_bucket_runs`` adds runs with a shared retry token bucket:
    (strategy, clients, retries/s).

    Returns ``herd`` (summaries), ``herd_attempts``, ``herd_backends``,
    ``herd_server_attempts`` and the server's profile per strategy (``wait_profile``,
    ``top_statements``, ``server_counters``: :mod:`perfkit.serverprofile.profiler`; its
    sampler reconnects every 0.25 s while the server is down, so it adds at most a few
    connection attempts to the server's log per run).
    """
    settings = [
        HerdSettings(
            strategy=s,
            n_clients=n,
            outage_s=outage_s,
            connect_timeout=connect_timeout,
            deadline=deadline,
            mode=mode,
        )
        for n in client_counts
        for s in strategies
    ]
    settings += [
        HerdSettings(
            strategy=s,
            n_clients=n,
            outage_s=outage_s,
            connect_timeout=connect_timeout,
            deadline=deadline,
            mode=mode,
            budget_per_s=rate,
        )
        for s, n, rate in token_bucket_runs
    ]
    summaries, attempts, backends, server_attempts = [], [], [], []
    with Profiler.for_server(server) as profiler:
        for hs in settings:
            for rep in range(reps):
                with profiler.measure(hs.label, n_clients=hs.n_clients, rep=rep):
                    result = run_herd(server, hs, seed=seed, rep=rep)
                summaries.append(result.summary)
                attempts.append(result.attempts)
                backends.append(result.backends)
                server_attempts.append(result.server_attempts)
    return {
        "herd": pd.DataFrame(summaries),
        "herd_attempts": pd.concat(attempts, ignore_index=True),
        "herd_backends": pd.concat(backends, ignore_index=True),
        "herd_server_attempts": pd.concat(server_attempts, ignore_index=True),
        **profiler.frames(),
    }


def rate_frame(
    attempts: pd.DataFrame,
    *,
    bin_s: float = BIN_S,
    column: str = "t_event_s",
    by: Sequence[str] = ("label", "n_clients"),
) -> pd.DataFrame:
    """Tidy attempts-per-bin counts (``t_bin_s``, ``attempts``) per group, for histograms."""
    rows = []
    for key, group in attempts.groupby(list(by)):
        starts, counts = rate_per_bin(group[column].to_numpy(dtype=float), bin_s=bin_s)
        keys = key if isinstance(key, tuple) else (key,)
        for start, count in zip(starts, counts, strict=True):
            rows.append({**dict(zip(by, keys, strict=True)), "t_bin_s": start, "attempts": count})
    return pd.DataFrame(rows)


def calibrate(
    server: PostgresServer, *, n_sequential: int = 20, burst: int = 100, seed: int = 0
) -> dict[str, float]:
    """Measure what :mod:`perfkit.retry.simulate` needs, on a running ``server``.

    - ``connect_s``: median time of one connect (client + server, idle server);
    - ``capacity_per_s``: ``burst`` concurrent connects / their makespan;
    - ``refused_s``: median time of an attempt at a closed port on 127.0.0.1.
    """
    times = []
    for _ in range(n_sequential):
        t = time.perf_counter()
        psycopg.connect(server.dsn, connect_timeout=5).close()
        times.append(time.perf_counter() - t)

    async def storm() -> float:
        t = time.perf_counter()
        conns = await asyncio.gather(
            *(psycopg.AsyncConnection.connect(server.dsn, connect_timeout=10) for _ in range(burst))
        )
        makespan = time.perf_counter() - t
        for c in conns:
            await c.close()
        return makespan

    makespan = run_coroutine(storm, fresh_thread=True)
    from perfkit.postgres.local import free_port  # a port nothing listens on

    refused = []
    port = free_port()
    rng = random.Random(seed)
    for _ in range(n_sequential):
        t = time.perf_counter()
        with contextlib.suppress(psycopg.OperationalError):
            psycopg.connect(
                host="127.0.0.1",
                port=port,
                user="x",
                dbname="x",
                connect_timeout=2,
                application_name=f"probe{rng.random()}",
            ).close()
        refused.append(time.perf_counter() - t)
    return {
        "connect_s": statistics.median(times),
        "capacity_per_s": burst / makespan,
        "burst": float(burst),
        "burst_makespan_s": makespan,
        "refused_s": statistics.median(refused),
    }
