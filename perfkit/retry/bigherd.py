"""A real herd of 1,000 connected clients that lose their server and reconnect, vs the model.

:mod:`perfkit.retry.herd` starts its clients at the outage and checks the
simulation up to about 100 of them. Here N clients (default 1,000, asyncio
tasks split over ``client_processes`` event loops, each in a client process
of its own, :mod:`perfkit.retry.herdproc`; one loop in this process with
``client_processes=1``) first all hold a connection; then the server is
stopped (fast shutdown), started again after ``outage_s``, and every client
reconnects with a named strategy (:func:`async_connect_with_retry`, the pure
planner and the strategy's delays). A client notices the loss the moment its
socket turns readable (the backend's FATAL, then EOF) and starts retrying at
once: the worst, synchronised case.

Recorded per strategy: every attempt (time from the restart, outcome),
per-client time to reconnect after the server was ready, client backends in
``pg_stat_activity`` over time (a separate sampling connection), "too many
clients" errors (SQLSTATE 53300), the peak attempt rate per 100 ms after the
restart, the time until all were connected, and the connections left after
the run (none expected). :func:`compare_with_simulation` runs
:func:`perfkit.retry.simulate.simulate` at the same N, calibrated on the same
server, with the measured notice spread, boot time and refusal cost, and puts
real and simulated metrics side by side.

Where the model parts from the real herd at this size: it serves attempts
first come, first served at the calibrated rate, so the first
``capacity * connect_timeout`` of a burst always get through. The real
server (a process per backend) and the client's event loop share the CPU
among all attempts in flight: when a burst takes longer than the connect
timeout to serve, nearly every attempt times out and is retried, and the
herd stalls for seconds with no connect at all (a synchronised naive herd
most). The comparison shows it as many more timeouts and later reconnects
than simulated.

The server's ``max_connections`` must exceed N (N + 20 is used by the
script); one socket per client needs an open-files limit above each
process's share, which :func:`ensure_fd_limit` raises within the hard limit
(or, before anything starts, says how to raise the hard limit).

Run it: ``python -m perfkit.retry.bigherd --clients 1000 --processes 4 --out big.csv``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from perfkit import stats
from perfkit.errors import ConfigError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry import herd
from perfkit.retry.contention import RetryBudget
from perfkit.retry.herdproc import (
    SATURATED_UTIL,
    SETUP_CONCURRENCY,
    SETUP_TIMEOUT_S,
    ClientProcesses,
    InProcessClients,
    ShareJob,
    ShareResult,
    check_nice,
    ensure_fd_limit,
    share_budget,
    split,
)
from perfkit.retry.probe import BackendSampler, ReadinessProbe
from perfkit.retry.simulate import SimSettings, simulate
from perfkit.retry.strategies import Strategy, get_strategy
from perfkit.retry.trace import Trace

DEFAULT_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter")
#: Connections the server needs beyond the clients: sampler, probe, calibration, superuser slack.
MAX_CONNECTIONS_MARGIN = 20
#: Clients per client process in the default split (see :func:`default_client_processes`).
CLIENTS_PER_PROCESS = 250
#: How long after closing the clients' connections their backends may take to exit.
DRAIN_TIMEOUT_S = 15.0
#: Metrics compared with the simulation; the first seven are those of the lab's herd check.
METRICS = (
    *herd.SIM_METRICS,
    "p90_connected_after_ready_s",
    "p95_connected_after_ready_s",
    "attempts",
    "timeouts",
    "gave_up",
)
#: Metrics that are quantiles of per-client times: they get bootstrap intervals.
_QUANTILES = {
    "median_connected_after_ready_s": 0.5,
    "p90_connected_after_ready_s": 0.9,
    "p95_connected_after_ready_s": 0.95,
}
_CLIENT_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def somaxconn(default: int = 4096) -> int:
    """The kernel's cap on a listen() backlog (``net.core.somaxconn``)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def default_client_processes(n_clients: int, cpus: int | None = None) -> int:
    """Client processes for a herd of ``n_clients``: one per 250 clients, at most 2 per CPU.

    One event loop is one core at most. At 1,000 clients on one loop the loop
    ran at a full core through the reconnect storm (``client_saturated``), so
    the client, not the server, paced the herd; 250 clients a loop keeps each
    loop's share of a storm to a quarter of that. More than two loops per CPU
    only adds context switches on a machine the server shares, so the count
    stops there (4 on this 2-core machine). Up to 250 clients: 1 (the
    single-loop herd).
    """
    cap = 2 * (cpus if cpus is not None else os.cpu_count() or 1)
    return max(1, min(math.ceil(n_clients / CLIENTS_PER_PROCESS), cap))


@dataclass(frozen=True, kw_only=True)
class BigHerdSettings:
    """One run: ``n_clients`` connected clients of ``strategy``; outage of ``outage_s``.

    ``client_processes``: event loops the clients are split over; 1 runs them
    all on one loop in this process (as the kit always did), more runs each
    share in a child process. ``None`` (default) picks
    :func:`default_client_processes` and stores the number.
    ``client_nice``: the client loops' niceness (e.g. -10 so that ~1,000
    forking backends on the same cores do not starve the clients' timers, as
    if the clients had a machine of their own); None keeps the inherited one.
    ``strategy``: a named strategy or a :class:`~perfkit.retry.strategies.Strategy`
    (e.g. a fleet recommendation's), labelled ``name`` in the results (default:
    its name, or its kind). ``retry_budget``: a fleet-wide retry budget
    (:class:`~perfkit.retry.contention.RetryBudget`); each client loop gets
    capacity / P and refill / P of it (:func:`~perfkit.retry.herdproc.share_budget`).
    ``own_sessions``: each client process in a scheduler session of its own (the
    default, see :mod:`perfkit.retry.herdproc`); False keeps them all in this
    process's session, where together they weigh as one backend.
    """

    strategy: Strategy | str
    n_clients: int = 1000
    outage_s: float = 1.0
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0
    client_processes: int | None = None
    client_nice: int | None = None
    name: str | None = None
    retry_budget: RetryBudget | None = None
    own_sessions: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.strategy, str):
            get_strategy(self.strategy)
        elif not isinstance(self.strategy, Strategy):
            raise ConfigError(
                "BigHerdSettings.strategy must be a strategy name or a Strategy, "
                f"got {self.strategy!r}"
            )
        b = self.retry_budget
        if b is not None and not isinstance(b, RetryBudget):
            raise ConfigError(f"BigHerdSettings.retry_budget must be a RetryBudget, got {b!r}")
        check_nice(self.client_nice)
        n = self.n_clients
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"BigHerdSettings.n_clients must be an int >= 1, got {n!r}")
        if not self.outage_s >= 0:
            raise ConfigError(f"BigHerdSettings.outage_s must be >= 0, got {self.outage_s!r}")
        p = self.client_processes
        if p is None:
            object.__setattr__(self, "client_processes", default_client_processes(n))
        elif isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= n:
            raise ConfigError(
                f"BigHerdSettings.client_processes must be an int in 1..n_clients ({n}), got {p!r}"
            )

    @property
    def label(self) -> str:
        """The strategy's name in the results."""
        if self.name is not None:
            return self.name
        return self.strategy if isinstance(self.strategy, str) else self.strategy.kind

    @property
    def processes(self) -> int:
        """``client_processes`` as an int (it is resolved on construction)."""
        assert self.client_processes is not None
        return self.client_processes

    def jobs(self, dsn: str, seed: int) -> list[ShareJob]:
        """One :class:`ShareJob` per client event loop."""
        gate = max(4, SETUP_CONCURRENCY // self.processes)
        b = self.retry_budget
        budget = None if b is None else share_budget(b.capacity, b.refill_per_s, self.processes)
        return [
            ShareJob(
                dsn=dsn,
                strategy=self.strategy,
                first=first,
                count=count,
                n_clients=self.n_clients,
                seed=seed,
                connect_timeout=self.connect_timeout,
                deadline=self.deadline,
                setup_concurrency=gate,
                nice=self.client_nice,
                label=self.label,
                budget=budget,
            )
            for first, count in split(self.n_clients, self.processes)
        ]

    def results_timeout(self) -> float:
        """How long the clients may take after the restart: the deadline, a last attempt, slack."""
        if self.deadline is None:
            return 600.0
        return self.deadline + 2 * (self.connect_timeout or 10.0) + 30.0


@dataclass(kw_only=True)
class _Raw:
    """What the event loop hands back: traces and the run's clock readings."""

    traces: list[Trace]
    shares: list[ShareResult]
    down_at: float
    down_s: float
    event_at: float
    probe_ready_at: float | None
    setup_s: float


def _client_backends(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(_CLIENT_BACKENDS).fetchone()
    return int(row[0]) if row else 0


def drain(dsn: str, *, timeout: float = DRAIN_TIMEOUT_S) -> int:
    """Wait until no client backend but ours is left; return how many are (0 expected)."""
    until = time.monotonic() + timeout
    left = _client_backends(dsn)
    while left and time.monotonic() < until:
        time.sleep(0.1)
        left = _client_backends(dsn)
    return left


def _clients_for(bs: BigHerdSettings, dsn: str, seed: int) -> InProcessClients | ClientProcesses:
    jobs = bs.jobs(dsn, seed)
    if len(jobs) == 1:
        return InProcessClients(jobs[0])
    return ClientProcesses(jobs, own_sessions=bs.own_sessions)


def _scenario(
    server: PostgresServer, bs: BigHerdSettings, sampler: BackendSampler, seed: int
) -> _Raw:
    """Connect everyone, stop the server, restart it, collect every share's traces."""
    probe: ReadinessProbe | None = None
    with _clients_for(bs, server.dsn, seed) as clients:
        try:
            t_setup = time.monotonic()
            clients.start(SETUP_TIMEOUT_S)
            setup_s = time.monotonic() - t_setup
            down_at = time.monotonic()
            server.take_down()
            down_s = time.monotonic() - down_at
            time.sleep(bs.outage_s)
            event_at = time.monotonic()
            server.bring_up(wait=False)
            probe = ReadinessProbe(server.dsn).start()
            shares = clients.results(bs.results_timeout())
            probe_ready_at = probe.wait()
            traces = [t for share in shares for t in share.traces]
            # Hold until the sampler has seen the last client connect (as the herd does).
            connected = [t.connected_at for t in traces if t.connected_at is not None]
            until = time.monotonic() + herd.HOLD_MAX_S
            while connected and not sampler.sampled_after(max(connected)):
                if time.monotonic() >= until:
                    break
                time.sleep(0.02)
        finally:
            if probe is not None:
                probe.stop()
    return _Raw(
        traces=traces,
        shares=shares,
        down_at=down_at,
        down_s=down_s,
        event_at=event_at,
        probe_ready_at=probe_ready_at,
        setup_s=setup_s,
    )


def client_cpu(shares: Sequence[ShareResult]) -> dict[str, Any]:
    """The client loops' CPU over the reconnect phase, per summary.

    ``client_cpu_s`` (all loops together), ``client_cpu_util`` (the busiest
    loop's CPU / wall over the whole phase), ``client_peak_cpu_util`` (the
    busiest loop's busiest 0.5 s), ``client_loop_lag_max_s`` (how late a loop
    ran a 100 ms timer at worst) and ``client_saturated``: some loop used more
    than :data:`SATURATED_UTIL` of a core over some 0.5 s of the phase.
    """

    def busiest(values: Sequence[float]) -> float:
        return float(max((v for v in values if not math.isnan(v)), default=math.nan))

    peak = busiest([s.peak_cpu_util for s in shares])
    return {
        "client_processes": len(shares),
        "client_cpu_s": float(sum(s.cpu_s for s in shares)),
        "client_cpu_util": busiest([s.cpu_util for s in shares]),
        "client_peak_cpu_util": peak,
        "client_loop_lag_max_s": float(max(s.max_lag_s for s in shares)),
        "client_saturated": bool(peak > SATURATED_UTIL),
    }


def processes_frame(shares: Sequence[ShareResult]) -> pd.DataFrame:
    """One row per client event loop: its clients, setup time, CPU and wall over the reconnect."""
    return pd.DataFrame(
        [
            {
                "process": i,
                "pid": s.pid,
                "first_client": s.first,
                "clients": len(s.traces),
                "setup_s": s.setup_s,
                "cpu_s": s.cpu_s,
                "wall_s": s.wall_s,
                "cpu_util": s.cpu_util,
                "peak_cpu_util": s.peak_cpu_util,
                "max_lag_s": s.max_lag_s,
                "nice": s.nice,
            }
            for i, s in enumerate(shares)
        ]
    )


def _peak_after_restart(t_event_s: np.ndarray) -> int:
    after = t_event_s[t_event_s >= 0]
    _, counts = herd.rate_per_bin(after)
    return int(counts.max()) if len(counts) else 0


def _clients_frame(raw: _Raw) -> tuple[pd.DataFrame, float]:
    """Per client: when it noticed the loss, reconnected, and how many attempts it took;
    and when the server was ready (NaN if never seen)."""
    traces, event_at = raw.traces, raw.event_at
    connected_at = np.array(
        [math.nan if t.connected_at is None else t.connected_at for t in traces]
    )
    first_ok = np.nanmin(connected_at) if np.isfinite(connected_at).any() else math.inf
    # Ready: the first successful connect after the restart, the probe's or a client's.
    ready_at = min(raw.probe_ready_at or math.inf, first_ok)
    ready_at = ready_at if math.isfinite(ready_at) else math.nan
    noticed = np.array([t.t0 for t in traces])
    clients = pd.DataFrame(
        {
            "client": np.arange(len(traces)),
            "noticed_t_event_s": noticed - event_at,
            "connected_t_event_s": connected_at - event_at,
            "reconnect_s": connected_at - noticed,
            "connected_after_ready_s": connected_at - ready_at,
            "attempts": [t.n_attempts for t in traces],
            "gave_up": [t.gave_up for t in traces],
        }
    )
    return clients, ready_at


def _big_summary(
    bs: BigHerdSettings,
    raw: _Raw,
    attempts: pd.DataFrame,
    clients: pd.DataFrame,
    ready_at: float,
    *,
    limit: int,
) -> dict[str, Any]:
    """The run's one-row summary (without the sampler's and the drain's numbers)."""
    event_at = raw.event_at
    noticed = np.array([t.t0 for t in raw.traces])
    start = attempts["start"].to_numpy(dtype=float)
    ok_after = clients["connected_after_ready_s"].dropna().to_numpy()
    before_ready = attempts[attempts["start"] < ready_at]
    failed_early = before_ready[before_ready["outcome"] == "error"]
    # Attempts made during the boot that waited for the server instead of failing fast.
    waited = before_ready[(before_ready["outcome"] != "error") & (before_ready["t_event_s"] >= 0)]
    n_ok = sum(t.connected_at is not None for t in raw.traces)
    return {
        "strategy": bs.label,
        "n_clients": bs.n_clients,
        "retry_budget_capacity": math.nan if bs.retry_budget is None else bs.retry_budget.capacity,
        "retry_budget_refill_per_s": math.nan
        if bs.retry_budget is None
        else bs.retry_budget.refill_per_s,
        "outage_s": bs.outage_s,
        "connect_timeout_s": bs.connect_timeout,
        "deadline_s": bs.deadline,
        "max_connections": limit,
        "setup_s": raw.setup_s,
        "take_down_s": raw.down_s,
        "loss_to_restart_s": event_at - float(noticed.min()),
        "notice_spread_s": float(noticed.max() - noticed.min()),
        "ready_after_event_s": ready_at - event_at,
        "probe_ready_after_event_s": None
        if raw.probe_ready_at is None
        else raw.probe_ready_at - event_at,
        "refused_s": float(failed_early["duration_s"].median()) if len(failed_early) else math.nan,
        "hang_s": ready_at - event_at - float(waited["t_event_s"].min()) if len(waited) else 0.0,
        "connected": n_ok,
        "gave_up": bs.n_clients - n_ok,
        "attempts": len(attempts),
        "attempts_after_restart": int((start >= event_at).sum()),
        "attempts_after_ready": int((start >= ready_at).sum()),
        "too_many_clients": int((attempts["sqlstate"] == "53300").sum()),
        "timeouts": int((attempts["outcome"] == "timeout").sum()),
        "peak_rate_after_restart_per_100ms": _peak_after_restart(
            attempts["t_event_s"].to_numpy(dtype=float)
        ),
        "all_connected_after_ready_s": float(ok_after.max()) if n_ok == bs.n_clients else math.nan,
        "median_connected_after_ready_s": float(np.median(ok_after)) if n_ok else math.nan,
        "p90_connected_after_ready_s": float(np.quantile(ok_after, 0.9)) if n_ok else math.nan,
        "p95_connected_after_ready_s": float(np.quantile(ok_after, 0.95)) if n_ok else math.nan,
    }


def herd_server_settings(backend: str, n_clients: int) -> ServerSettings:
    """A server with room for a herd of ``n_clients`` (plus :data:`MAX_CONNECTIONS_MARGIN`)."""
    return ServerSettings(
        backend=backend,
        server_settings={
            **FAST_SERVER_SETTINGS,
            "max_connections": n_clients + MAX_CONNECTIONS_MARGIN,
        },
    )


def check_room(server: PostgresServer, n_clients: int) -> int:
    """The server's ``max_connections``; ConfigError unless it leaves room for
    ``n_clients``, the backend sampler and the readiness probe."""
    limit = herd.max_connections(server)
    if limit < n_clients + 2:
        raise ConfigError(
            f"max_connections is {limit}: {n_clients} clients plus the sampler and the "
            f"readiness probe need {n_clients + 2} (give max_connections="
            f"{n_clients + MAX_CONNECTIONS_MARGIN} in the server settings)"
        )
    return limit


def run_big_herd(server: PostgresServer, bs: BigHerdSettings, *, seed: int = 0) -> dict[str, Any]:
    """One run on a running ``server`` (left running): summary plus frames.

    Returns ``summary`` (a dict), ``attempts``, ``clients``, ``backends`` and
    ``processes`` (frames; one row per client event loop). The summary adds the
    client loops' CPU (:func:`client_cpu`). Before anything starts: ConfigError
    when ``max_connections`` or the open-files limit is too low for the herd.
    Every client process is joined and every connection closed, also when a
    client process fails (:class:`~perfkit.retry.herdproc.ProcessFailed`).
    """
    if not server.is_ready():
        server.bring_up(wait=True)
    limit = check_room(server, bs.n_clients)
    ensure_fd_limit(bs.n_clients, processes=bs.processes)
    started = time.monotonic()
    sampler = BackendSampler(server.dsn).start()
    try:
        raw = _scenario(server, bs, sampler, seed)
    finally:
        sampler.stop()
        if not server.is_ready():
            server.bring_up(wait=True)
    left_after = drain(server.dsn)  # the sampler is gone: every client backend should be
    wall_s = time.monotonic() - started
    attempts = pd.concat(
        [t.to_frame(client=i) for i, t in enumerate(raw.traces)], ignore_index=True
    )
    attempts["t_event_s"] = attempts["start"] - raw.event_at
    clients, ready_at = _clients_frame(raw)
    backends = pd.DataFrame(sampler.samples, columns=["at", "backends"])
    backends["t_event_s"] = backends["at"] - raw.event_at
    summary = _big_summary(bs, raw, attempts, clients, ready_at, limit=limit)
    summary.update(peak_backends=sampler.peak(), left_after=left_after, wall_s=wall_s)
    summary.update(client_cpu(raw.shares), client_nice=bs.client_nice)
    summary["client_own_sessions"] = bs.own_sessions or bs.processes == 1
    clients["process"] = np.repeat(
        np.arange(len(raw.shares)), [len(share.traces) for share in raw.shares]
    )
    processes = processes_frame(raw.shares)
    for frame in (attempts, clients, backends, processes):
        frame["strategy"] = bs.label
        frame["n_clients"] = bs.n_clients
    return {
        "summary": summary,
        "attempts": attempts,
        "clients": clients,
        "backends": backends,
        "processes": processes,
    }


def big_herd(
    server: PostgresServer,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    n_clients: int = 1000,
    *,
    outage_s: float = 1.0,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    seed: int = 0,
    calibration_burst: int = 100,
    compare: bool = True,
    client_processes: int | None = None,
    client_nice: int | None = None,
) -> dict[str, pd.DataFrame]:
    """:func:`run_big_herd` for each strategy on one running ``server``, then the model.

    Returns ``bigherd`` (one summary row per strategy), ``bigherd_attempts``,
    ``bigherd_clients``, ``bigherd_backends``, ``bigherd_processes`` (one row per
    client event loop and strategy; ``client_processes`` as in
    :class:`BigHerdSettings`), ``calibration`` (one row, measured
    on ``server`` before the runs with ``calibration_burst`` concurrent
    connects) and, with ``compare``, ``comparison`` (:func:`compare_with_simulation`).
    """
    settings = [
        BigHerdSettings(
            strategy=s,
            n_clients=n_clients,
            outage_s=outage_s,
            connect_timeout=connect_timeout,
            deadline=deadline,
            client_processes=client_processes,
            client_nice=client_nice,
        )
        for s in strategies
    ]
    calibration = herd.calibrate(server, burst=min(calibration_burst, n_clients), seed=seed)
    runs = [run_big_herd(server, bs, seed=seed) for bs in settings]
    frames = {
        "bigherd": pd.DataFrame([r["summary"] for r in runs]),
        "bigherd_attempts": pd.concat([r["attempts"] for r in runs], ignore_index=True),
        "bigherd_clients": pd.concat([r["clients"] for r in runs], ignore_index=True),
        "bigherd_backends": pd.concat([r["backends"] for r in runs], ignore_index=True),
        "bigherd_processes": pd.concat([r["processes"] for r in runs], ignore_index=True),
        "calibration": pd.DataFrame([calibration]),
    }
    if compare:
        frames["comparison"] = compare_with_simulation(frames, seed=seed)
    return frames


def sim_settings_for(summary: dict[str, Any], calibration: dict[str, float]) -> SimSettings:
    """The simulation of one real run: calibrated costs plus what the run measured.

    The model's ``t = 0`` is the first client noticing the loss; clients notice
    within the measured spread; the server is ready after the measured boot;
    refusals cost what they cost in the run; one slot is the sampler's.
    """
    refused = summary["refused_s"]
    limit = int(summary["max_connections"])
    return SimSettings.calibrated(
        {**calibration, "refused_s": calibration["refused_s"] if math.isnan(refused) else refused},
        n_clients=int(summary["n_clients"]),
        outage_s=float(summary["loss_to_restart_s"]),
        boot_s=max(0.0, float(summary["ready_after_event_s"])),
        hang_s=max(0.0, float(summary["hang_s"])),
        max_connections=limit - 1,
        backlog=min(somaxconn(), 2 * limit),  # PostgreSQL listens with 2 * max_connections
        connect_timeout=summary["connect_timeout_s"],
        deadline=summary["deadline_s"],
        start_spread_s=float(summary["notice_spread_s"]),
    )


def ratio(real: float, sim: float) -> float:
    """real / sim; NaN when either is NaN; 1 when both are 0 and inf when only sim is."""
    if math.isnan(real) or math.isnan(sim):
        return math.nan
    if sim == 0:
        return 1.0 if real == 0 else math.inf
    return real / sim


def compare_with_simulation(
    frames: dict[str, pd.DataFrame], *, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Real vs simulated, one row per strategy and metric (``metric, real, sim, ratio``).

    ``frames`` is :func:`big_herd`'s output (``bigherd``, ``bigherd_clients``,
    ``calibration``). ``ratio`` is real / sim. The per-client quantiles (median
    and p95 time to reconnect after ready) carry percentile-bootstrap intervals
    (``real_low``...``sim_high``) and the number of clients they are of (``n``);
    the other metrics are counts or extremes of one run (``n`` is the clients).
    """
    calibration = {str(k): float(v) for k, v in frames["calibration"].iloc[0].items()}
    clients = frames["bigherd_clients"]
    rows = []
    for summary in frames["bigherd"].to_dict("records"):
        name = str(summary["strategy"])
        settings = sim_settings_for(summary, calibration)
        sim = simulate(name, settings, seed=seed)
        s = sim.summary()
        sim_after = sim.connected_at[~np.isnan(sim.connected_at)] - settings.ready_s
        for metric, q in _QUANTILES.items():
            s[metric] = float(np.quantile(sim_after, q)) if len(sim_after) else math.nan
        real_after = clients.loc[clients["strategy"] == name, "connected_after_ready_s"].dropna()
        for metric in METRICS:
            real, simulated = float(summary[metric]), float(s[metric])
            row: dict[str, Any] = {
                "strategy": name,
                "n_clients": int(summary["n_clients"]),
                "metric": metric,
                "real": real,
                "sim": simulated,
                "ratio": ratio(real, simulated),
                "n": int(summary["n_clients"]),
            }
            if metric in _QUANTILES:
                q = _QUANTILES[metric]
                r_est = stats.quantile_interval(real_after.to_numpy(), q, level=level, seed=seed)
                s_est = stats.quantile_interval(sim_after, q, level=level, seed=seed)
                row.update(
                    real_low=r_est.low,
                    real_high=r_est.high,
                    sim_low=s_est.low,
                    sim_high=s_est.high,
                    n=r_est.n,
                )
            rows.append(row)
    columns = ["strategy", "n_clients", "metric", "real", "sim", "ratio"]
    columns += ["real_low", "real_high", "sim_low", "sim_high", "n"]
    return pd.DataFrame(rows).reindex(columns=columns)


# -- the script ------------------------------------------------------------------------


def _fmt(value: float, low: float, high: float, n: int) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isnan(low):
        return f"{value:.4g}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}] (n={n})"


def format_comparison(comparison: pd.DataFrame, runs: pd.DataFrame) -> str:
    """The comparison as text: per strategy, metric, real and sim with intervals, ratio."""
    lines = []
    for name, group in comparison.groupby("strategy", sort=False):
        run = runs[runs["strategy"] == name].iloc[0]
        lines.append(
            f"== {name}: n={int(run['n_clients'])} clients, peak backends "
            f"{int(run['peak_backends'])} of max_connections {int(run['max_connections'])}, "
            f"ready {run['ready_after_event_s']:.3f} s after the restart, "
            f"left after {int(run['left_after'])}, wall {run['wall_s']:.1f} s; "
            f"{int(run['client_processes'])} client process(es), busiest loop at "
            f"{run['client_cpu_util']:.0%} of a core (peak 0.5 s: "
            f"{run['client_peak_cpu_util']:.0%})"
            + (" (saturated)" if run["client_saturated"] else "")
        )
        for r in group.itertuples():
            real = _fmt(r.real, r.real_low, r.real_high, int(r.n))
            sim = _fmt(r.sim, r.sim_low, r.sim_high, int(r.n))
            lines.append(f"  {r.metric:36s} real {real:34s} sim {sim:34s} ratio {r.ratio:.3g}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perfkit.retry.bigherd", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="client processes (event loops) the clients are split over; "
        "1 = one loop in this process; default: one per 250 clients, at most 2 per CPU",
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=None,
        help="niceness of the client loops (e.g. -10, needs root: clients not starved by "
        "the server's backends); default: inherited",
    )
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--outage", type=float, default=1.0, help="seconds the server is down")
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-burst", type=int, default=100)
    parser.add_argument(
        "--out", type=Path, help="CSV of the comparison; runs, attempts, clients, backends beside"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perfkit.retry.bigherd``: own server, all strategies, comparison printed."""
    args = _parser().parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:  # every check before the server starts
        checked = [
            BigHerdSettings(
                strategy=s,
                n_clients=args.clients,
                client_processes=args.processes,
                client_nice=args.client_nice,
            )
            for s in strategies
        ]
        limits = ensure_fd_limit(args.clients, processes=checked[0].processes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if limits["raised"]:
        print(f"raised the open-files soft limit {limits['soft_before']} -> {limits['soft']}")
    settings = herd_server_settings(args.backend, args.clients)
    t0 = time.monotonic()
    with create_server(settings) as server:
        frames = big_herd(
            server,
            strategies,
            args.clients,
            outage_s=args.outage,
            connect_timeout=args.connect_timeout,
            deadline=args.deadline,
            seed=args.seed,
            calibration_burst=args.calibration_burst,
            client_processes=args.processes,
            client_nice=args.client_nice,
        )
    wall = time.monotonic() - t0
    cal = frames["calibration"].iloc[0]
    print(
        f"calibration: connect {cal['connect_s'] * 1000:.2f} ms, capacity "
        f"{cal['capacity_per_s']:.0f}/s (burst {int(cal['burst'])}), refused "
        f"{cal['refused_s'] * 1000:.3f} ms; open files soft limit {limits['soft']}"
    )
    print(format_comparison(frames["comparison"], frames["bigherd"]))
    print(f"total wall time {wall:.1f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        frames["comparison"].to_csv(args.out, index=False)
        written = [args.out]
        for part in (
            "bigherd",
            "bigherd_attempts",
            "bigherd_clients",
            "bigherd_backends",
            "bigherd_processes",
        ):
            suffix = part.removeprefix("bigherd").strip("_") or "runs"
            path = args.out.with_suffix(f".{suffix}.csv")
            frames[part].to_csv(path, index=False)
            written.append(path)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
