"""The pool-settings lab as the notebook runs it: parameters -> plan -> frames -> conclusions.

:class:`Params` holds the notebook's parameters (their defaults live only there;
``None`` means "the default for this mode": ``quick`` mode is small enough for a
papermill run in the test suite); :class:`LabConfig` resolves them into concrete
sweep ranges. :func:`run_lab` runs every experiment against one server and
returns the tidy frames; :func:`conclusions` computes the headline figures from
those frames; :data:`LAB` exposes it all through the lab contract (:mod:`perfkit.lab`).

Frames (names and columns are documented in ``notes/pool.md`` too):

``runs``      one summary row per run (``experiment`` in size, spike, timeout,
              churn, recovery, presets, async; see :meth:`WorkloadResult.summary`).
``requests``  every request of every run (:mod:`perfkit.pool.records` columns +
              ``case``, ``experiment``, ``pool``, ``workers`` and tags).
``stats``     pool ``get_stats()`` samples over time, same tags.
``events``    injected faults (terminate, take_down, bring_up), same tags.
``checkout``  per-checkout times with and without check; ``checkout_summary``.
``pgbench``   pgbench at the size sweep's worker counts (:mod:`perfkit.pool.pgbench`).
``pgbench_compare`` per connection count: the pool (best size at that many workers)
              vs pgbench, each with n and a 95 % interval, and their ratio.
``multiproc`` one row per process count (:mod:`perfkit.pool.multiproc`): P x S
              connections vs max_connections, bookkeeping, throughput, CPU.
``long_outage`` per (mode, reconnect_timeout, outage): time to the first success
              once the server is back (``runs`` holds these runs too).
``samples``   the per-bin / per-request samples behind the headlines (lab contract).
``conclusions`` one row of headline figures.

Every run's CPU is measured: ``runs`` has ``client_cpu_pct``, ``server_cpu_pct``
(% of one core over the workers' window), ``cores`` and ``client_bound``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit import headlines, validate
from perfkit.errors import ConfigError
from perfkit.lab import SAMPLE_COLUMNS, SAMPLES_FRAME, LabParams, Results, param
from perfkit.pool.arunner import run_workload_async_blocking
from perfkit.pool.checkout import measure_checkout, summarize_checkout
from perfkit.pool.conclusions import conclusion_text, conclusions
from perfkit.pool.multiproc import run_processes
from perfkit.pool.pgbench import find_pgbench, pgbench_sweep
from perfkit.pool.reference import case_bins, compare_with_pgbench
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import NO_POOL, PSYCOPG_DEFAULTS, REVIEW, PoolSettings, Workload
from perfkit.pool.sweeps import (
    Case,
    SweepResult,
    aggregate_size,
    best_size,
    churn_cases,
    cores,
    default_sizes,
    long_outage_cases,
    long_outage_frame,
    preset_cases,
    recovery_cases,
    rule_of_thumb,
    run_cases,
    size_cases,
    spike_cases,
    timeout_cases,
)
from perfkit.postgres.settings import FAST_SERVER_SETTINGS, ServerSettings
from perfkit.stats import mean_interval, quantile_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _full_sizes() -> tuple[int, ...]:
    """1..4x cores plus (cores*2)+1"""
    return tuple(default_sizes(cores()))


def _quick_sizes() -> tuple[int, ...]:
    """1, 2, rule, 4x cores"""
    n = cores()
    return tuple(sorted({1, 2, rule_of_thumb(n), 4 * n}))


def _rule_size() -> int:
    """(cores*2)+1"""
    return rule_of_thumb(cores())


FULL_CHURN = ((600.0, 3600.0), (10.0, 60.0), (1.0, 2.0), (0.2, 0.5))
OUTAGE_MODES = ("sync", "async")
QUICK_CHURN = (FULL_CHURN[0], FULL_CHURN[-1])


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The pool notebook's parameters: the only place their defaults and help live."""

    duration_s: float | None = param(None, "seconds per run", full=1.0, quick=0.4)
    think_ms: float = param(0.0, "mean think time between a worker's requests")
    worker_counts: tuple[int, ...] | None = param(None, "", full=(4, 16, 32), quick=(4, 16))
    size_repeats: int | None = param(None, "size-sweep repeats (medians)", full=2, quick=1)
    pool_sizes: tuple[int, ...] | None = param(None, "", full=_full_sizes, quick=_quick_sizes)
    spike_min_sizes: tuple[int, ...] | None = param(None, "", full=(0, 1, 4), quick=(0, 4))
    spike_workers: int | None = param(None, "", full=32, quick=16)
    timeouts_s: tuple[float, ...] | None = param(
        None, "acquire timeouts under overload", full=(0.05, 0.5, 3.0), quick=(0.05, 1.0)
    )
    max_waitings: tuple[int, ...] | None = param(
        None, "0: unbounded queue", full=(0, 8), quick=(0, 4)
    )
    churn_pairs_s: tuple[tuple[float, float], ...] | None = param(
        None,
        "[[max_idle, max_lifetime], ...]",
        full=FULL_CHURN,
        quick=(FULL_CHURN[0], FULL_CHURN[3]),
    )
    checkout_n: int | None = param(None, "checkouts timed per check setting", full=3000, quick=300)
    preset_workers: int | None = param(None, "workers for the presets", full=16, quick=8)
    recovery: bool = param(True, "kill backends / restart the server during runs")
    async_compare: bool = param(True, "also run the review preset through AsyncConnectionPool")
    pgbench: bool = param(True, "run pgbench at the same connection counts as a reference")
    pgbench_bindir: str | None = param(None, "directory holding pgbench; None: search like initdb")
    process_counts: tuple[int, ...] | None = param(
        None, "worker processes, each with its own pool", full=(1, 2, 4), quick=(1, 2)
    )
    process_pool_size: int | None = param(None, "fixed pool size in each process", full=_rule_size)
    process_workers: int | None = param(None, "threads per process", full=16, quick=8)
    long_outage: bool = param(True, "take the server down for seconds: does the pool come back?")
    outages_s: tuple[float, ...] | None = param(
        None, "server down for (s)", full=(5.0,), quick=(3.0,)
    )
    reconnect_timeouts_s: tuple[float, ...] | None = param(
        None, "pool reconnect_timeout (s)", full=(2.0, 30.0), quick=(2.0,)
    )
    outage_modes: tuple[str, ...] | None = param(
        None, '"sync" / "async" pool', full=OUTAGE_MODES, quick=("sync",)
    )
    outage_watch_s: float | None = param(
        None, "run on after the server is back (s)", full=4.0, quick=2.0
    )

    def check(self) -> None:
        LabConfig.from_params(self)


def server_settings(backend: str) -> ServerSettings:
    """The lab's server: the fast throwaway defaults plus room for many connections."""
    return ServerSettings(
        backend=backend, server_settings={**FAST_SERVER_SETTINGS, "max_connections": 200}
    )


def _ints(name: str, values: Sequence[Any]) -> tuple[int, ...]:
    return validate.numbers(f"parameter {name!r}", values, integers=True)


def _floats(name: str, values: Sequence[Any]) -> tuple[float, ...]:
    found = validate.numbers(f"parameter {name!r}", values, strict=True)
    return tuple(float(v) for v in found)


@dataclass(frozen=True, kw_only=True)
class LabConfig:
    """Concrete sweep ranges for one lab run (validated; built by :meth:`from_params`)."""

    quick: bool
    seed: int
    duration_s: float
    think_ms: float
    worker_counts: tuple[int, ...]
    size_repeats: int
    pool_sizes: tuple[int, ...]
    spike_min_sizes: tuple[int, ...]
    spike_workers: int
    timeouts_s: tuple[float, ...]
    max_waitings: tuple[int, ...]
    churn_pairs_s: tuple[tuple[float, float], ...]
    checkout_n: int
    preset_workers: int
    recovery: bool
    async_compare: bool
    pgbench: bool
    pgbench_bindir: str | None
    process_counts: tuple[int, ...]
    process_pool_size: int
    process_workers: int
    long_outage: bool
    outages_s: tuple[float, ...]
    reconnect_timeouts_s: tuple[float, ...]
    outage_modes: tuple[str, ...]
    outage_watch_s: float

    @property
    def pgbench_duration_s(self) -> int:
        """pgbench's ``--time`` (whole seconds): the pool runs' duration, rounded up, >= 1."""
        return max(1, math.ceil(self.duration_s))

    @classmethod
    def from_params(cls, p: Params) -> LabConfig:
        """Resolve ``None`` parameters to this mode's defaults and check every value.

        Raises ConfigError naming the parameter; nothing has started yet.
        """
        pairs = []
        for pair in p.churn_pairs_s:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ConfigError(
                    f"parameter 'churn_pairs_s' needs [max_idle, max_lifetime] pairs, got {pair!r}"
                )
            a, b = _floats("churn_pairs_s", list(pair))
            pairs.append((a, b))
        cfg = cls(
            quick=p.quick,
            seed=p.seed,
            duration_s=float(p.duration_s),
            think_ms=float(p.think_ms),
            worker_counts=_ints("worker_counts", p.worker_counts),
            size_repeats=int(p.size_repeats),
            pool_sizes=_ints("pool_sizes", p.pool_sizes),
            spike_min_sizes=_ints("spike_min_sizes", p.spike_min_sizes),
            spike_workers=int(p.spike_workers),
            timeouts_s=_floats("timeouts_s", p.timeouts_s),
            max_waitings=_ints("max_waitings", p.max_waitings),
            churn_pairs_s=tuple(pairs),
            checkout_n=int(p.checkout_n),
            preset_workers=int(p.preset_workers),
            recovery=p.recovery,
            async_compare=p.async_compare,
            pgbench=p.pgbench,
            pgbench_bindir=p.pgbench_bindir,
            process_counts=_ints("process_counts", p.process_counts),
            process_pool_size=int(p.process_pool_size),
            process_workers=int(p.process_workers),
            long_outage=p.long_outage,
            outages_s=_floats("outages_s", p.outages_s),
            reconnect_timeouts_s=_floats("reconnect_timeouts_s", p.reconnect_timeouts_s),
            outage_modes=tuple(p.outage_modes),
            outage_watch_s=float(p.outage_watch_s),
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        """Cross-field checks, using the settings classes' own validation."""
        if min(self.pool_sizes) < 1:
            raise ConfigError(f"parameter 'pool_sizes' must be >= 1, got {self.pool_sizes!r}")
        if min(self.spike_min_sizes) < 0:
            raise ConfigError("parameter 'spike_min_sizes' must be >= 0")
        if max(self.spike_min_sizes) > max(self.pool_sizes):
            raise ConfigError(
                "parameter 'spike_min_sizes' must not exceed the largest pool size "
                f"({max(self.pool_sizes)})"
            )
        if self.size_repeats < 1:
            raise ConfigError(f"parameter 'size_repeats' must be >= 1, got {self.size_repeats}")
        if self.checkout_n < 1:
            raise ConfigError(f"parameter 'checkout_n' must be >= 1, got {self.checkout_n}")
        for w in (*self.worker_counts, self.spike_workers, self.preset_workers):
            self.workload(workers=w)  # Workload raises ConfigError on bad values
        if self.process_counts and min(self.process_counts) < 1:
            raise ConfigError(f"parameter 'process_counts' must be >= 1, got {self.process_counts}")
        if self.process_pool_size < 1:
            raise ConfigError(
                f"parameter 'process_pool_size' must be >= 1, got {self.process_pool_size}"
            )
        if self.process_workers < 1:
            raise ConfigError(
                f"parameter 'process_workers' must be >= 1, got {self.process_workers}"
            )
        for mode in self.outage_modes:
            if mode not in OUTAGE_MODES:
                raise ConfigError(f"parameter 'outage_modes' takes {OUTAGE_MODES}, got {mode!r}")
        if self.outage_watch_s <= 0:
            raise ConfigError(f"parameter 'outage_watch_s' must be > 0, got {self.outage_watch_s}")
        for rt in self.reconnect_timeouts_s:
            PSYCOPG_DEFAULTS.replace(reconnect_timeout=rt)  # ConfigError on bad values
        if self.pgbench:
            find_pgbench(self.pgbench_bindir)  # BackendUnavailable before any server starts

    def workload(self, **changes: Any) -> Workload:
        """The base workload of this lab (duration, think time, seed) with ``changes``."""
        try:
            base = Workload(
                workers=1,
                duration=self.duration_s,
                think_time=self.think_ms / 1000.0,
                seed=self.seed,
                stats_interval=0.02 if self.quick else 0.05,
            )
            return base.replace(**changes)
        except ConfigError as exc:
            raise ConfigError(f"lab parameters: {exc}") from None

    def best_preset(self, size: int) -> PoolSettings:
        """The best size found, as a fixed pool with the review's acquire timeout."""
        return PSYCOPG_DEFAULTS.replace(
            name="best-found", min_size=size, max_size=size, timeout=3.0
        )


Progress = Callable[[str], None]


def _cases_progress(progress: Progress | None, label: str) -> Callable[[int, Case], None] | None:
    if progress is None:
        return None
    return lambda i, c: progress(f"{label} #{i}: {c.settings.name}, {c.workload.workers} workers")


def run_lab(
    server: Any, cfg: LabConfig, *, progress: Progress | None = None
) -> dict[str, pd.DataFrame]:
    """Run every experiment of the lab on ``server`` and return its frames."""
    dsn = server.dsn
    parts: list[SweepResult] = []

    def run(label: str, cases: list[Case], **kw: Any) -> SweepResult:
        r = run_cases(dsn, cases, progress=_cases_progress(progress, label), server=server, **kw)
        parts.append(r)
        return r

    wl = cfg.workload()
    size = run("size", size_cases(cfg.pool_sizes, cfg.worker_counts, wl, repeats=cfg.size_repeats))
    pgbench = pd.DataFrame()
    if cfg.pgbench:
        pgbench = pgbench_sweep(
            server,
            cfg.worker_counts,
            wl.mix,
            cfg.pgbench_duration_s,
            seed=cfg.seed,
            bindir=cfg.pgbench_bindir,
            progress=progress,
        )
    top = max(cfg.pool_sizes)
    run("spike", spike_cases(cfg.spike_min_sizes, top, wl.replace(workers=cfg.spike_workers)))
    run(
        "timeout",
        timeout_cases(cfg.timeouts_s, cfg.max_waitings, wl.replace(workers=max(cfg.worker_counts))),
    )
    churn_wl = wl.replace(workers=4, duration=max(cfg.duration_s * 2, 1.0), think_time=0.005)
    run("churn", churn_cases(cfg.churn_pairs_s, churn_wl))
    if cfg.recovery:
        # Long enough for psycopg_pool's reconnect backoff (1 s, 2 s, 4 s...) after a restart.
        rec_s = max(cfg.duration_s * 3, 2.5 if cfg.quick else 8.0)
        rec_wl = wl.replace(workers=4, duration=rec_s, think_time=0.002)
        run(
            "recovery",
            recovery_cases(dsn, rec_wl, server=server, base=REVIEW, fault_at=0.3, down_s=0.5),
        )
    preset_wl = wl.replace(workers=cfg.preset_workers)
    at = cfg.preset_workers if cfg.preset_workers in cfg.worker_counts else None
    best_n, _ = best_size(size.runs, workers=at)
    presets = [REVIEW, PSYCOPG_DEFAULTS, cfg.best_preset(best_n), NO_POOL]
    run("presets", preset_cases(presets, preset_wl))
    if cfg.async_compare:
        async_cases = [Case(experiment="async", settings=REVIEW, workload=preset_wl)]
        run("async", async_cases, runner=run_workload_async_blocking)
    multiproc = run_multiproc(server, cfg, progress=progress)
    if progress is not None:
        progress("checkout cost")
    checkout = measure_checkout(dsn, n=cfg.checkout_n)
    if cfg.long_outage:  # last: it restarts the server
        # The workers mostly think, so the requests frame stays small over long runs.
        out_wl = wl.replace(workers=4, think_time=0.01)
        for mode in cfg.outage_modes:
            cases = long_outage_cases(
                server,
                out_wl,
                base=REVIEW,
                reconnect_timeouts=cfg.reconnect_timeouts_s,
                outages=cfg.outages_s,
                fault_at=0.3,
                watch_s=cfg.outage_watch_s,
                mode=mode,
            )
            runner = run_workload if mode == "sync" else run_workload_async_blocking
            run("long outage", cases, runner=runner)
    sweep = SweepResult.concat(parts)
    frames = {name: fill_tags(df) for name, df in sweep.frames().items()}
    frames["checkout"] = checkout
    frames["checkout_summary"] = summarize_checkout(checkout)
    frames["pgbench"] = pgbench
    if not pgbench.empty:
        frames["pgbench_compare"] = compare_with_pgbench(
            frames["runs"], frames["requests"], pgbench, seed=cfg.seed
        )
    frames["multiproc"] = multiproc
    frames["long_outage"] = long_outage_frame(frames["runs"])
    frames[SAMPLES_FRAME] = headline_samples(frames["runs"], frames["requests"])
    frames["conclusions"] = pd.DataFrame([conclusions(frames, cfg)])
    return frames


def run_multiproc(server: Any, cfg: LabConfig, *, progress: Progress | None = None) -> pd.DataFrame:
    """The processes sweep: P processes x (pool of S, W threads), one row per P."""
    settings = PoolSettings(
        name="per-process",
        min_size=cfg.process_pool_size,
        max_size=cfg.process_pool_size,
        timeout=30.0,
    )
    wl = cfg.workload(workers=cfg.process_workers)
    rows = []
    for n in cfg.process_counts:
        if progress is not None:
            progress(
                f"multiproc: {n} processes x (pool {cfg.process_pool_size}, "
                f"{cfg.process_workers} threads)"
            )
        result = run_processes(server.dsn, settings, wl, processes=n, server=server)
        rows.append(result.summary())
    return pd.DataFrame(rows)


def headline_samples(runs: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """The samples behind the headlines: per-bin throughput and per-request wait of the
    review preset (``naive``) and the best size found (``improved``)."""
    parts = []
    presets = runs[runs["experiment"] == "presets"]
    for variant, name in (("naive", "review"), ("improved", "best-found")):
        cases = presets.loc[presets["pool"] == name, "case"]
        if cases.empty:
            continue
        bins = case_bins(requests, runs, cases)
        waits = requests.loc[requests["case"].isin(cases), "wait_ms"].dropna().to_numpy()
        for metric, unit, values in (
            ("pool_throughput", "rps", bins),
            ("pool_wait_p99", "ms", waits),
        ):
            parts.append(
                pd.DataFrame(
                    {
                        "metric": metric,
                        "variant": variant,
                        "unit": unit,
                        "value": np.asarray(values, dtype=float),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    return pd.concat(parts, ignore_index=True)[list(SAMPLE_COLUMNS)]


#: Tag columns only some experiments set, and their value for the others.
TAG_DEFAULTS: dict[str, Any] = {"rule": False, "fault": ""}


def fill_tags(df: pd.DataFrame) -> pd.DataFrame:
    """Give experiment-specific tag columns a value in every row (so CSV types stay clean)."""
    df = df.copy()
    for col, default in TAG_DEFAULTS.items():
        if col in df.columns:
            filled = df[col].astype(object).where(df[col].notna(), default)
            df[col] = filled.astype(type(default))
    return df


#: Columns of the per-experiment tables the notebook shows.
TABLE_COLUMNS: dict[str, list[str]] = {
    "size": [
        "pool",
        "workers",
        "max_size",
        "rule",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p95_ms",
        "wait_p99_ms",
        "sql_p50_ms",
        "client_cpu_pct",
        "server_cpu_pct",
        "client_bound",
        "errors",
        "leaked",
        "n_repeats",
    ],
    "spike": [
        "pool",
        "min_size",
        "max_size",
        "throughput_rps",
        "wait_p99_ms",
        "wait_max_ms",
        "max_pool_size",
        "max_requests_waiting",
    ],
    "timeout": [
        "pool",
        "workers",
        "requests",
        "successes",
        "n_PoolTimeout",
        "n_TooManyRequests",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p99_ms",
        "wait_max_ms",
    ],
    "churn": [
        "pool",
        "connections_opened",
        "reconnects_per_min",
        "total_p50_ms",
        "total_p99_ms",
        "total_max_ms",
        "throughput_rps",
    ],
    "recovery": [
        "pool",
        "fault",
        "check",
        "requests",
        "errors",
        "n_query_errors",
        "n_acquire_errors",
        "recovery_s",
        "service_gap_s",
        "faults_done_s",
        "ok_after_faults_s",
        "total_max_ms",
    ],
    "presets": [
        "experiment",
        "mode",
        "pool",
        "min_size",
        "max_size",
        "timeout_s",
        "check",
        "workers",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p99_ms",
        "total_p99_ms",
        "errors",
    ],
}


def table(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The summary rows of one experiment with its display columns (``presets`` adds async)."""
    wanted = ["presets", "async"] if experiment == "presets" else [experiment]
    df = aggregate_size(runs) if experiment == "size" else runs[runs["experiment"].isin(wanted)]
    cols = [c for c in TABLE_COLUMNS[experiment] if c in df.columns]
    return df[cols].round(3).reset_index(drop=True)


# -- the lab contract -------------------------------------------------------------------


class PoolLab:
    """psycopg_pool settings: size, spikes, timeouts, churn, recovery and presets."""

    name = "pool"
    title = "Connection pool settings"
    notebook = "02_pool_settings.ipynb"
    Params = Params

    def plan(self, params: Params) -> LabConfig:
        """The parameters with every ``None`` resolved: what a run measures."""
        return LabConfig.from_params(params)

    def server_settings(self, params: Params) -> ServerSettings:
        return server_settings(params.backend)

    def run(self, params: Params, server: Any, progress: Progress) -> Results:
        frames = run_lab(server, LabConfig.from_params(params), progress=progress)
        return Results(frames=frames, server=server.describe())

    def headlines(self, results: Results) -> pd.DataFrame:
        c = results["conclusions"].iloc[0].to_dict()
        return headlines.headline_frame(_headlines(c, results.samples))

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.pool import plots

        runs, n = results["runs"], int(results["conclusions"]["cores"].iloc[0])
        yield "Throughput vs pool size (x: client-bound runs)", plots.throughput_vs_size(runs, n)
        pgbench = results.get("pgbench")
        if pgbench is not None and not pgbench.empty:
            yield (
                "Throughput vs connections: the pool next to pgbench",
                plots.throughput_vs_connections(runs, pgbench),
            )
        yield "p99 wait for a connection vs pool size", plots.wait_vs_size(runs, n)
        yield "Cold burst (spike)", plots.spike(results["stats"])
        yield "Checkout cost with and without check", plots.checkout_cost(results["checkout"])
        mp = results.get("multiproc")
        if mp is not None and not mp.empty:
            yield "Throughput vs worker processes", plots.multiproc(mp, pgbench)
        lo = results.get("long_outage")
        if lo is not None and not lo.empty:
            yield "Long outages: time to the first success", plots.long_outage(lo)

    def conclusions(self, results: Results) -> str:
        return conclusion_text(results["conclusions"].iloc[0].to_dict(), results.frames)


def _interval_of(samples: pd.DataFrame, metric: str, variant: str) -> tuple[int, float, float]:
    """(n, ci_low, ci_high) of a headline from its samples: the mean over throughput bins,
    the p99 of per-request waits (seeded bootstrap); (0, NaN, NaN) without samples."""
    values = samples.loc[
        (samples["metric"] == metric) & (samples["variant"] == variant), "value"
    ].to_numpy(dtype=float)
    if values.size == 0:
        return 0, math.nan, math.nan
    est = (
        mean_interval(values, seed=1)
        if metric == "pool_throughput"
        else quantile_interval(values, 0.99, seed=1)
    )
    return est.n, est.low, est.high


def _headlines(
    c: Mapping[str, Any], samples: pd.DataFrame | None = None
) -> list[headlines.Headline]:
    """Throughput and p99 wait: the review's pool preset vs the best size found.

    ``n`` and the 95 % interval come from ``samples`` (the lab's samples frame).
    """
    if samples is None:
        samples = pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    out: list[headlines.Headline] = []
    for metric, key, unit, what in (
        ("pool_throughput", "throughput_rps", "rps", "throughput"),
        ("pool_wait_p99", "wait_p99_ms", "ms", "p99 wait for a connection"),
    ):
        for variant, preset, name in (
            ("naive", "review", "review preset"),
            ("improved", "best", "best-found"),
        ):
            value = c.get(f"{preset}_{key}")
            if isinstance(value, int | float) and math.isfinite(value):
                n, low, high = _interval_of(samples, metric, variant)
                out.append(
                    headlines.Headline(
                        metric=metric,
                        variant=variant,
                        value=float(value),
                        unit=unit,
                        label=f"{name} (max_size={c.get(f'{preset}_max_size')}, "
                        f"{c.get('preset_workers')} workers): {what}",
                        n=n,
                        ci_low=low,
                        ci_high=high,
                    )
                )
    return out


LAB = PoolLab()
