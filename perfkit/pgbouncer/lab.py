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
   front of the transaction-mode PgBouncer, at ``pool_workers`` threads, each
   request one of the ``workload`` scripts (default ``SELECT 1``; pgbench format,
   :mod:`perfkit.workload`) (``pool``: one row per run; ``pool_bins``).
5. **Session vs transaction mode**: ``mode_clients`` clients each holding a
   connection, querying with ``think_ms`` pauses; server connections from
   ``SHOW POOLS`` and ``pg_stat_activity`` over time (``modes``, ``mode_servers``).

Parts 4 and 5 are profiled on the server (``wait_profile``, ``top_statements``,
``server_counters``; :mod:`perfkit.pgbouncer.timeprofile`).

``samples`` holds the raw samples behind the headlines (naive = direct,
improved = through the transaction-mode PgBouncer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import SAMPLES_FRAME, LabParams, Progress, Results, param
from perfkit.pgbouncer.analysis import samples_frame
from perfkit.pgbouncer.measure import (
    DIRECT,
    QUERY_WAIT_TIMEOUT_S,
    SESSION,
    TRANSACTION,
    connect_per_request_frames,
    measure_connect,
    mode_frames,
    pool_frames,
)
from perfkit.pgbouncer.storm import StormSettings, storm_frames
from perfkit.postgres.pgbouncer import PgBouncer, PgBouncerSettings, find_pgbouncer
from perfkit.serverprofile.profiler import Profiler
from perfkit.workload import WeightedScript, load_workload

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.headlines import HeadlineSpec
    from perfkit.postgres import PostgresServer, ServerSettings


#: Parts 1-5 (``stages`` picks some): connect latency, connecting per request, the reconnect
#: storm, the application pool in front, session vs transaction mode.
STAGES = ("connect", "requests", "storm", "pool", "modes")
#: Stages that go through the PgBouncers of parts 1-4 (modes starts its own).
_BOUNCED = ("connect", "requests", "storm", "pool")


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
    workload: tuple[str, ...] = param(
        ("perfkit:default/select1.sql",),
        "pgbench scripts the app pool runs, file.sql@weight",
    )
    mode_clients: int | None = param(
        None, "concurrent clients, session vs transaction mode", full=50, quick=20
    )
    think_ms: float = param(5.0, "pause between a mode client's queries, ms")
    default_pool_size: int = param(20, "PgBouncer's server connections per pool (parts 1-4)")
    server_login_retry_s: float = param(
        0.5, "PgBouncer's pause after a failed server login, s (its default: 15)"
    )
    max_connections: int = param(200, "the server's max_connections")

    STAGES: ClassVar[tuple[str, ...]] = STAGES

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
        for ref in self.workload:
            if not isinstance(ref, str) or not ref:
                raise ConfigError(f"parameter 'workload' holds file paths, got {ref!r}")
        object.__setattr__(self, "_scripts", load_workload(self.workload))  # file:line errors
        find_pgbouncer()  # BackendUnavailable before any server starts

    @property
    def scripts(self) -> tuple[WeightedScript, ...]:
        """The workload's scripts, parsed once by :meth:`check`."""
        scripts: tuple[WeightedScript, ...] = self.__dict__["_scripts"]
        return scripts

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


def run(params: Params, server: PostgresServer, progress: Progress) -> dict[str, pd.DataFrame]:
    """The selected parts (all by default) against ``server`` (PgBouncers started and removed
    here); the frames of the parts that ran, with where the server's time went."""
    frames: dict[str, pd.DataFrame] = {}
    profiler = Profiler.for_server(server)  # closed below, or when collected if a part raises
    if any(params.ran(stage) for stage in _BOUNCED):
        with (
            PgBouncer(server, params.bouncer_settings(TRANSACTION)) as tx,
            PgBouncer(server, params.bouncer_settings(SESSION)) as sx,
        ):
            targets = {DIRECT: server.dsn, TRANSACTION: tx.dsn, SESSION: sx.dsn}
            frames |= bounced_frames(params, server, targets, progress, profiler, tx)
    if params.ran("modes"):
        clients = int(params.mode_clients)
        bouncers = {
            m: params.bouncer_settings(m, pool_size=clients) for m in (SESSION, TRANSACTION)
        }
        frames |= mode_frames(
            server,
            bouncers,
            clients,
            float(params.duration_s),
            params.think_ms,
            progress,
            profiler=profiler,
        )
    profiler.close()
    if params.ran("pool") or params.ran("modes"):  # the parts it profiles
        frames |= profiler.frames()
    frames[SAMPLES_FRAME] = samples_frame(frames)
    return frames


def bounced_frames(
    params: Params,
    server: PostgresServer,
    targets: dict[str, str],
    progress: Progress,
    profiler: Profiler,
    transaction_bouncer: PgBouncer,
) -> dict[str, pd.DataFrame]:
    """Parts 1-4 (those selected) through the PgBouncers at ``targets`` and directly."""
    duration = float(params.duration_s)
    frames: dict[str, pd.DataFrame] = {}
    if params.ran("connect"):
        n = int(params.connect_samples)
        progress(f"connect latency: {n} per variant")
        frames["connect"] = measure_connect(targets, n, seed=params.seed)
    if params.ran("requests"):
        frames |= connect_per_request_frames(targets, params.request_threads, duration, progress)
    if params.ran("storm"):
        storm = StormSettings(
            n_clients=int(params.storm_clients),
            outage_s=float(params.storm_outage_s),
            retry_delay_s=params.retry_delay_ms / 1000,
        )
        frames |= storm_frames(
            server,
            targets,
            storm,
            repetitions=int(params.storm_repetitions),
            server_login_retry_s=params.server_login_retry_s,
            progress=progress,
        )
    if params.ran("pool"):
        frames |= pool_frames(
            targets,
            params.pool_workers,
            params.pool_size,
            duration,
            progress,
            params.scripts,
            seed=params.seed,
            profiler=profiler,
            bouncers={TRANSACTION: transaction_bouncer},
        )
    return frames


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
        frames = run(params, server, progress)
        return Results(frames=frames, server=server.describe())

    def headlines(self, results: Results) -> pd.DataFrame:
        from perfkit.pgbouncer.analysis import headlines

        return headlines(results.frames)

    def headline_specs(self) -> Mapping[str, HeadlineSpec]:
        from perfkit.pgbouncer.analysis import SPEC

        return SPEC

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.pgbouncer.plots import (
            plot_latency,
            plot_modes,
            plot_storm,
            plot_throughput,
            plot_where,
        )
        from perfkit.serverprofile.plots import CAPTION as WHERE_CAPTION

        if "connect" in results.frames:
            yield (
                "Connect latency (ECDF, medians with 95 % intervals)",
                plot_latency(results["connect"]),
            )
        if "throughput" in results.frames:
            pool = results.get("pool")
            yield (
                "Throughput with 95 % intervals",
                plot_throughput(
                    results["throughput"], pool if pool is not None else pd.DataFrame()
                ),
            )
        if "storm_backends" in results.frames:
            yield (
                "Reconnect storm: server backends and attempts",
                plot_storm(results["storm_backends"], results["storm_attempts"]),
            )
        if "mode_servers" in results.frames:
            yield (
                "Session vs transaction mode: server connections",
                plot_modes(results["mode_servers"]),
            )
        where = plot_where(results.frames)
        if where is not None:
            yield f"{WHERE_CAPTION}: server wait events, direct vs PgBouncer", where

    def conclusions(self, results: Results) -> str:
        from perfkit.pgbouncer.conclusions import conclusions

        skipped = [stage for stage in STAGES if not results.ran(stage)]
        return conclusions(results.frames, not_measured=skipped)


LAB = PgBouncerLab()
