"""PgBouncer in front of one server vs connecting directly: the lab behind 05_pgbouncer.

One PostgreSQL server; PgBouncers (:class:`perfkit.postgres.pgbouncer.PgBouncer`,
transaction and session mode) in front of it. Variants are ``direct``,
``transaction`` and ``session`` (the pool mode of the PgBouncer gone through).

1. **Connect latency**: connect + ``SELECT 1`` + close, one at a time, the
   variants interleaved in a seeded random order (``connect``: one row per connect).
2. **Connect per request**: ``request_threads`` threads each connecting for
   every request for ``duration_s`` (``throughput``: one row per run;
   ``throughput_bins``: requests per 0.1 s bin, the samples of the rate's interval).
3. **Reconnect storm**: ``storm_clients`` threads hold a connection (heartbeat
   ``SELECT 1`` every 0.1 s); the server is taken down for ``storm_outage_s``
   and brought up; a client whose query fails reconnects with a fixed
   ``retry_delay_ms`` between attempts. A client is back at the end of its first
   successful query begun after the server went down; "ready" is the earlier of
   a readiness probe's first success and the first client back. Server backends
   are sampled every 50 ms and, on the local backend, the server's ``connection received`` log lines
   timed (``storm``: one row per run; ``storm_clients``, ``storm_attempts``,
   ``storm_backends``).
4. **Application pool** (psycopg_pool, ``pool_size`` connections) direct vs in
   front of the transaction-mode PgBouncer, at ``pool_workers`` threads
   (``pool``: one row per run; ``pool_bins``).
5. **Session vs transaction mode**: ``mode_clients`` clients each holding a
   connection, querying with ``think_ms`` pauses; server connections from
   ``SHOW POOLS`` and ``pg_stat_activity`` over time (``modes``, ``mode_servers``).

``samples`` holds the raw samples behind the headlines (naive = direct,
improved = through the transaction-mode PgBouncer).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg

from perfkit import validate
from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import SAMPLE_COLUMNS, SAMPLES_FRAME, LabParams, Progress, Results, param
from perfkit.postgres.pgbouncer import PgBouncer, PgBouncerSettings, find_pgbouncer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.postgres import PostgresServer, ServerSettings

DIRECT, TRANSACTION, SESSION = "direct", "transaction", "session"
VARIANTS = (DIRECT, TRANSACTION, SESSION)
BIN_S = 0.1
HEARTBEAT_S = 0.1
SAMPLE_EVERY_S = 0.05
CONNECT_TIMEOUT_S = 2
QUERY_WAIT_TIMEOUT_S = 5.0
STORM_DEADLINE_S = 30.0
HOLD_MAX_S = 3.0
#: Published references the conclusions compare with.
PGCAT_459 = {"direct_ms": 27.9, "pgbouncer_ms": 9.95}
CYBERTEC_TPS = {"connect_per_transaction": 67.5, "pooled": 15_423.0}

METRIC_LATENCY = "pgbouncer_connect_latency"
METRIC_RPS = "pgbouncer_connect_per_request_throughput"
METRIC_PEAK = "pgbouncer_storm_peak_backends"
METRIC_RECONNECT = "pgbouncer_storm_reconnect_after_ready"
HEADLINE_VARIANTS = {"naive": DIRECT, "improved": TRANSACTION}


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The PgBouncer notebook's parameters: the only place their defaults and help live."""

    quick: bool = param(False, "CI: small samples and 1 s loads: the notebook in well under 1 min")
    connect_samples: int | None = param(
        None, "connects per variant (connect latency)", full=300, quick=50
    )
    request_threads: int = param(8, "threads connecting for every request (throughput)")
    duration_s: float | None = param(None, "length of each throughput run, s", full=5.0, quick=1.0)
    storm_clients: int | None = param(None, "clients in the reconnect storm", full=100, quick=20)
    storm_outage_s: float | None = param(None, "server outage in the storm, s", full=1.0, quick=0.5)
    storm_repetitions: int | None = param(None, "storms per variant", full=3, quick=1)
    retry_delay_ms: float = param(50.0, "fixed delay between a client's reconnect attempts, ms")
    pool_workers: tuple[int, ...] | None = param(
        None, "threads in front of the application pool", full=(4, 16, 32), quick=(4, 16)
    )
    pool_size: int = param(10, "connections in the psycopg_pool (its min_size and max_size)")
    mode_clients: int | None = param(
        None, "concurrent clients, session vs transaction mode", full=50, quick=20
    )
    think_ms: float = param(5.0, "pause between a mode client's queries, ms")
    default_pool_size: int = param(20, "PgBouncer's server connections per pool (parts 1-4)")
    server_login_retry_s: float = param(
        0.5, "PgBouncer's pause after a failed server login, s (its default: 15)"
    )
    max_connections: int = param(200, "the server's max_connections")

    def check(self) -> None:
        for name in (
            "connect_samples",
            "request_threads",
            "storm_clients",
            "storm_repetitions",
            "pool_size",
            "mode_clients",
            "default_pool_size",
        ):
            validate.integer(f"parameter {name!r}", self.value(name), minimum=1)
        validate.integer("parameter 'max_connections'", self.max_connections, minimum=10)
        for name in ("duration_s", "storm_outage_s", "server_login_retry_s"):
            validate.number(f"parameter {name!r}", self.value(name), strict=True)
        for name in ("retry_delay_ms", "think_ms"):
            validate.number(f"parameter {name!r}", self.value(name))
        workers = self.value("pool_workers")
        if not workers:
            raise ConfigError("parameter 'pool_workers' must not be empty")
        validate.numbers("parameter 'pool_workers'", workers, integers=True, minimum=1)
        for name, need in (
            ("storm_clients", self.value("storm_clients") + self.default_pool_size + 10),
            ("mode_clients", self.value("mode_clients") + 10),
            ("request_threads", self.request_threads + self.default_pool_size + 10),
        ):
            if need > self.max_connections:
                raise ConfigError(
                    f"parameter {name!r} = {self.value(name)} needs max_connections >= {need} "
                    f"(the server's spare connections for probes and PgBouncer), got "
                    f"{self.max_connections}; raise 'max_connections'"
                )
        find_pgbouncer()  # BackendUnavailable before any server starts

    def bouncer_settings(self, mode: str, *, pool_size: int | None = None) -> PgBouncerSettings:
        """The PgBouncer in front of the server for parts 1-4 (5: ``pool_size`` per client)."""
        size = pool_size or self.default_pool_size
        clients = max(self.value("storm_clients"), self.value("mode_clients"), size)
        return PgBouncerSettings(
            pool_mode=mode,
            default_pool_size=size,
            max_client_conn=2 * clients + 100,
            query_wait_timeout=QUERY_WAIT_TIMEOUT_S,
            server_login_retry=self.server_login_retry_s,
        )


# -- pure helpers -------------------------------------------------------------------------


def bin_rates(times: Sequence[float], duration_s: float, *, bin_s: float = BIN_S) -> np.ndarray:
    """Events per second in each full ``bin_s`` bin of [0, ``duration_s``) (empty bins: 0)."""
    bins = math.floor(duration_s / bin_s + 1e-9)
    if bins < 1:
        return np.array([], dtype=float)
    data = np.asarray(times, dtype=float)
    counts, _ = np.histogram(data, bins=bins, range=(0.0, bins * bin_s))
    return counts / bin_s


def peak_rate(times: Sequence[float], *, bin_s: float = BIN_S) -> float:
    """The most events in any ``bin_s`` bin (bins aligned at 0), per second; 0 with none."""
    data = np.asarray(times, dtype=float)
    if data.size == 0:
        return 0.0
    _, counts = np.unique(np.floor(data / bin_s + 1e-9), return_counts=True)
    return float(counts.max()) / bin_s


def server_connections(pools: Sequence[Mapping[str, Any]], database: str) -> int:
    """Server connections a PgBouncer holds for ``database`` (``SHOW POOLS`` rows)."""
    columns = ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
    return sum(
        int(row.get(c) or 0) for row in pools if row.get("database") == database for c in columns
    )


def order_of_variants(variants: Sequence[str], rounds: int, seed: int) -> list[str]:
    """Each variant once per round, in a seeded random order within each round."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(rounds):
        this = list(variants)
        rng.shuffle(this)
        out += this
    return out


def ready_after(probe_ready_at: float, recovered_at: Sequence[float | None]) -> float:
    """When the server was ready again: the readiness probe's first success, or a client's
    first recovery when that came earlier (the probe's connect can queue behind the herd's)."""
    times = [t for t in (probe_ready_at, *recovered_at) if t is not None and not math.isnan(t)]
    return min(times, default=math.nan)


def peak_after(samples: pd.DataFrame, t0: float) -> float:
    """The largest ``backends`` sample taken at or after ``t_event_s`` = ``t0``; NaN without one."""
    later = samples.loc[samples["t_event_s"] >= t0, "backends"]
    return float(later.max()) if not later.empty else math.nan


# -- measurements ---------------------------------------------------------------------------


def _connect(dsn: str) -> psycopg.Connection[Any]:
    # prepare_threshold=None: a transaction-mode PgBouncer does not keep prepared statements.
    return psycopg.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=CONNECT_TIMEOUT_S
    )


def connect_once(dsn: str) -> float:
    """Connect, ``SELECT 1``, close: the wall time in ms."""
    t0 = time.perf_counter()
    with _connect(dsn) as conn:
        conn.execute("SELECT 1")
    return (time.perf_counter() - t0) * 1000.0


def measure_connect(targets: Mapping[str, str], n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` connects per variant, interleaved (one warm-up each, not kept): one row each."""
    for dsn in targets.values():
        connect_once(dsn)
    rows = []
    seen: dict[str, int] = dict.fromkeys(targets, 0)
    for variant in order_of_variants(list(targets), n, seed):
        ms = connect_once(targets[variant])
        rows.append({"variant": variant, "i": seen[variant], "ms": ms})
        seen[variant] += 1
    return pd.DataFrame(rows, columns=["variant", "i", "ms"])


def _run_threads(n: int, body: Callable[[int], None]) -> None:
    """Run ``body(i)`` in ``n`` threads; re-raise the first exception one of them raised."""
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            body(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@dataclass
class Load:
    """What a timed load recorded: completion times (s from its start) and failures."""

    duration_s: float
    done: list[float] = field(default_factory=list)
    errors: int = 0
    acquire_ms: list[float] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)

    def summary(self, **tags: Any) -> dict[str, Any]:
        from perfkit.stats import mean_interval, rank_quantile_interval

        rate = mean_interval(bin_rates(self.done, self.duration_s))
        row = {
            **tags,
            "duration_s": self.duration_s,
            "requests": len(self.done),
            "errors": self.errors,
            "rps": len(self.done) / self.duration_s,
            "rps_bin_mean": rate.value,
            "rps_low": rate.low,
            "rps_high": rate.high,
            "bins": rate.n,
        }
        for name, values in (("acquire", self.acquire_ms), ("request", self.request_ms)):
            if values:
                for q in (0.5, 0.99):
                    est = rank_quantile_interval(values, q)
                    key = f"{name}_p{round(q * 100)}_ms"
                    row |= {key: est.value, f"{key}_low": est.low, f"{key}_high": est.high}
        return row

    def bins(self, **tags: Any) -> list[dict[str, Any]]:
        rates = bin_rates(self.done, self.duration_s)
        return [{**tags, "bin": i, "t_s": i * BIN_S, "rps": r} for i, r in enumerate(rates)]


def connect_per_request(dsn: str, threads: int, duration_s: float) -> Load:
    """``threads`` threads, each connecting + ``SELECT 1`` + closing per request."""
    load = Load(duration_s=duration_s)
    lock = threading.Lock()
    start = time.monotonic()
    end = start + duration_s

    def client(_i: int) -> None:
        while time.monotonic() < end:
            try:
                connect_once(dsn)
            except psycopg.Error:
                with lock:
                    load.errors += 1
                continue
            with lock:
                load.done.append(time.monotonic() - start)

    _run_threads(threads, client)
    load.done = [t for t in load.done if t < duration_s]
    return load


def pooled_requests(dsn: str, workers: int, pool_size: int, duration_s: float) -> Load:
    """``workers`` threads sharing a psycopg_pool of ``pool_size``: acquire, ``SELECT 1``."""
    from psycopg_pool import ConnectionPool

    load = Load(duration_s=duration_s)
    lock = threading.Lock()
    with ConnectionPool(
        dsn,
        min_size=pool_size,
        max_size=pool_size,
        kwargs={"autocommit": True, "prepare_threshold": None},
        open=True,
        name="perfkit-bouncer",
    ) as pool:
        pool.wait(timeout=30)
        start = time.monotonic()
        end = start + duration_s

        def worker(_i: int) -> None:
            while (t0 := time.monotonic()) < end:
                try:
                    with pool.connection(timeout=10) as conn:
                        t1 = time.monotonic()
                        conn.execute("SELECT 1")
                except psycopg.Error:
                    with lock:
                        load.errors += 1
                    continue
                t2 = time.monotonic()
                with lock:
                    load.done.append(t2 - start)
                    load.acquire_ms.append((t1 - t0) * 1000)
                    load.request_ms.append((t2 - t0) * 1000)

        _run_threads(workers, worker)
    keep = [i for i, t in enumerate(load.done) if t < duration_s]
    load.done = [load.done[i] for i in keep]
    load.acquire_ms = [load.acquire_ms[i] for i in keep]
    load.request_ms = [load.request_ms[i] for i in keep]
    return load


@dataclass
class _StormClient:
    """One storm client's record (monotonic times)."""

    i: int
    lost_at: float | None = None
    recovered_at: float | None = None
    attempts: list[tuple[float, float, str]] = field(default_factory=list)
    conn: psycopg.Connection[Any] | None = None


class _Storm:
    """The shared state of one storm: clients, the outage's moments and the release signal."""

    def __init__(self, dsn: str, n: int, retry_delay_s: float) -> None:
        self.dsn = dsn
        self.retry_delay_s = retry_delay_s
        self.clients = [_StormClient(i) for i in range(n)]
        self.connected = threading.Semaphore(0)
        self.down = threading.Event()
        self.down_at = math.inf
        self.release = threading.Event()

    def run_client(self, i: int) -> None:
        c = self.clients[i]
        try:
            c.conn = _connect(self.dsn)
        finally:
            self.connected.release()  # connected or failed: the coordinator stops waiting
        deadline = math.inf
        try:
            while not self.release.is_set():
                if self.down.is_set() and deadline == math.inf:
                    deadline = time.monotonic() + STORM_DEADLINE_S
                if time.monotonic() > deadline:
                    return  # gave up: recovered_at stays None
                if c.conn is None:
                    if self._reconnect(c):
                        return
                    time.sleep(self.retry_delay_s)
                    continue
                started = time.monotonic()
                try:
                    c.conn.execute("SELECT 1")
                except psycopg.Error:
                    c.lost_at = c.lost_at or time.monotonic()
                    c.conn.close()
                    c.conn = None
                    continue
                if started >= self.down_at:
                    c.recovered_at = time.monotonic()
                    return
                self.release.wait(HEARTBEAT_S)
        finally:
            if c.recovered_at is None and c.conn is not None:
                c.conn.close()
                c.conn = None

    def _reconnect(self, c: _StormClient) -> bool:
        t0 = time.monotonic()
        try:
            conn = _connect(self.dsn)
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
                raise
        except psycopg.Error as exc:
            c.attempts.append((t0, time.monotonic(), type(exc).__name__))
            return False
        end = time.monotonic()
        c.attempts.append((t0, end, "ok"))
        c.conn = conn
        if t0 >= self.down_at:
            c.recovered_at = end
            return True
        return False

    def close_all(self) -> None:
        for c in self.clients:
            if c.conn is not None:
                c.conn.close()
                c.conn = None


def run_storm(
    server: PostgresServer,
    dsn: str,
    *,
    variant: str,
    n_clients: int,
    outage_s: float,
    retry_delay_s: float,
    rep: int = 0,
) -> dict[str, Any]:
    """One reconnect storm through ``dsn`` (the server's or a PgBouncer's); the server is
    left running. Returns ``summary`` (a dict) and the frames ``clients``, ``attempts``,
    ``backends`` (times ``t_event_s`` from the restart)."""
    from perfkit.retry.probe import BackendSampler, ReadinessProbe, connection_log_times

    if not server.is_ready():
        server.bring_up(wait=True)
    wall_to_mono = time.monotonic() - time.time()
    storm = _Storm(dsn, n_clients, retry_delay_s)
    sampler = BackendSampler(server.dsn, interval=SAMPLE_EVERY_S)
    box: dict[str, BaseException] = {}

    def clients() -> None:
        try:
            _run_threads(n_clients, storm.run_client)
        except BaseException as exc:  # surfaced in the main thread
            box["error"] = exc

    worker = threading.Thread(target=clients, name="storm-clients", daemon=True)
    worker.start()
    for _ in range(n_clients):
        storm.connected.acquire()
    if any(c.conn is None for c in storm.clients):  # a client could not connect at all
        storm.release.set()
        worker.join()
        storm.close_all()
        raise box.get("error") or PerfkitError("a storm client could not connect")
    sampler.start()
    event_at = ready_at = math.nan
    try:
        time.sleep(3 * SAMPLE_EVERY_S)  # a few samples of the steady state
        server.take_down()
        storm.down_at = time.monotonic()
        storm.down.set()
        time.sleep(outage_s)
        event_at = time.monotonic()
        server.bring_up(wait=False)
        probe = ReadinessProbe(server.dsn).start()
        ready = probe.wait()
        probe.stop()
        ready_at = ready if ready is not None else math.nan
        while worker.is_alive() and not _all_settled(storm):
            time.sleep(0.02)
        last = max((c.recovered_at or 0.0 for c in storm.clients), default=0.0)
        until = time.monotonic() + HOLD_MAX_S
        while not sampler.sampled_after(last) and time.monotonic() < until:
            time.sleep(0.02)
    finally:
        storm.release.set()
        worker.join()
        sampler.stop()
        storm.close_all()
        if not server.is_ready():
            server.bring_up(wait=True)
    if "error" in box:
        raise box["error"]
    end_at = time.monotonic()
    probe_ready_at = ready_at
    ready_at = ready_after(probe_ready_at, [c.recovered_at for c in storm.clients])

    tags = {"variant": variant, "rep": rep, "n_clients": n_clients}
    client_rows, attempt_rows = [], []
    for c in storm.clients:
        client_rows.append(
            {
                **tags,
                "client": c.i,
                "lost": c.lost_at is not None,
                "recovered": c.recovered_at is not None,
                "attempts": len(c.attempts),
                "recovered_after_ready_ms": (c.recovered_at - ready_at) * 1000
                if c.recovered_at is not None
                else math.nan,
            }
        )
        for start, end, outcome in c.attempts:
            attempt_rows.append(
                {
                    **tags,
                    "client": c.i,
                    "t_event_s": start - event_at,
                    "duration_ms": (end - start) * 1000,
                    "outcome": outcome,
                }
            )
    client_frame = pd.DataFrame(client_rows)
    attempts = pd.DataFrame(
        attempt_rows, columns=[*tags, "client", "t_event_s", "duration_ms", "outcome"]
    )
    backends = pd.DataFrame(sampler.samples, columns=["at", "backends"])
    backends["t_event_s"] = backends["at"] - event_at
    backends = backends.drop(columns="at").assign(**tags)
    log_times = connection_log_times(server, wall_to_mono=wall_to_mono)
    server_rate = math.nan
    server_attempts = math.nan
    if log_times is not None:
        window = [t - event_at for t in log_times if storm.down_at <= t <= end_at]
        server_rate = peak_rate(window)
        server_attempts = float(len(window))
    recovered = client_frame["recovered_after_ready_ms"].dropna()
    summary = {
        **tags,
        "outage_s": outage_s,
        "retry_delay_ms": retry_delay_s * 1000,
        "ready_after_event_s": ready_at - event_at,
        "probe_ready_after_event_s": probe_ready_at - event_at,
        "recovered": int(client_frame["recovered"].sum()),
        "lost": int(client_frame["lost"].sum()),
        "client_attempts": len(attempts),
        "client_peak_attempts_per_s": peak_rate(attempts["t_event_s"].to_numpy()),
        "server_connections_received": server_attempts,
        "server_peak_attempts_per_s": server_rate,
        "steady_backends": float(backends.loc[backends["t_event_s"] < -outage_s, "backends"].max()),
        "peak_backends_after_restart": peak_after(backends, 0.0),
        "median_recovered_after_ready_ms": float(recovered.median())
        if len(recovered)
        else math.nan,
        "all_recovered_after_ready_ms": float(recovered.max())
        if len(recovered) == n_clients
        else math.nan,
    }
    return {
        "summary": summary,
        "clients": client_frame,
        "attempts": attempts,
        "backends": backends,
    }


def _all_settled(storm: _Storm) -> bool:
    return all(c.recovered_at is not None for c in storm.clients)


def mode_load(
    bouncer: PgBouncer, server: PostgresServer, clients: int, duration_s: float, think_s: float
) -> tuple[Load, pd.DataFrame]:
    """``clients`` connections held through ``bouncer``, each querying with ``think_s`` pauses;
    server connections sampled (``SHOW POOLS`` and ``pg_stat_activity``) every 0.1 s."""
    from perfkit.retry.probe import BackendSampler

    load = Load(duration_s=duration_s)
    lock = threading.Lock()
    conns = [_connect(bouncer.dsn) for _ in range(clients)]
    database = str(psycopg.conninfo.conninfo_to_dict(bouncer.dsn).get("dbname"))
    rows: list[dict[str, Any]] = []
    try:
        start = time.monotonic()
        end = start + duration_s

        def client(i: int) -> None:
            conn = conns[i]
            while time.monotonic() < end:
                try:
                    conn.execute("SELECT 1")
                except psycopg.Error:
                    with lock:
                        load.errors += 1
                    break
                with lock:
                    load.done.append(time.monotonic() - start)
                if think_s:
                    time.sleep(think_s)

        worker = threading.Thread(target=_run_threads, args=(clients, client), daemon=True)
        with BackendSampler(server.dsn, interval=SAMPLE_EVERY_S) as sampler:
            worker.start()
            while worker.is_alive():
                pools = bouncer.show("POOLS")
                t = time.monotonic() - start
                backends = sampler.samples[-1][1] if sampler.samples else math.nan
                rows.append(
                    {
                        "t_s": t,
                        "server_connections": server_connections(pools, database),
                        "sv_active": sum(
                            int(p.get("sv_active") or 0) for p in pools if p["database"] == database
                        ),
                        "cl_waiting": sum(
                            int(p.get("cl_waiting") or 0)
                            for p in pools
                            if p["database"] == database
                        ),
                        "backends": backends,
                    }
                )
                worker.join(2 * SAMPLE_EVERY_S)
    finally:
        for conn in conns:
            conn.close()
    load.done = [t for t in load.done if t < duration_s]
    return load, pd.DataFrame(
        rows, columns=["t_s", "server_connections", "sv_active", "cl_waiting", "backends"]
    )


# -- the whole run ------------------------------------------------------------------------


def run_lab(params: Params, server: PostgresServer, progress: Progress) -> dict[str, pd.DataFrame]:
    """Parts 1-5 against ``server`` (PgBouncers started and removed here); the frames."""
    frames: dict[str, pd.DataFrame] = {}
    duration = float(params.value("duration_s"))
    with (
        PgBouncer(server, params.bouncer_settings(TRANSACTION)) as tx,
        PgBouncer(server, params.bouncer_settings(SESSION)) as sx,
    ):
        targets = {DIRECT: server.dsn, TRANSACTION: tx.dsn, SESSION: sx.dsn}
        n = int(params.value("connect_samples"))
        progress(f"connect latency: {n} per variant")
        frames["connect"] = measure_connect(targets, n, seed=params.seed)

        progress(f"connect per request: {params.request_threads} threads x {duration:g} s")
        runs, bins = [], []
        for variant, dsn in targets.items():
            load = connect_per_request(dsn, params.request_threads, duration)
            tags = {"variant": variant, "threads": params.request_threads}
            runs.append(load.summary(**tags))
            bins += load.bins(**tags)
        frames["throughput"], frames["throughput_bins"] = pd.DataFrame(runs), pd.DataFrame(bins)

        storms: dict[str, list[Any]] = {
            "summary": [],
            "clients": [],
            "attempts": [],
            "backends": [],
        }
        for rep in range(int(params.value("storm_repetitions"))):
            for variant in (DIRECT, TRANSACTION):
                progress(f"storm: {params.value('storm_clients')} clients, {variant}, rep {rep}")
                out = run_storm(
                    server,
                    targets[variant],
                    variant=variant,
                    n_clients=int(params.value("storm_clients")),
                    outage_s=float(params.value("storm_outage_s")),
                    retry_delay_s=params.retry_delay_ms / 1000,
                    rep=rep,
                )
                for key in storms:
                    storms[key].append(out[key])
        frames["storm"] = pd.DataFrame(storms["summary"]).assign(
            server_login_retry_s=params.server_login_retry_s
        )
        for key in ("clients", "attempts", "backends"):
            frames[f"storm_{key}"] = pd.concat(storms[key], ignore_index=True)

        runs, bins = [], []
        for workers in params.value("pool_workers"):
            for variant in (DIRECT, TRANSACTION):
                progress(f"application pool: {workers} workers, {variant}")
                load = pooled_requests(targets[variant], workers, params.pool_size, duration)
                tags = {"variant": variant, "workers": workers, "pool_size": params.pool_size}
                runs.append(load.summary(**tags))
                bins += load.bins(**tags)
        frames["pool"], frames["pool_bins"] = pd.DataFrame(runs), pd.DataFrame(bins)

    clients = int(params.value("mode_clients"))
    runs, servers = [], []
    for mode in (SESSION, TRANSACTION):
        progress(f"pool modes: {clients} clients, {mode}")
        with PgBouncer(server, params.bouncer_settings(mode, pool_size=clients)) as bouncer:
            load, samples = mode_load(bouncer, server, clients, duration, params.think_ms / 1000)
        row = load.summary(variant=mode, clients=clients, think_ms=params.think_ms)
        row["server_connections_mean"] = float(samples["server_connections"].mean())
        row["server_connections_peak"] = float(samples["server_connections"].max())
        row["sv_active_mean"] = float(samples["sv_active"].mean())
        row["cl_waiting_mean"] = float(samples["cl_waiting"].mean())
        row["backends_peak"] = float(samples["backends"].max())
        runs.append(row)
        servers.append(samples.assign(variant=mode, clients=clients))
    frames["modes"] = pd.DataFrame(runs)
    frames["mode_servers"] = pd.concat(servers, ignore_index=True)
    frames[SAMPLES_FRAME] = samples_frame(frames)
    return frames


def samples_frame(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The raw samples behind the headlines (naive = direct, improved = transaction mode)."""
    parts = []
    for variant, source in HEADLINE_VARIANTS.items():
        sources = (
            (METRIC_LATENCY, "ms", frames["connect"], "ms"),
            (METRIC_RPS, "rps", frames["throughput_bins"], "rps"),
            (METRIC_PEAK, "count", frames["storm"], "peak_backends_after_restart"),
            (METRIC_RECONNECT, "ms", frames["storm_clients"], "recovered_after_ready_ms"),
        )
        for metric, unit, frame, column in sources:
            values = frame.loc[frame["variant"] == source, column].dropna().astype(float)
            parts.append(
                pd.DataFrame({"metric": metric, "variant": variant, "unit": unit, "value": values})
            )
    return pd.concat(parts, ignore_index=True)[list(SAMPLE_COLUMNS)]


# -- reading results --------------------------------------------------------------------


def _values(frame: pd.DataFrame, column: str, variant: str) -> np.ndarray:
    return frame.loc[frame["variant"] == variant, column].dropna().to_numpy(dtype=float)


def headline_items(frames: Mapping[str, pd.DataFrame]) -> list[Any]:
    """Median connect latency, mean connect-per-request rate, median storm peak backends and
    reconnect time: direct (naive) vs through the transaction-mode PgBouncer (improved)."""
    from perfkit.headlines import Headline
    from perfkit.stats import mean_interval, quantile_interval

    samples = frames[SAMPLES_FRAME]
    labels = {
        METRIC_LATENCY: "median connect + SELECT 1 + close",
        METRIC_RPS: "requests/s connecting per request (mean over 0.1 s bins)",
        METRIC_PEAK: "peak server backends after a restart (median over storms)",
        METRIC_RECONNECT: "client reconnected after the server was ready (median)",
    }
    out = []
    for metric, label in labels.items():
        for variant, source in HEADLINE_VARIANTS.items():
            rows = samples[(samples["metric"] == metric) & (samples["variant"] == variant)]
            if rows.empty:
                continue
            values = rows["value"].to_numpy(dtype=float)
            est = mean_interval(values) if metric == METRIC_RPS else quantile_interval(values)
            out.append(
                Headline(
                    metric=metric,
                    variant=variant,
                    value=est.value,
                    unit=str(rows["unit"].iloc[0]),
                    label=f"{source}: {label}",
                    n=est.n,
                    ci_low=est.low,
                    ci_high=est.high,
                )
            )
    return out


def _verdict_line(
    samples: Mapping[str, np.ndarray], what: str, unit: str, *, lower_is_better: bool = True
) -> str:
    from perfkit.verdicts import decide

    present = {k: v for k, v in samples.items() if len(v)}
    if len(present) < 2:
        return f"- **{what}**: not enough variants measured to compare ({', '.join(present)})."
    verdict = decide(
        present,
        lower_is_better=lower_is_better,
        statistic="median" if lower_is_better else "mean",
    )
    return f"- **{what}**: {verdict.text(unit=unit)}."


def conclusion_text(frames: Mapping[str, pd.DataFrame]) -> str:
    """The closing Markdown: verdicts with n and intervals, and the published numbers."""
    from perfkit.stats import quantile_interval

    connect = frames["connect"]
    lines = ["### PgBouncer in front of one server", ""]
    latency = {v: _values(connect, "ms", v) for v in VARIANTS}
    pair = (DIRECT, TRANSACTION)
    lines.append(
        _verdict_line(
            {v: latency[v] for v in pair}, "Connect + SELECT 1 + close, direct vs PgBouncer", "ms"
        )
    )
    lines.append(_verdict_line(latency, "The same, all three variants", "ms"))
    med = {v: quantile_interval(latency[v]).value for v in VARIANTS if len(latency[v])}
    if DIRECT in med and TRANSACTION in med:
        lines.append(
            f"  Direct / PgBouncer (transaction) = {med[DIRECT] / med[TRANSACTION]:.2f}x; "
            f"pgcat issue #459 reported {PGCAT_459['direct_ms']} ms direct vs "
            f"{PGCAT_459['pgbouncer_ms']} ms through PgBouncer "
            f"({PGCAT_459['direct_ms'] / PGCAT_459['pgbouncer_ms']:.1f}x). A direct connect "
            "forks a backend and runs its authentication; through PgBouncer the client "
            "authenticates at PgBouncer and reuses an open server connection."
        )
    bins = frames["throughput_bins"]
    rates = {v: _values(bins, "rps", v) for v in VARIANTS}
    threads = int(frames["throughput"]["threads"].iloc[0])
    what = f"Connecting per request ({threads} threads, requests/s per 0.1 s bin)"
    lines.append(_verdict_line({v: rates[v] for v in pair}, what, "rps", lower_is_better=False))
    lines.append(_verdict_line(rates, "The same, all three variants", "rps", lower_is_better=False))
    tput = frames["throughput"].set_index("variant")
    if DIRECT in tput.index and TRANSACTION in tput.index:
        ratio = tput.loc[TRANSACTION, "rps"] / max(tput.loc[DIRECT, "rps"], 1e-9)
        lines.append(
            f"  {tput.loc[DIRECT, 'rps']:,.0f} rps direct vs {tput.loc[TRANSACTION, 'rps']:,.0f} "
            f"through PgBouncer ({ratio:.1f}x). Cybertec measured "
            f"{CYBERTEC_TPS['connect_per_transaction']} "
            f"tps connecting per transaction vs {CYBERTEC_TPS['pooled']:,.0f} pooled "
            f"({CYBERTEC_TPS['pooled'] / CYBERTEC_TPS['connect_per_transaction']:.0f}x). "
            "That compares with a pool that never reconnects; here every request still opens "
            "a client connection (to PgBouncer), so the gain is what PgBouncer saves on the "
            "server side only."
        )
        pool = frames["pool"]
        pooled = pool[pool["variant"] == DIRECT] if not pool.empty else pool
        if not pooled.empty:
            best = pooled.loc[pooled["rps"].idxmax()]
            lines.append(
                f"  An application pool without reconnects (psycopg_pool direct, "
                f"{int(best['workers'])} workers): {best['rps']:,.0f} rps, "
                f"{best['rps'] / max(tput.loc[DIRECT, 'rps'], 1e-9):,.0f}x connecting per "
                "request directly (Cybertec's ratio above is for pgbench on its hardware)."
            )
    storm = frames["storm"]
    if not storm.empty:
        by = storm.groupby("variant")
        peak = by["peak_backends_after_restart"].median()
        rate = by["server_peak_attempts_per_s"].median()
        client_rate = by["client_peak_attempts_per_s"].median()
        n_clients = int(storm["n_clients"].iloc[0])
        reps = int(by.size().min())
        lines.append(
            f"- **Reconnect storm** ({n_clients} clients, {storm['outage_s'].iloc[0]:g} s outage, "
            f"{storm['retry_delay_ms'].iloc[0]:g} ms fixed retry delay, {reps} storm(s) each): "
            + "; ".join(
                f"{v}: peak {peak[v]:.0f} server backends after the restart, "
                f"peak {rate[v]:,.0f} connections/s received by the server, "
                f"{client_rate[v]:,.0f} client attempts/s"
                for v in peak.index
            )
            + "."
        )
        if DIRECT in peak.index and TRANSACTION in peak.index:
            absorbs = peak[TRANSACTION] < peak[DIRECT] and (
                math.isnan(rate[TRANSACTION]) or rate[TRANSACTION] <= rate[DIRECT]
            )
            word = "absorbs" if absorbs else "does not absorb"
            lines.append(
                f"  PgBouncer {word} the storm: {peak[TRANSACTION]:.0f} vs {peak[DIRECT]:.0f} "
                "peak backends at the server after the restart (through PgBouncer its pool, "
                "not the number of clients, bounds how many server connections reopen)."
            )
        clients = frames["storm_clients"]
        recovered = {v: _values(clients, "recovered_after_ready_ms", v) for v in peak.index}
        lines.append(_verdict_line(recovered, "Client back after the server was ready", "ms"))
        lost = by["lost"].sum()
        retry = storm.get("server_login_retry_s", pd.Series([math.nan])).iloc[0]
        lines.append(
            "  Clients that saw an error: "
            + ", ".join(f"{v} {int(lost[v])} of {n_clients * reps}" for v in lost.index)
            + ". While its server logins fail, PgBouncer answers queries with an error "
            "(an idle client's query waits instead only until the next login attempt), so "
            "the clients behind it retry too, but against PgBouncer, not the server; and it "
            f"tries the server again only every server_login_retry (here {retry:g} s; "
            "PgBouncer's default is 15 s), which is what its clients' recovery time shows."
        )
    pool = frames["pool"]
    if not pool.empty:
        pool_bins = frames["pool_bins"]
        lines.append(
            f"- **Application pool** (psycopg_pool, {int(pool['pool_size'].iloc[0])} "
            "connections), direct vs in front of PgBouncer:"
        )
        for workers, group in pool.groupby("workers"):
            g = group.set_index("variant")
            parts = [
                f"{v} {g.loc[v, 'rps']:,.0f} rps, p99 request "
                f"{g.loc[v, 'request_p99_ms']:.2f} ms [{g.loc[v, 'request_p99_ms_low']:.2f}, "
                f"{g.loc[v, 'request_p99_ms_high']:.2f}]"
                for v in g.index
                if "request_p99_ms" in g.columns
            ]
            wb = pool_bins[pool_bins["workers"] == workers]
            verdict = _verdict_line(
                {v: _values(wb, "rps", v) for v in g.index},
                f"{workers} workers, throughput",
                "rps",
                lower_is_better=False,
            )
            lines.append(f"  - {workers} workers: " + "; ".join(parts) + ".")
            lines.append("  " + verdict)
    modes = frames["modes"]
    if not modes.empty:
        m = modes.set_index("variant")
        lines.append(
            f"- **Session vs transaction mode** ({int(modes['clients'].iloc[0])} clients, "
            f"{modes['think_ms'].iloc[0]:g} ms between queries): "
            + "; ".join(
                f"{v}: {m.loc[v, 'sv_active_mean']:.1f} server connections busy on average, "
                f"{m.loc[v, 'server_connections_peak']:.0f} open at the peak, "
                f"{m.loc[v, 'rps']:,.0f} rps"
                for v in m.index
            )
            + ". Session mode ties a server connection to each client for its whole session; "
            "transaction mode only for the length of a transaction (the connections it opened "
            "for a burst stay open, idle, until server_idle_timeout)."
        )
    return "\n".join(lines)


# -- figures ------------------------------------------------------------------------------


def plot_latency(connect: pd.DataFrame) -> Figure:
    """ECDF of connect latency per variant, medians with 95 % intervals marked."""
    import matplotlib.pyplot as plt

    from perfkit.stats import quantile_interval

    fig, ax = plt.subplots(figsize=(8, 4))
    for i, variant in enumerate(v for v in VARIANTS if (connect["variant"] == v).any()):
        values = np.sort(_values(connect, "ms", variant))
        est = quantile_interval(values)
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=f"C{i}")
        ax.axvspan(est.low, est.high, color=f"C{i}", alpha=0.2)
        ax.axvline(est.value, color=f"C{i}", ls="--", label=f"{variant}: {est.format(unit=' ms')}")
    ax.set_xscale("log")
    ax.set_xlabel("connect + SELECT 1 + close, ms (log)")
    ax.set_ylabel("fraction of connects")
    ax.set_title("Connect latency: median and 95 % interval shaded")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_throughput(throughput: pd.DataFrame, pool: pd.DataFrame) -> Figure:
    """Requests/s with 95 % intervals: connecting per request, and the application pool."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    t = throughput.set_index("variant")
    err = np.vstack([t["rps_bin_mean"] - t["rps_low"], t["rps_high"] - t["rps_bin_mean"]])
    ax1.bar(t.index, t["rps_bin_mean"], yerr=err, capsize=4, color=["C0", "C1", "C2"][: len(t)])
    ax1.set_title("connecting per request")
    ax1.set_ylabel("requests/s (mean of 0.1 s bins, 95 % CI)")
    if not pool.empty:
        wide = pool.pivot(index="workers", columns="variant", values="rps_bin_mean")
        low = pool.pivot(index="workers", columns="variant", values="rps_low")
        high = pool.pivot(index="workers", columns="variant", values="rps_high")
        x = np.arange(len(wide.index))
        width = 0.8 / max(len(wide.columns), 1)
        for j, variant in enumerate(wide.columns):
            y = wide[variant].to_numpy()
            yerr = np.vstack([y - low[variant].to_numpy(), high[variant].to_numpy() - y])
            ax2.bar(x + j * width, y, width, yerr=yerr, capsize=3, label=variant)
        ax2.set_xticks(x + width * (len(wide.columns) - 1) / 2, [str(w) for w in wide.index])
        ax2.set_xlabel("worker threads")
        ax2.legend()
    ax2.set_title("application pool in front")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_storm(backends: pd.DataFrame, attempts: pd.DataFrame) -> Figure:
    """Server backends and client reconnect attempts over time, first storm of each variant."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, variant in enumerate(v for v in VARIANTS if (backends["variant"] == v).any()):
        b = backends[(backends["variant"] == variant) & (backends["rep"] == 0)]
        ax1.step(b["t_event_s"], b["backends"], where="post", color=f"C{i}", label=variant)
        a = attempts[(attempts["variant"] == variant) & (attempts["rep"] == 0)]
        if not a.empty:
            lo, hi = a["t_event_s"].min(), a["t_event_s"].max()
            edges = np.arange(math.floor(lo / BIN_S) * BIN_S, hi + 2 * BIN_S, BIN_S)
            counts, edges = np.histogram(a["t_event_s"], bins=edges)
            ax2.step(edges[:-1], counts / BIN_S, where="post", color=f"C{i}", label=variant)
    ax1.set_ylabel("client backends at the server")
    ax2.set_ylabel("client reconnect attempts/s (0.1 s bins)")
    for ax in (ax1, ax2):
        ax.axvline(0, color="grey", ls=":", lw=1)
        ax.set_xlabel("s since the restart began")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title("server backends over the storm")
    ax2.set_title("reconnect attempts (to the server or PgBouncer)")
    fig.tight_layout()
    return fig


def plot_modes(mode_servers: pd.DataFrame) -> Figure:
    """Server connections over time, session vs transaction mode."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (variant, g) in enumerate(mode_servers.groupby("variant")):
        ax.plot(g["t_s"], g["server_connections"], color=f"C{i}", label=f"{variant} (SHOW POOLS)")
        ax.plot(g["t_s"], g["sv_active"], color=f"C{i}", ls=":", label=f"{variant}: sv_active")
    ax.set_xlabel("s since the clients started")
    ax.set_ylabel("server connections")
    ax.set_title("Session vs transaction mode: server connections for the same clients")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- the lab contract -----------------------------------------------------------------------


class PgBouncerLab:
    """PgBouncer vs direct connections: latency, throughput, reconnect storms, pool modes."""

    name = "pgbouncer"
    title = "PgBouncer in front of PostgreSQL"
    notebook = "05_pgbouncer.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> ServerSettings:
        from perfkit.postgres import FAST_SERVER_SETTINGS, ServerSettings
        from perfkit.retry.probe import LOG_CONNECTION_SETTINGS

        gucs = {
            **FAST_SERVER_SETTINGS,
            **LOG_CONNECTION_SETTINGS,
            "max_connections": str(params.max_connections),
        }
        return ServerSettings(backend=params.backend, server_settings=gucs)

    def run(self, params: Params, server: PostgresServer | None, progress: Progress) -> Results:
        if server is None:
            raise PerfkitError("the pgbouncer lab needs a running server")
        frames = run_lab(params, server, progress)
        return Results(frames=frames, server=server.describe())

    def headlines(self, results: Results) -> pd.DataFrame:
        from perfkit.headlines import headline_frame

        return headline_frame(headline_items(results.frames))

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        yield (
            "Connect latency (ECDF, medians with 95 % intervals)",
            plot_latency(results["connect"]),
        )
        yield (
            "Throughput with 95 % intervals",
            plot_throughput(results["throughput"], results["pool"]),
        )
        yield (
            "Reconnect storm: server backends and attempts",
            plot_storm(results["storm_backends"], results["storm_attempts"]),
        )
        yield "Session vs transaction mode: server connections", plot_modes(results["mode_servers"])

    def conclusions(self, results: Results) -> str:
        return conclusion_text(results.frames)


LAB = PgBouncerLab()
