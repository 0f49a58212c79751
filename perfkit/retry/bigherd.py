"""A real herd of 1,000 connected clients that lose their server and reconnect, vs the model.

:mod:`perfkit.retry.herd` starts its clients at the outage and checks the
simulation up to about 100 of them. Here N clients (default 1,000, asyncio
tasks on one event loop) first all hold a connection; then the server is
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
script); one socket per client needs an open-files limit above N, which
:func:`ensure_fd_limit` raises within the hard limit.

Run it: ``python -m perfkit.retry.bigherd --clients 1000 --backend local --out big.csv``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from perfkit import stats
from perfkit.asyncrun import run_coroutine
from perfkit.errors import ConfigError, PerfkitError, RetryError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry import herd
from perfkit.retry.connect import async_connect_with_retry
from perfkit.retry.experiments import client_rng
from perfkit.retry.probe import BackendSampler, ReadinessProbe
from perfkit.retry.simulate import SimSettings, simulate
from perfkit.retry.strategies import get_strategy
from perfkit.retry.trace import Trace

DEFAULT_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter")
#: Connections the server needs beyond the clients: sampler, probe, calibration, superuser slack.
MAX_CONNECTIONS_MARGIN = 20
#: Open files the client process needs beyond one socket per client.
FD_MARGIN = 256
#: Clients that open their first connection at the same time (the quiet setup phase).
SETUP_CONCURRENCY = 64
SETUP_TIMEOUT_S = 120.0
#: How long after closing the clients' connections their backends may take to exit.
DRAIN_TIMEOUT_S = 15.0
#: Metrics compared with the simulation; the first seven are those of the lab's herd check.
METRICS = (
    *herd.SIM_METRICS,
    "p95_connected_after_ready_s",
    "attempts",
    "timeouts",
    "gave_up",
)
#: Metrics that are quantiles of per-client times: they get bootstrap intervals.
_QUANTILES = {"median_connected_after_ready_s": 0.5, "p95_connected_after_ready_s": 0.95}
_CLIENT_BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


def ensure_fd_limit(n_clients: int, *, margin: int = FD_MARGIN) -> dict[str, Any]:
    """Raise the soft open-files limit to ``n_clients + margin`` if it is lower.

    Returns the limits before and after; ConfigError when the hard limit is too low.
    """
    need = n_clients + margin
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info: dict[str, Any] = {"needed": need, "soft_before": soft, "hard": hard, "raised": False}
    if soft == resource.RLIM_INFINITY or soft >= need:
        info["soft"] = soft
        return info
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(
            f"{n_clients} clients need {need} open files but the hard limit is {hard} "
            "(raise it with `ulimit -Hn` as root)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    info.update(soft=need, raised=True)
    return info


def somaxconn(default: int = 4096) -> int:
    """The kernel's cap on a listen() backlog (``net.core.somaxconn``)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


@dataclass(frozen=True, kw_only=True)
class BigHerdSettings:
    """One run: ``n_clients`` connected clients of ``strategy``; outage of ``outage_s``."""

    strategy: str
    n_clients: int = 1000
    outage_s: float = 1.0
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        n = self.n_clients
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"BigHerdSettings.n_clients must be an int >= 1, got {n!r}")
        if not self.outage_s >= 0:
            raise ConfigError(f"BigHerdSettings.outage_s must be >= 0, got {self.outage_s!r}")


@dataclass(kw_only=True)
class _Raw:
    """What the event loop hands back: traces and the run's clock readings."""

    traces: list[Trace]
    down_at: float
    down_s: float
    event_at: float
    probe_ready_at: float | None
    setup_s: float


async def _connect_all(dsn: str, n: int) -> list[psycopg.AsyncConnection[Any]]:
    """The quiet phase: every client opens its connection (a few at a time)."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(i: int) -> psycopg.AsyncConnection[Any]:
        async with gate:
            conn, _ = await async_connect_with_retry(
                dsn, "exponential", connect_timeout=10.0, deadline=60.0, autocommit=True
            )
            return conn

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    conns = [r for r in results if isinstance(r, psycopg.AsyncConnection)]
    failed = [r for r in results if not isinstance(r, psycopg.AsyncConnection)]
    if failed:
        for conn in conns:
            await conn.close()
        raise PerfkitError(
            f"{len(failed)} of {n} clients could not make their first connection: {failed[0]}"
        )
    return conns


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


async def _scenario(
    server: PostgresServer, bs: BigHerdSettings, sampler: BackendSampler, seed: int
) -> _Raw:
    loop = asyncio.get_running_loop()
    dsn = server.dsn
    t_setup = time.monotonic()
    conns = await _connect_all(dsn, bs.n_clients)
    setup_s = time.monotonic() - t_setup
    lost = [asyncio.Event() for _ in conns]
    fds = [conn.pgconn.socket for conn in conns]
    for fd, flag in zip(fds, lost, strict=True):
        loop.add_reader(fd, flag.set)
    new_conns: list[psycopg.AsyncConnection[Any] | None] = [None] * bs.n_clients

    async def client(i: int) -> Trace:
        await lost[i].wait()
        loop.remove_reader(fds[i])
        await conns[i].close()
        try:
            conn, trace = await async_connect_with_retry(
                dsn,
                bs.strategy,
                connect_timeout=bs.connect_timeout,
                deadline=bs.deadline,
                rng=client_rng(seed, "bigherd", bs.strategy, bs.n_clients, i),
                autocommit=True,
            )
        except RetryError as exc:
            return exc.trace
        new_conns[i] = conn
        return trace

    tasks = [asyncio.create_task(client(i)) for i in range(bs.n_clients)]
    probe: ReadinessProbe | None = None
    try:
        down_at = time.monotonic()
        await asyncio.to_thread(server.take_down)
        down_s = time.monotonic() - down_at
        await asyncio.sleep(bs.outage_s)
        event_at = time.monotonic()
        await asyncio.to_thread(server.bring_up, wait=False)
        probe = ReadinessProbe(dsn).start()
        traces = list(await asyncio.gather(*tasks))
        probe_ready_at = await asyncio.to_thread(probe.wait)
        # Hold until the sampler has seen the last client connect (as the herd does).
        connected = [t.connected_at for t in traces if t.connected_at is not None]
        until = time.monotonic() + herd.HOLD_MAX_S
        while connected and not sampler.sampled_after(max(connected)):
            if time.monotonic() >= until:
                break
            await asyncio.sleep(0.02)
    finally:
        if probe is not None:
            probe.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for i, fd in enumerate(fds):
            if not lost[i].is_set():
                loop.remove_reader(fd)
        for conn in [*conns, *new_conns]:
            if conn is not None and not conn.closed:
                await conn.close()
    return _Raw(
        traces=traces,
        down_at=down_at,
        down_s=down_s,
        event_at=event_at,
        probe_ready_at=probe_ready_at,
        setup_s=setup_s,
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
        "strategy": bs.strategy,
        "n_clients": bs.n_clients,
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
        "p95_connected_after_ready_s": float(np.quantile(ok_after, 0.95)) if n_ok else math.nan,
    }


def run_big_herd(server: PostgresServer, bs: BigHerdSettings, *, seed: int = 0) -> dict[str, Any]:
    """One run on a running ``server`` (left running): summary plus frames.

    Returns ``summary`` (a dict), ``attempts``, ``clients`` and ``backends`` (frames).
    """
    if not server.is_ready():
        server.bring_up(wait=True)
    limit = herd.max_connections(server)
    if limit < bs.n_clients + 2:
        raise ConfigError(
            f"max_connections is {limit}: {bs.n_clients} clients plus the sampler and the "
            f"readiness probe need {bs.n_clients + 2} (give max_connections="
            f"{bs.n_clients + MAX_CONNECTIONS_MARGIN} in the server settings)"
        )
    ensure_fd_limit(bs.n_clients)
    started = time.monotonic()
    sampler = BackendSampler(server.dsn).start()
    try:
        raw = run_coroutine(lambda: _scenario(server, bs, sampler, seed), fresh_thread=True)
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
    for frame in (attempts, clients, backends):
        frame["strategy"] = bs.strategy
        frame["n_clients"] = bs.n_clients
    return {"summary": summary, "attempts": attempts, "clients": clients, "backends": backends}


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
) -> dict[str, pd.DataFrame]:
    """:func:`run_big_herd` for each strategy on one running ``server``, then the model.

    Returns ``bigherd`` (one summary row per strategy), ``bigherd_attempts``,
    ``bigherd_clients``, ``bigherd_backends``, ``calibration`` (one row, measured
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


def _ratio(real: float, sim: float) -> float:
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
        s["p95_connected_after_ready_s"] = (
            float(np.quantile(sim_after, 0.95)) if len(sim_after) else math.nan
        )
        real_after = clients.loc[clients["strategy"] == name, "connected_after_ready_s"].dropna()
        for metric in METRICS:
            real, simulated = float(summary[metric]), float(s[metric])
            row: dict[str, Any] = {
                "strategy": name,
                "n_clients": int(summary["n_clients"]),
                "metric": metric,
                "real": real,
                "sim": simulated,
                "ratio": _ratio(real, simulated),
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
            f"left after {int(run['left_after'])}, wall {run['wall_s']:.1f} s"
        )
        for r in group.itertuples():
            real = _fmt(r.real, r.real_low, r.real_high, int(r.n))
            sim = _fmt(r.sim, r.sim_low, r.sim_high, int(r.n))
            lines.append(f"  {r.metric:36s} real {real:34s} sim {sim:34s} ratio {r.ratio:.3g}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perfkit.retry.bigherd``: own server, all strategies, comparison printed."""
    parser = argparse.ArgumentParser(prog="python -m perfkit.retry.bigherd", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
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
    args = parser.parse_args(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    limits = ensure_fd_limit(args.clients)
    if limits["raised"]:
        print(f"raised the open-files soft limit {limits['soft_before']} -> {limits['soft']}")
    settings = ServerSettings(
        backend=args.backend,
        server_settings={
            **FAST_SERVER_SETTINGS,
            "max_connections": args.clients + MAX_CONNECTIONS_MARGIN,
        },
    )
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
        for part in ("bigherd", "bigherd_attempts", "bigherd_clients", "bigherd_backends"):
            suffix = part.removeprefix("bigherd").strip("_") or "runs"
            path = args.out.with_suffix(f".{suffix}.csv")
            frames[part].to_csv(path, index=False)
            written.append(path)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
