"""The PgBouncer lab's measurements: connect latency, connect-per-request load, an
application pool, a reconnect storm and session vs transaction mode, against a real
server with PgBouncers in front (see :mod:`perfkit.bouncer.lab` for what each one is)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import psycopg

from perfkit.errors import PerfkitError
from perfkit.postgres.pgbouncer import PgBouncer

if TYPE_CHECKING:
    from perfkit.postgres import PostgresServer

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
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def failed(self) -> None:
        """Count one failed request (thread-safe)."""
        with self._lock:
            self.errors += 1

    def completed(
        self, at_s: float, *, acquire_ms: float | None = None, request_ms: float | None = None
    ) -> None:
        """Record a request completed ``at_s`` after the start, with its timings if known."""
        with self._lock:
            self.done.append(at_s)
            if acquire_ms is not None:
                self.acquire_ms.append(acquire_ms)
            if request_ms is not None:
                self.request_ms.append(request_ms)

    def trim(self) -> Load:
        """Keep only the requests completed within ``duration_s`` (timings kept aligned)."""
        keep = [i for i, t in enumerate(self.done) if t < self.duration_s]
        for name in ("acquire_ms", "request_ms"):
            values = getattr(self, name)
            if len(values) == len(self.done):
                setattr(self, name, [values[i] for i in keep])
        self.done = [self.done[i] for i in keep]
        return self

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
    start = time.monotonic()
    end = start + duration_s

    def client(_i: int) -> None:
        while time.monotonic() < end:
            try:
                connect_once(dsn)
            except psycopg.Error:
                load.failed()
                continue
            load.completed(time.monotonic() - start)

    _run_threads(threads, client)
    return load.trim()


def pooled_requests(dsn: str, workers: int, pool_size: int, duration_s: float) -> Load:
    """``workers`` threads sharing a psycopg_pool of ``pool_size``: acquire, ``SELECT 1``."""
    from psycopg_pool import ConnectionPool

    load = Load(duration_s=duration_s)
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
                    load.failed()
                    continue
                t2 = time.monotonic()
                load.completed(t2 - start, acquire_ms=(t1 - t0) * 1000, request_ms=(t2 - t0) * 1000)

        _run_threads(workers, worker)
    return load.trim()


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
                    load.failed()
                    break
                load.completed(time.monotonic() - start)
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
    return load.trim(), pd.DataFrame(
        rows, columns=["t_s", "server_connections", "sv_active", "cl_waiting", "backends"]
    )


def values_of(frame: pd.DataFrame, column: str, variant: str) -> np.ndarray:
    return frame.loc[frame["variant"] == variant, column].dropna().to_numpy(dtype=float)
