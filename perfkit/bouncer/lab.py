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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit import validate
from perfkit.bouncer.measure import (
    CYBERTEC_TPS,
    DIRECT,
    PGCAT_459,
    QUERY_WAIT_TIMEOUT_S,
    SESSION,
    TRANSACTION,
    VARIANTS,
    connect_per_request,
    measure_connect,
    mode_load,
    pooled_requests,
    run_storm,
    values_of,
)
from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import SAMPLE_COLUMNS, SAMPLES_FRAME, LabParams, Progress, Results, param
from perfkit.postgres.pgbouncer import PgBouncer, PgBouncerSettings, find_pgbouncer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.postgres import PostgresServer, ServerSettings

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
            validate.integer(f"parameter {name!r}", getattr(self, name), minimum=1)
        validate.integer(  # PostgreSQL's own limit (MAX_BACKENDS)
            "parameter 'max_connections'", self.max_connections, minimum=10, maximum=262_143
        )
        for name in ("duration_s", "storm_outage_s", "server_login_retry_s"):
            validate.number(f"parameter {name!r}", getattr(self, name), strict=True)
        for name in ("retry_delay_ms", "think_ms"):
            validate.number(f"parameter {name!r}", getattr(self, name))
        workers = self.pool_workers
        if not workers:
            raise ConfigError("parameter 'pool_workers' must not be empty")
        validate.numbers("parameter 'pool_workers'", workers, integers=True, minimum=1)
        for name, need in (
            ("storm_clients", self.storm_clients + self.default_pool_size + 10),
            ("mode_clients", self.mode_clients + 10),
            ("request_threads", self.request_threads + self.default_pool_size + 10),
        ):
            if need > self.max_connections:
                raise ConfigError(
                    f"parameter {name!r} = {getattr(self, name)} needs max_connections >= {need} "
                    f"(the server's spare connections for probes and PgBouncer), got "
                    f"{self.max_connections}; raise 'max_connections'"
                )
        find_pgbouncer()  # BackendUnavailable before any server starts

    def bouncer_settings(self, mode: str, *, pool_size: int | None = None) -> PgBouncerSettings:
        """The PgBouncer in front of the server for parts 1-4 (5: ``pool_size`` per client)."""
        size = pool_size or self.default_pool_size
        clients = max(self.storm_clients, self.mode_clients, size)
        return PgBouncerSettings(
            pool_mode=mode,
            default_pool_size=size,
            max_client_conn=2 * clients + 100,
            query_wait_timeout=QUERY_WAIT_TIMEOUT_S,
            server_login_retry=self.server_login_retry_s,
        )


# -- the whole run ------------------------------------------------------------------------


def run_lab(params: Params, server: PostgresServer, progress: Progress) -> dict[str, pd.DataFrame]:
    """Parts 1-5 against ``server`` (PgBouncers started and removed here); the frames."""
    frames: dict[str, pd.DataFrame] = {}
    duration = float(params.duration_s)
    with (
        PgBouncer(server, params.bouncer_settings(TRANSACTION)) as tx,
        PgBouncer(server, params.bouncer_settings(SESSION)) as sx,
    ):
        targets = {DIRECT: server.dsn, TRANSACTION: tx.dsn, SESSION: sx.dsn}
        n = int(params.connect_samples)
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
        for rep in range(int(params.storm_repetitions)):
            for variant in (DIRECT, TRANSACTION):
                progress(f"storm: {params.storm_clients} clients, {variant}, rep {rep}")
                out = run_storm(
                    server,
                    targets[variant],
                    variant=variant,
                    n_clients=int(params.storm_clients),
                    outage_s=float(params.storm_outage_s),
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
        for workers in params.pool_workers:
            for variant in (DIRECT, TRANSACTION):
                progress(f"application pool: {workers} workers, {variant}")
                load = pooled_requests(targets[variant], workers, params.pool_size, duration)
                tags = {"variant": variant, "workers": workers, "pool_size": params.pool_size}
                runs.append(load.summary(**tags))
                bins += load.bins(**tags)
        frames["pool"], frames["pool_bins"] = pd.DataFrame(runs), pd.DataFrame(bins)

    clients = int(params.mode_clients)
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
    latency = {v: values_of(connect, "ms", v) for v in VARIANTS}
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
    rates = {v: values_of(bins, "rps", v) for v in VARIANTS}
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
        recovered = {v: values_of(clients, "recovered_after_ready_ms", v) for v in peak.index}
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
                {v: values_of(wb, "rps", v) for v in g.index},
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
        from perfkit.bouncer.plots import plot_latency, plot_modes, plot_storm, plot_throughput

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
