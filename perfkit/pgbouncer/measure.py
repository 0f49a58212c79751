"""The PgBouncer lab's measurements: connect latency, connect-per-request load, an
application pool and session vs transaction mode, against a real server with PgBouncers
in front (the reconnect storm: :mod:`perfkit.pgbouncer.storm`; what each one is:
:mod:`perfkit.pgbouncer.lab`)."""

from __future__ import annotations

import contextlib
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

from perfkit.pgbouncer import timeprofile
from perfkit.postgres.pgbouncer import PgBouncer, PgBouncerSettings
from perfkit.serverprofile.profiler import Profiler
from perfkit.workload import ClientState, Script, WeightedScript, run_script

if TYPE_CHECKING:
    from perfkit.postgres import PostgresServer

DIRECT, TRANSACTION, SESSION = "direct", "transaction", "session"
VARIANTS = (DIRECT, TRANSACTION, SESSION)
BIN_S = 0.1
SAMPLE_EVERY_S = 0.05
CONNECT_TIMEOUT_S = 2
QUERY_WAIT_TIMEOUT_S = 5.0

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


def connect(dsn: str) -> psycopg.Connection[Any]:
    # prepare_threshold=None: a transaction-mode PgBouncer does not keep prepared statements.
    return psycopg.connect(
        dsn, autocommit=True, prepare_threshold=None, connect_timeout=CONNECT_TIMEOUT_S
    )


def connect_once(dsn: str) -> float:
    """Connect, ``SELECT 1``, close: the wall time in ms."""
    t0 = time.perf_counter()
    with connect(dsn) as conn:
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


def run_threads(n: int, body: Callable[[int], None]) -> None:
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

    run_threads(threads, client)
    return load.trim()


def _script_picker(
    scripts: Sequence[WeightedScript], seed: int, worker: int
) -> tuple[Callable[[], Script], ClientState]:
    """Worker ``worker``'s seeded choice of script (by weight) and its script state."""
    rng = random.Random(f"perfkit-bouncer:{seed}:{worker}")
    chosen = [w.script for w in scripts]
    weights = [w.weight for w in scripts]
    return (lambda: rng.choices(chosen, weights=weights)[0]), ClientState(seed, worker)


def pooled_requests(
    dsn: str,
    workers: int,
    pool_size: int,
    duration_s: float,
    scripts: Sequence[WeightedScript] = (),
    *,
    seed: int = 0,
) -> Load:
    """``workers`` threads sharing a psycopg_pool of ``pool_size``: acquire, run a script.

    Each request runs one of ``scripts`` (chosen by weight, variables bound as
    parameters: :mod:`perfkit.workload`); no scripts: ``SELECT 1``.
    """
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

        def worker(i: int) -> None:
            pick, state = _script_picker(scripts, seed, i) if scripts else (None, None)
            while (t0 := time.monotonic()) < end:
                try:
                    with pool.connection(timeout=10) as conn:
                        t1 = time.monotonic()
                        if pick is None or state is None:
                            conn.execute("SELECT 1")
                        else:
                            run_script(conn, pick(), state)
                except psycopg.Error:
                    load.failed()
                    continue
                t2 = time.monotonic()
                load.completed(t2 - start, acquire_ms=(t1 - t0) * 1000, request_ms=(t2 - t0) * 1000)

        run_threads(workers, worker)
    return load.trim()


def mode_load(
    bouncer: PgBouncer, server: PostgresServer, clients: int, duration_s: float, think_s: float
) -> tuple[Load, pd.DataFrame]:
    """``clients`` connections held through ``bouncer``, each querying with ``think_s`` pauses;
    server connections sampled (``SHOW POOLS`` and ``pg_stat_activity``) every 0.1 s."""
    from perfkit.retry.probe import BackendSampler

    load = Load(duration_s=duration_s)
    conns = [connect(bouncer.dsn) for _ in range(clients)]
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

        worker = threading.Thread(target=run_threads, args=(clients, client), daemon=True)
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


# -- the parts' frames ----------------------------------------------------------------------


@contextlib.contextmanager
def profiled(
    profiler: Profiler | None, variant: str, bouncer: PgBouncer | None, **tags: Any
) -> Iterator[None]:
    """The server profiled as ``variant`` (no-op without a profiler); through a PgBouncer,
    its ``SHOW STATS`` deltas and final ``SHOW POOLS`` row too."""
    if profiler is None:
        yield
        return
    sources = {}
    if bouncer is not None:
        database = str(psycopg.conninfo.conninfo_to_dict(bouncer.dsn).get("dbname"))
        sources["pgbouncer_stats"] = timeprofile.stats_source(bouncer, database)
    with profiler.measure(variant, sources=sources, **tags) as run:
        yield
        if bouncer is not None:
            run.add("pgbouncer_pools", timeprofile.pools_row(bouncer))


def connect_per_request_frames(
    targets: Mapping[str, str], threads: int, duration_s: float, progress: Callable[[str], None]
) -> dict[str, pd.DataFrame]:
    """Part 2, every variant: ``throughput`` (one row each) and ``throughput_bins``."""
    progress(f"connect per request: {threads} threads x {duration_s:g} s")
    runs, bins = [], []
    for variant, dsn in targets.items():
        load = connect_per_request(dsn, threads, duration_s)
        tags = {"variant": variant, "threads": threads}
        runs.append(load.summary(**tags))
        bins += load.bins(**tags)
    return {"throughput": pd.DataFrame(runs), "throughput_bins": pd.DataFrame(bins)}


def pool_frames(
    targets: Mapping[str, str],
    workers: Sequence[int],
    pool_size: int,
    duration_s: float,
    progress: Callable[[str], None],
    scripts: Sequence[WeightedScript] = (),
    seed: int = 0,
    profiler: Profiler | None = None,
    bouncers: Mapping[str, PgBouncer] | None = None,
) -> dict[str, pd.DataFrame]:
    """Part 4, direct and through the transaction-mode PgBouncer at each worker count:
    ``pool`` (one row per run) and ``pool_bins``; the server profiled when ``profiler``."""
    runs, bins = [], []
    for n in workers:
        for variant in (DIRECT, TRANSACTION):
            progress(f"application pool: {n} workers, {variant}")
            with profiled(profiler, variant, (bouncers or {}).get(variant), part="pool", workers=n):
                load = pooled_requests(
                    targets[variant], n, pool_size, duration_s, scripts, seed=seed
                )
            tags = {"variant": variant, "workers": n, "pool_size": pool_size}
            runs.append(load.summary(**tags))
            bins += load.bins(**tags)
    return {"pool": pd.DataFrame(runs), "pool_bins": pd.DataFrame(bins)}


def mode_frames(
    server: PostgresServer,
    bouncers: Mapping[str, PgBouncerSettings],
    clients: int,
    duration_s: float,
    think_ms: float,
    progress: Callable[[str], None],
    profiler: Profiler | None = None,
) -> dict[str, pd.DataFrame]:
    """Part 5, a PgBouncer started per pool mode in ``bouncers``: ``modes`` (one row per
    mode) and ``mode_servers`` (its server connections over time); profiled when ``profiler``."""
    runs, servers = [], []
    for mode, settings in bouncers.items():
        progress(f"pool modes: {clients} clients, {mode}")
        with (
            PgBouncer(server, settings) as bouncer,
            profiled(profiler, mode, bouncer, part="modes", workers=clients),
        ):
            load, samples = mode_load(bouncer, server, clients, duration_s, think_ms / 1000)
        row = load.summary(variant=mode, clients=clients, think_ms=think_ms)
        row["server_connections_mean"] = float(samples["server_connections"].mean())
        row["server_connections_peak"] = float(samples["server_connections"].max())
        row["sv_active_mean"] = float(samples["sv_active"].mean())
        row["cl_waiting_mean"] = float(samples["cl_waiting"].mean())
        row["backends_peak"] = float(samples["backends"].max())
        runs.append(row)
        servers.append(samples.assign(variant=mode, clients=clients))
    return {"modes": pd.DataFrame(runs), "mode_servers": pd.concat(servers, ignore_index=True)}
