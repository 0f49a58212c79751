"""The pool lab's measurements: every experiment against one server, in a fixed order.

:func:`run_lab` runs the size sweep, pgbench at the same worker counts, the
spike, timeout, churn and recovery experiments, the presets (and the async
twin), the processes sweep, the checkout cost and, last because they restart
the server, the long outages: all closed loop (frames marked ``loop="closed"``).
Then the open-loop stage (:mod:`perfkit.pool.openloop_sweep`, frames
``open_loop`` and ``open_knee``, ``loop="open"``) and the frames computed from
the others (:mod:`perfkit.pool.analysis`). The frames are listed in :mod:`perfkit.pool.lab`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from perfkit.lab import SAMPLES_FRAME, Progress
from perfkit.pool import analysis
from perfkit.pool.arunner import run_workload_async_blocking
from perfkit.pool.checkout import measure_checkout, summarize_checkout
from perfkit.pool.multiproc import run_processes
from perfkit.pool.openloop_sweep import default_rates, find_knee, label_closed, open_loop_sweep
from perfkit.pool.pgbench import pgbench_sweep
from perfkit.pool.reference import compare_with_pgbench
from perfkit.pool.result import Action
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import NO_POOL, PSYCOPG_DEFAULTS, REVIEW, PoolSettings
from perfkit.pool.sweeps import (
    Case,
    SweepResult,
    best_size,
    churn_cases,
    long_outage_cases,
    long_outage_frame,
    preset_cases,
    recovery_cases,
    run_cases,
    size_cases,
    spike_cases,
    timeout_cases,
)
from perfkit.pool.workload_setup import prepared
from perfkit.postgres.settings import FAST_SERVER_SETTINGS, ServerSettings
from perfkit.serverprofile import overhead
from perfkit.serverprofile.profiler import Profiler
from perfkit.serverprofile.sampler import WaitSampler

if TYPE_CHECKING:
    from perfkit.pool.lab import Params


def server_settings(backend: str, dsn: str | None = None) -> ServerSettings:
    """The lab's server: the fast throwaway defaults plus room for many connections
    (an external server, at ``dsn``, keeps its own settings)."""
    if backend == "external":
        return ServerSettings(backend=backend, dsn=dsn)
    return ServerSettings(
        backend=backend, server_settings={**FAST_SERVER_SETTINGS, "max_connections": 200}
    )


def best_preset(size: int) -> PoolSettings:
    """The best size found, as a fixed pool with the review's acquire timeout."""
    return PSYCOPG_DEFAULTS.replace(name="best-found", min_size=size, max_size=size, timeout=3.0)


def _cases_progress(progress: Progress | None, label: str) -> Callable[[int, Case], None] | None:
    if progress is None:
        return None
    return lambda i, c: progress(f"{label} #{i}: {c.settings.name}, {c.workload.workers} workers")


@dataclass
class Sweeps:
    """Runs lists of cases on one server and keeps every result, in order."""

    server: Any
    progress: Progress | None = None
    parts: list[SweepResult] = field(default_factory=list)

    def run(self, label: str, cases: list[Case], **kw: Any) -> SweepResult:
        result = run_cases(
            self.server.dsn,
            cases,
            progress=_cases_progress(self.progress, label),
            server=self.server,
            **kw,
        )
        self.parts.append(result)
        return result

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


def run_lab(
    server: Any, params: Params, *, progress: Progress | None = None
) -> dict[str, pd.DataFrame]:
    """Run every experiment of the lab on ``server`` and return its frames.

    The workload's schema (schema/seed files, pgbench's tables) is made first
    and dropped at the end, whatever happens.
    """
    with prepared(server, params.workload_plan, bindir=params.pgbench_bindir) as ready:
        frames = _run_lab(ready, params, progress=progress)
    frames["workload"] = workload_frame(params)
    return frames


def workload_frame(params: Params) -> pd.DataFrame:
    """One row per script: name, weight, file, whether it writes; schema/seed files, builtin."""
    plan = params.workload_plan
    made = ", ".join(
        [*plan.schema, *plan.seed_data] + ([f"pgbench -i {plan.builtin}"] if plan.builtin else [])
    )
    return pd.DataFrame(
        [
            {
                "script": q.name,
                "weight": q.weight,
                "file": q.script.where if q.script is not None else "",
                "writes": bool(q.script is not None and q.script.writes),
                "schema": made,
            }
            for q in params.mix
        ]
    )


def _run_lab(
    server: Any, params: Params, *, progress: Progress | None = None
) -> dict[str, pd.DataFrame]:
    sweeps = Sweeps(server, progress)
    wl = params.base_workload
    cases = size_cases(params.pool_sizes, params.worker_counts, wl, repeats=params.size_repeats)
    with Profiler.for_server(server) as profiler:
        size = sweeps.run("size", cases, runner=profiled(profiler))
    pgbench = run_pgbench(server, params, progress=progress)
    run_load_experiments(sweeps, params)
    run_presets(sweeps, params, size.runs)
    multiproc = run_multiproc(server, params, progress=progress)
    sweeps.say("checkout cost")
    checkout = measure_checkout(server.dsn, n=params.checkout_n)
    open_frames = {}
    if params.open_loop:
        open_frames = run_open_loop_stage(server, params, size.runs, progress=progress)
    if params.long_outage:  # last: it restarts the server
        run_long_outages(sweeps, params)
    frames = {
        name: analysis.fill_tags(df)
        for name, df in SweepResult.concat(sweeps.parts).frames().items()
    }
    frames |= {"checkout": checkout, "checkout_summary": summarize_checkout(checkout)}
    frames["pgbench"] = pgbench
    if not pgbench.empty:
        frames["pgbench_compare"] = compare_with_pgbench(
            frames["runs"], frames["requests"], pgbench, seed=params.seed
        )
    frames["multiproc"] = multiproc
    frames |= open_frames
    frames |= profiler.frames()
    frames["sampler_overhead"] = run_sampler_overhead(server, params, progress=progress)
    return derive_frames(label_closed(frames), params)


def run_open_loop_stage(
    server: Any, params: Params, runs: pd.DataFrame, *, progress: Progress | None = None
) -> dict[str, pd.DataFrame]:
    """Offered rates per pool size, pgbench --rate beside them: ``open_loop`` and ``open_knee``."""
    fixed = params.offered_rates

    def rates(size: int) -> list[float]:
        if fixed is not None:
            return sorted(float(r) for r in fixed)
        return default_rates(runs, size, params.open_fractions)

    frame = open_loop_sweep(server, params.open_stage, rates, progress=progress)
    return {"open_loop": frame, "open_knee": find_knee(frame)}


def size_variant(settings: PoolSettings) -> str:
    """The size sweep's variant in the profile frames: ``max_size`` or ``no pool``."""
    return str(settings.effective_max_size) if settings.pooled else "no pool"


def profiled(profiler: Profiler, runner: Callable[..., Any] = run_workload) -> Callable[..., Any]:
    """``runner`` with the server profiled per run (variant: max_size); the pool's final
    ``get_stats()`` is kept with the server counters (source ``pool``)."""

    def run(dsn: str, settings: PoolSettings, workload: Any, **kw: Any) -> Any:
        variant = size_variant(settings)
        with profiler.measure(variant, workers=workload.workers, pool=settings.name) as rec:
            result = runner(dsn, settings, workload, **kw)
            rec.add("pool", result.final_stats)
        return result

    return run


def run_sampler_overhead(
    server: Any, params: Params, *, progress: Progress | None = None
) -> pd.DataFrame:
    """Throughput with and without the wait sampler: ``params.sampler_pairs`` pairs of
    interleaved windows in one fixed-pool run at the largest size and worker count
    (empty when 0)."""
    if not params.sampler_pairs:
        return pd.DataFrame(columns=overhead.OVERHEAD_COLUMNS)
    size = max(params.pool_sizes)
    settings = PoolSettings(name="overhead", min_size=size, max_size=size, timeout=30.0)
    wl = params.base_workload.replace(workers=max(params.worker_counts))
    if progress is not None:
        progress(f"sampler overhead: {params.sampler_pairs} pairs of {OVERHEAD_WINDOW_S} s windows")
    return sampler_overhead(server.dsn, settings, wl, params.sampler_pairs)


#: Length of each window with or without the sampler in :func:`sampler_overhead`.
OVERHEAD_WINDOW_S = 0.25


def sampler_overhead(
    dsn: str, settings: PoolSettings, workload: Any, pairs: int, window_s: float = OVERHEAD_WINDOW_S
) -> pd.DataFrame:
    """One run of ``workload`` whose wait sampler is paused and resumed in windows of
    ``window_s`` (AB, BA, ... :func:`perfkit.serverprofile.overhead.schedule`); the
    completions per second of each window (``overhead.OVERHEAD_COLUMNS``)."""
    plan = overhead.schedule(pairs, window_s)
    end_s = plan[-1][0] + window_s
    with WaitSampler(dsn) as sampler:
        sampler.pause()

        def switch(on: bool) -> Callable[[str], None]:
            return lambda _app: sampler.resume() if on else sampler.pause()

        actions = tuple(
            Action(at_s=at, name=f"sampler {'on' if on else 'off'}", fn=switch(on))
            for at, on in plan
        )
        result = run_workload(
            dsn, settings, workload.replace(duration=end_s + 0.05), actions=actions
        )
    ok = result.requests[result.requests["ok"]]
    ends = ok["start_s"] + ok["total_ms"] / 1000
    starts = result.events.sort_values("t_s")["t_s"].to_numpy()
    return overhead.window_throughput(ends, starts, end_s, pairs)


def run_pgbench(server: Any, params: Params, *, progress: Progress | None = None) -> pd.DataFrame:
    """pgbench at the size sweep's worker counts (empty when ``params.pgbench`` is off)."""
    if not params.pgbench:
        return pd.DataFrame()
    return pgbench_sweep(
        server,
        params.worker_counts,
        params.base_workload.mix,
        params.pgbench_duration_s,
        seed=params.seed,
        bindir=params.pgbench_bindir,
        progress=progress,
        variables=params.base_workload.variables,
    )


def run_load_experiments(sweeps: Sweeps, params: Params) -> None:
    """Spike, timeout and churn runs, and recovery (when asked for)."""
    wl = params.base_workload
    top = max(params.pool_sizes)
    spike_wl = wl.replace(workers=params.spike_workers)
    sweeps.run("spike", spike_cases(params.spike_min_sizes, top, spike_wl))
    timeout_wl = wl.replace(workers=max(params.worker_counts))
    sweeps.run("timeout", timeout_cases(params.timeouts_s, params.max_waitings, timeout_wl))
    churn_wl = wl.replace(workers=4, duration=max(params.duration_s * 2, 1.0), think_time=0.005)
    sweeps.run("churn", churn_cases(params.churn_pairs_s, churn_wl))
    if params.recovery:
        # Long enough for psycopg_pool's reconnect backoff (1 s, 2 s, 4 s...) after a restart.
        rec_s = max(params.duration_s * 3, 2.5 if params.quick else 8.0)
        rec_wl = wl.replace(workers=4, duration=rec_s, think_time=0.002)
        cases = recovery_cases(
            sweeps.server.dsn,
            rec_wl,
            server=sweeps.server,
            base=REVIEW,
            fault_at=0.3,
            down_s=0.5,
        )
        sweeps.run("recovery", cases)


def run_presets(sweeps: Sweeps, params: Params, size_runs: pd.DataFrame) -> None:
    """The review, psycopg defaults, the best size found and no pool; the review async too."""
    preset_wl = params.base_workload.replace(workers=params.preset_workers)
    at = params.preset_workers if params.preset_workers in params.worker_counts else None
    best_n, _ = best_size(size_runs, workers=at)
    presets = [REVIEW, PSYCOPG_DEFAULTS, best_preset(best_n), NO_POOL]
    sweeps.run("presets", preset_cases(presets, preset_wl))
    if params.async_compare:
        async_cases = [Case(experiment="async", settings=REVIEW, workload=preset_wl)]
        sweeps.run("async", async_cases, runner=run_workload_async_blocking)


def run_long_outages(sweeps: Sweeps, params: Params) -> None:
    """The server down for seconds under each reconnect_timeout, per pool mode."""
    # The workers mostly think, so the requests frame stays small over long runs.
    out_wl = params.base_workload.replace(workers=4, think_time=0.01)
    for mode in params.outage_modes:
        cases = long_outage_cases(
            sweeps.server,
            out_wl,
            base=REVIEW,
            reconnect_timeouts=params.reconnect_timeouts_s,
            outages=params.outages_s,
            fault_at=0.3,
            watch_s=params.outage_watch_s,
            mode=mode,
        )
        runner = run_workload if mode == "sync" else run_workload_async_blocking
        sweeps.run("long outage", cases, runner=runner)


def run_multiproc(server: Any, params: Params, *, progress: Progress | None = None) -> pd.DataFrame:
    """The processes sweep: P processes x (pool of S, W threads), one row per P."""
    size = params.process_pool_size
    settings = PoolSettings(name="per-process", min_size=size, max_size=size, timeout=30.0)
    wl = params.base_workload.replace(workers=params.process_workers)
    rows = []
    for n in params.process_counts:
        if progress is not None:
            progress(f"multiproc: {n} processes x (pool {size}, {params.process_workers} threads)")
        result = run_processes(server.dsn, settings, wl, processes=n, server=server)
        rows.append(result.summary())
    return pd.DataFrame(rows)


def derive_frames(frames: dict[str, pd.DataFrame], params: Params) -> dict[str, pd.DataFrame]:
    """The measured frames plus those computed from them: outages, samples, findings."""
    frames["long_outage"] = long_outage_frame(frames["runs"])
    frames[SAMPLES_FRAME] = analysis.samples_frame(frames["runs"], frames["requests"])
    found = analysis.findings(frames, preset_workers=params.preset_workers, seed=params.seed)
    frames[analysis.FINDINGS_FRAME] = pd.DataFrame([found])
    return frames
