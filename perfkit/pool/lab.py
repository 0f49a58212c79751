"""The pool-settings lab as the notebook runs it: parameters -> frames -> conclusions.

:class:`Params` holds the notebook's parameters (their defaults live only there;
``None`` means "the default for this mode": ``quick`` mode is small enough for a
papermill run in the test suite) and checks them. :func:`run` measures every
experiment against one server (:mod:`perfkit.pool.measure`);
:mod:`perfkit.pool.analysis` computes the findings and headlines from the
frames, :mod:`perfkit.pool.conclusions` words them and :mod:`perfkit.pool.plots`
draws them; :data:`LAB` exposes it all through the lab contract (:mod:`perfkit.lab`).

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
``open_loop`` one row per open-loop run (:mod:`perfkit.pool.openloop_sweep`):
              ``client`` (pool / pgbench --rate), ``connections``, ``offered_rps``,
              ``achieved_rps``, ``goodput_rps``, on_time/late/skipped/failed counts,
              ``latency_{p50,p90,p99,p999}_ms`` with ``_low``/``_high``/``_n`` (from
              intended start; HDR histogram, resolution in ``resolution``).
``open_knee`` per client and pool size: the knee (``KNEE_RULE``) and its p99.
``wait_profile``, ``top_statements``, ``server_counters``: where the server's time went in
              each size-sweep run (variant: max_size; :mod:`perfkit.serverprofile.profiler`).
``sampler_overhead`` throughput with and without the wait sampler: interleaved pairs of
              0.25 s windows in one run (:func:`perfkit.pool.measure.sampler_overhead`).
``samples``   the per-bin / per-request samples behind the headlines (lab contract).
``conclusions`` one row of findings (:func:`perfkit.pool.analysis.findings`).
``workload``  one row per script run (``script``, ``weight``, ``file``, ``writes``,
              ``schema``: the schema/seed files or builtin the run's schema was made from).

Every frame has ``loop``: ``"closed"`` (each worker waits for its previous response;
every experiment but one) or ``"open"`` (``open_loop``, ``open_knee``).
Every run's CPU is measured: ``runs`` has ``client_cpu_pct``, ``server_cpu_pct``
(% of one core over the workers' window), ``cores`` and ``client_bound``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Progress, Results, param
from perfkit.loopback import check_loopback
from perfkit.pool import analysis, conclusions, measure
from perfkit.pool.arrivals import ARRIVALS
from perfkit.pool.openloop_sweep import OpenStage
from perfkit.pool.pgbench import find_pgbench
from perfkit.pool.settings import PSYCOPG_DEFAULTS, Query, Workload
from perfkit.pool.sweeps import cores, default_sizes, rule_of_thumb
from perfkit.pool.workload_setup import WorkloadPlan, check_answers
from perfkit.postgres.settings import ServerSettings
from perfkit.workload import BUILTIN_SCRIPTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.headlines import HeadlineSpec


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


def _rule() -> tuple[int, ...]:
    """[(cores*2)+1]"""
    return (rule_of_thumb(cores()),)


def _open_sizes() -> tuple[int, ...]:
    """[2, (cores*2)+1]"""
    return tuple(sorted({2, rule_of_thumb(cores())}))


FULL_CHURN = ((600.0, 3600.0), (10.0, 60.0), (1.0, 2.0), (0.2, 0.5))
OUTAGE_MODES = ("sync", "async")
BACKENDS = ("auto", "docker", "local", "external")
QUICK_CHURN = (FULL_CHURN[0], FULL_CHURN[-1])


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The pool notebook's parameters: the only place their defaults and help live."""

    backend: str = param(
        "auto", '"auto" | "docker" | "local" | "external" (your server: dsn)', choices=BACKENDS
    )
    dsn: str | None = param(None, "backend external: your server (loopback or unix socket only)")
    allow_writes: bool = param(False, "external: let the run create its schema and write")
    workload: tuple[str, ...] = param(
        (), "pgbench scripts, file.sql@weight (perfkit:... shipped); []: the default mix"
    )
    schema: tuple[str, ...] = param((), "SQL files run in the run's own schema first")
    seed_data: tuple[str, ...] = param((), "SQL files run after schema (fill the tables)")
    builtin: str | None = param(
        None, "pgbench builtin on pgbench -i tables", choices=(None, *BUILTIN_SCRIPTS)
    )
    scale: int = param(1, "pgbench -i scale (builtin) and :scale in scripts")
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
    open_loop: bool = param(True, "open loop: requests arrive at offered rates, not waiting")
    open_pool_sizes: tuple[int, ...] | None = param(
        None, "open-loop pool sizes", full=_open_sizes, quick=_rule
    )
    offered_rates: tuple[float, ...] | None = param(
        None, "requests/s offered (None: open_fractions)"
    )
    open_fractions: tuple[float, ...] | None = param(
        None,
        "x closed-loop throughput",
        full=(0.3, 0.6, 0.8, 1.0, 1.2),
        quick=(0.3, 0.7, 1.1),
    )
    arrivals: str = param("poisson", '"poisson" or "fixed" (interval) arrivals, seeded')
    latency_limit_ms: float = param(50.0, "slower than this from intended start: late")
    open_duration_s: int | None = param(None, "seconds per open-loop run", full=2, quick=1)
    open_threads: int = param(32, "client threads carrying open-loop requests (max in flight)")
    sampler_pairs: int | None = param(
        None, "sampler on/off windows (pairs; 0: skip)", full=20, quick=12
    )

    @property
    def pgbench_duration_s(self) -> int:
        """pgbench's ``--time`` (whole seconds): the pool runs' duration, rounded up, >= 1."""
        return max(1, math.ceil(self.duration_s))

    @property
    def workload_plan(self) -> WorkloadPlan:
        """What the load runs: scripts, schema and seed files, builtin, scale."""
        return WorkloadPlan(
            workload=self.workload,
            schema=self.schema,
            seed_data=self.seed_data,
            builtin=self.builtin,
            scale=self.scale,
        )

    @property
    def mix(self) -> tuple[Query, ...]:
        """The scripts as a query mix (parsed once, by :meth:`check`)."""
        mix: tuple[Query, ...] = self.__dict__["_mix"]
        return mix

    @property
    def base_workload(self) -> Workload:
        """The lab's base workload (duration, think time, seed); experiments ``replace`` it."""
        return Workload(
            workers=1,
            duration=self.duration_s,
            think_time=self.think_ms / 1000.0,
            seed=self.seed,
            stats_interval=0.02 if self.quick else 0.05,
            mix=self.mix,
            variables=self.workload_plan.variables,
        )

    def derived(self) -> dict[str, Any]:
        """An external server is not restarted: no recovery or long-outage runs on it."""
        if self.backend == "external":
            return {"recovery": False, "long_outage": False}
        return {}

    def check(self) -> None:
        """Every value and cross-field rule: ConfigError naming the parameter (nothing started).

        Checked numbers are then kept as the lab reads them: floats for seconds
        and ``(max_idle, max_lifetime)`` tuples.
        """
        for name in INT_LISTS:
            validate.numbers(f"parameter {name!r}", getattr(self, name), integers=True)
        self._check_workload_files()
        self._check_server()
        floats = {name: _floats(name, getattr(self, name)) for name in FLOAT_LISTS}
        floats["churn_pairs_s"] = _churn_pairs(self.churn_pairs_s)
        self._check_sizes()
        self._check_workloads()
        self._check_processes()
        self._check_outages(floats["reconnect_timeouts_s"])
        self._check_open_loop()
        if self.pgbench:
            find_pgbench(self.pgbench_bindir)  # BackendUnavailable before any server starts
        for name in SECONDS:
            floats[name] = float(getattr(self, name))
        for name, value in floats.items():
            object.__setattr__(self, name, value)

    def _check_workload_files(self) -> None:
        """Parse every script (ScriptError naming file:line) and keep the mix."""
        for name in ("workload", "schema", "seed_data"):
            for value in getattr(self, name):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"parameter {name!r} holds file paths, got {value!r}")
        validate.integer("parameter 'scale'", self.scale, minimum=1)
        object.__setattr__(self, "_mix", self.workload_plan.mix())

    def _check_server(self) -> None:
        """``dsn`` only with the external backend (loopback only); writes need allow_writes."""
        if self.backend != "external":
            if self.dsn is not None:
                raise ConfigError("parameter 'dsn' is used only with backend = \"external\"")
            return
        if not isinstance(self.dsn, str) or not self.dsn:
            raise ConfigError(
                "backend 'external' needs parameter 'dsn' (e.g. postgresql://user@127.0.0.1/db)"
            )
        check_loopback(self.dsn)
        check_answers(self.dsn)  # BackendUnavailable before any kernel or run starts
        writes = self.workload_plan.writes()
        if writes and not self.allow_writes:
            raise ConfigError(
                "this run would write to the external server; set allow_writes = True to let it "
                "create and write: " + "; ".join(writes)
            )

    def _check_sizes(self) -> None:
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
        if self.sampler_pairs < 0:
            raise ConfigError(f"parameter 'sampler_pairs' must be >= 0, got {self.sampler_pairs}")
        if self.checkout_n < 1:
            raise ConfigError(f"parameter 'checkout_n' must be >= 1, got {self.checkout_n}")

    def _check_workloads(self) -> None:
        """Every worker count through :class:`Workload`'s own checks (ConfigError naming it)."""
        try:
            base = self.base_workload
            for w in (*self.worker_counts, self.spike_workers, self.preset_workers):
                base.replace(workers=w)
        except ConfigError as exc:
            raise ConfigError(f"lab parameters: {exc}") from None

    def _check_processes(self) -> None:
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

    def _check_open_loop(self) -> None:
        if self.open_pool_sizes and min(self.open_pool_sizes) < 1:
            raise ConfigError(
                f"parameter 'open_pool_sizes' must be >= 1, got {self.open_pool_sizes!r}"
            )
        if self.offered_rates is not None:
            _floats("offered_rates", self.offered_rates)
        _floats("open_fractions", self.open_fractions)
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"parameter 'arrivals' takes {ARRIVALS}, got {self.arrivals!r}")
        validate.number("parameter 'latency_limit_ms'", self.latency_limit_ms, strict=True)
        validate.integer("parameter 'open_duration_s'", self.open_duration_s, minimum=1)
        validate.integer("parameter 'open_threads'", self.open_threads, minimum=1)

    @property
    def open_stage(self) -> OpenStage:
        """The open-loop stage's shape (the mix is the closed-loop runs' mix)."""
        return OpenStage(
            sizes=tuple(self.open_pool_sizes),
            duration_s=self.open_duration_s,
            arrivals=self.arrivals,
            latency_limit_ms=float(self.latency_limit_ms),
            threads=self.open_threads,
            mix=self.base_workload.mix,
            pgbench=self.pgbench,
            bindir=self.pgbench_bindir,
            seed=self.seed,
        )

    def _check_outages(self, reconnect_timeouts_s: Sequence[float]) -> None:
        for mode in self.outage_modes:
            if mode not in OUTAGE_MODES:
                raise ConfigError(f"parameter 'outage_modes' takes {OUTAGE_MODES}, got {mode!r}")
        if self.outage_watch_s <= 0:
            raise ConfigError(f"parameter 'outage_watch_s' must be > 0, got {self.outage_watch_s}")
        for rt in reconnect_timeouts_s:
            PSYCOPG_DEFAULTS.replace(reconnect_timeout=rt)  # ConfigError on bad values


#: Parameters holding lists of ints, of seconds (> 0), and single seconds.
INT_LISTS = (
    "worker_counts",
    "pool_sizes",
    "spike_min_sizes",
    "max_waitings",
    "process_counts",
    "open_pool_sizes",
)
FLOAT_LISTS = ("timeouts_s", "outages_s", "reconnect_timeouts_s")
SECONDS = ("duration_s", "think_ms", "outage_watch_s")


def _floats(name: str, values: Sequence[Any]) -> tuple[float, ...]:
    found = validate.numbers(f"parameter {name!r}", values, strict=True)
    return tuple(float(v) for v in found)


def _churn_pairs(pairs: Sequence[Any]) -> tuple[tuple[float, float], ...]:
    out = []
    for pair in pairs:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise ConfigError(
                f"parameter 'churn_pairs_s' needs [max_idle, max_lifetime] pairs, got {pair!r}"
            )
        a, b = _floats("churn_pairs_s", list(pair))
        out.append((a, b))
    return tuple(out)


def run(params: Params, server: Any, progress: Progress | None = None) -> Results:
    """Every experiment of the lab on ``server``: its frames and the server's description."""
    frames = measure.run_lab(server, params, progress=progress)
    return Results(frames=frames, server=server.describe())


# -- the lab contract -------------------------------------------------------------------


class PoolLab:
    """psycopg_pool settings: size, spikes, timeouts, churn, recovery and presets."""

    name = "pool"
    title = "Connection pool settings"
    notebook = "02_pool_settings.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> ServerSettings:
        return measure.server_settings(params.backend, params.dsn)

    def run(self, params: Params, server: Any, progress: Progress) -> Results:
        return run(params, server, progress)

    def headlines(self, results: Results) -> pd.DataFrame:
        return analysis.headlines(analysis.saved_findings(results.frames), results.samples)

    def headline_specs(self) -> Mapping[str, HeadlineSpec]:
        return analysis.SPEC

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.pool import plots  # lazily: matplotlib only where figures are drawn

        return plots.figures(results.frames)

    def conclusions(self, results: Results) -> str:
        return conclusions.conclusions(analysis.saved_findings(results.frames), results.frames)


LAB = PoolLab()
