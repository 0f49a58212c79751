"""Sweeps over pool settings: each one a list of cases run one after another.

A case is (tags, pool settings, workload, actions). :func:`run_cases` runs
them and stacks the results into four tidy frames: ``runs`` (one summary row
per case, tags as columns, with the CPU the client and the server used while
the workers ran: ``client_cpu_pct``, ``server_cpu_pct``, ``cores``,
``client_bound``), ``requests``, ``stats`` and ``events`` (tagged with
``case``). The builders below (``size_cases``, ``spike_cases``, ...) only make
case lists, so they are pure and unit-tested without a server.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from perfkit.errors import ConfigError
from perfkit.pool.result import Action, WorkloadResult
from perfkit.pool.runner import run_workload
from perfkit.pool.server_processes import terminate_server_processes
from perfkit.pool.settings import NO_POOL, PoolSettings, Query, Workload
from perfkit.pool.summary import first_ok_after, first_ok_end_after, recovery_time, service_gap
from perfkit.postgres.cpu import CLIENT_BOUND_PCT, CpuMeter

Runner = Callable[..., WorkloadResult]
FRAME_NAMES = ("runs", "requests", "stats", "events")
#: CPU columns of ``runs`` (% of one core over the workers' window; see perfkit.postgres.cpu).
CPU_COLUMNS = ("client_cpu_pct", "server_cpu_pct", "cores", "client_bound")


@dataclass(frozen=True, kw_only=True)
class Case:
    """One run of a sweep: what to run and the labels to file it under."""

    experiment: str
    settings: PoolSettings
    workload: Workload
    tags: dict[str, Any] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """Stacked frames of several runs (``case`` numbers tie them together)."""

    runs: pd.DataFrame
    requests: pd.DataFrame
    stats: pd.DataFrame
    events: pd.DataFrame

    def frames(self, prefix: str = "") -> dict[str, pd.DataFrame]:
        return {f"{prefix}{k}": getattr(self, k) for k in ("runs", "requests", "stats", "events")}

    @staticmethod
    def concat(results: Iterable[SweepResult]) -> SweepResult:
        results = list(results)
        offset = 0
        parts: dict[str, list[pd.DataFrame]] = {
            k: [] for k in ("runs", "requests", "stats", "events")
        }
        for r in results:
            for k in parts:
                df = getattr(r, k).copy()
                if "case" in df:
                    df["case"] = df["case"] + offset
                parts[k].append(df)
            offset += len(r.runs)
        return SweepResult(**{k: pd.concat(v, ignore_index=True) for k, v in parts.items()})


def cores() -> int:
    """CPU cores of this machine (the base of the pool-size rule of thumb)."""
    return os.cpu_count() or 1


def rule_of_thumb(n_cores: int) -> int:
    """PostgreSQL wiki / HikariCP rule: connections = (cores * 2) + effective spindles (1)."""
    return n_cores * 2 + 1


def default_sizes(n_cores: int, factor: int = 4) -> list[int]:
    """Pool sizes 1 .. factor x cores, always including the rule-of-thumb size."""
    sizes = set(range(1, factor * n_cores + 1)) | {rule_of_thumb(n_cores)}
    return sorted(sizes)


def run_cases(
    dsn: str,
    cases: Sequence[Case],
    *,
    runner: Runner = run_workload,
    progress: Callable[[int, Case], None] | None = None,
    server: Any = None,
) -> SweepResult:
    """Run every case in order and stack the frames.

    Each run's CPU is measured (:class:`~perfkit.postgres.cpu.CpuMeter`, over
    the workers' window): this process's, and ``server``'s where it can be read
    (NaN otherwise, e.g. for an external DSN or across a restart).
    """
    runs, requests, stats, events = [], [], [], []
    for i, case in enumerate(cases):
        if progress is not None:
            progress(i, case)
        meter = CpuMeter(server)
        result = runner(dsn, case.settings, case.workload, actions=case.actions, cpu=meter)
        tags = {"case": i, "experiment": case.experiment} | case.tags
        row = tags | result.summary() | cpu_row(meter)
        if "fault_at_s" in case.tags:
            row["recovery_s"] = recovery_time(result.requests, case.tags["fault_at_s"])
            row["service_gap_s"] = service_gap(result.requests, case.tags["fault_at_s"])
            back = float(result.events["end_s"].max()) if not result.events.empty else math.nan
            row["faults_done_s"] = back
            row["ok_after_faults_s"] = first_ok_after(result.requests, back)
            row["first_ok_after_up_s"] = first_ok_end_after(result.requests, back)
        runs.append(row)
        framed = result.tagged(**tags)
        requests.append(framed["requests"])
        stats.append(framed["stats"])
        events.append(framed["events"])
    return SweepResult(
        runs=pd.DataFrame(runs),
        requests=pd.concat(requests, ignore_index=True) if requests else pd.DataFrame(),
        stats=pd.concat(stats, ignore_index=True) if stats else pd.DataFrame(),
        events=pd.concat(events, ignore_index=True) if events else pd.DataFrame(),
    )


def cpu_row(meter: CpuMeter) -> dict[str, Any]:
    """The :data:`CPU_COLUMNS` of a meter's reading (NaN / False when it never stopped)."""
    usage = meter.usage
    if usage is None:
        nan = math.nan
        return {
            "client_cpu_pct": nan,
            "server_cpu_pct": nan,
            "cores": cores(),
            "client_bound": False,
        }
    return {
        "client_cpu_pct": usage.client_cpu_pct,
        "server_cpu_pct": usage.server_cpu_pct,
        "cores": usage.cores,
        "client_bound": bool(usage.client_bound),
    }


# -- case builders -----------------------------------------------------------


def size_cases(
    sizes: Sequence[int],
    worker_counts: Sequence[int],
    workload: Workload,
    *,
    base: PoolSettings | None = None,
    no_pool: bool = True,
    repeats: int = 1,
) -> list[Case]:
    """Fixed-size pools (min = max = size) at each worker count, plus a no-pool baseline.

    With ``repeats`` > 1 the whole grid is run again (tag ``repeat``), so slow
    drifts of a shared machine spread over every point; see :func:`aggregate_size`.
    """
    base = base or PoolSettings(name="size", timeout=30.0)
    rule = rule_of_thumb(cores())
    cases = []
    for r in range(repeats):
        for w in worker_counts:
            wl = workload.replace(workers=w, seed=workload.seed + r)
            for size in sizes:
                s = base.replace(name=f"size={size}", min_size=size, max_size=size)
                tags = {"rule": size == rule, "repeat": r}
                cases.append(Case(experiment="size", settings=s, workload=wl, tags=tags))
            if no_pool:
                tags = {"rule": False, "repeat": r}
                cases.append(Case(experiment="size", settings=NO_POOL, workload=wl, tags=tags))
    return cases


def aggregate_size(runs: pd.DataFrame) -> pd.DataFrame:
    """Size-sweep rows reduced to one per (workers, pool): the median of every number.

    Adds ``n_repeats``; keeps ``pool``, ``pooled``, ``rule``, ``experiment``;
    ``client_bound`` is the median client CPU against the same threshold as a run's.
    """
    df = runs[runs["experiment"] == "size"]
    keys = ["workers", "pool"]
    numeric = [
        c
        for c in df.select_dtypes("number").columns
        if c not in (*keys, "case", "repeat") and df[c].dtype != bool
    ]
    grouped = df.groupby(keys, sort=False)
    out = grouped[numeric].median()
    for c in numeric:
        if pd.api.types.is_integer_dtype(df[c]):
            out[c] = out[c].round().astype(df[c].dtype)
    flags = grouped[["pooled", "rule", "experiment"]].first()
    out = out.join(flags)
    out["n_repeats"] = grouped.size()
    if "client_cpu_pct" in out:
        out["client_bound"] = out["client_cpu_pct"] >= CLIENT_BOUND_PCT
    return out.reset_index().sort_values(["workers", "pooled", "max_size"]).reset_index(drop=True)


def spike_cases(
    min_sizes: Sequence[int],
    max_size: int,
    workload: Workload,
    *,
    idle_before: float = 0.5,
) -> list[Case]:
    """Cold burst: a pool holding ``min_size`` idle connections, then all workers at once."""
    wl = workload.replace(start_delay=idle_before)
    return [
        Case(
            experiment="spike",
            settings=PoolSettings(name=f"min={m}", min_size=m, max_size=max_size, timeout=30.0),
            workload=wl,
        )
        for m in min_sizes
    ]


#: A slow statement that makes a small pool the bottleneck (for timeout / max_waiting).
SLOW_MIX: tuple[Query, ...] = (Query(name="sleep20ms", sql="SELECT pg_sleep(0.02)"),)


def timeout_cases(
    timeouts: Sequence[float],
    max_waitings: Sequence[int],
    workload: Workload,
    *,
    max_size: int = 2,
) -> list[Case]:
    """An overloaded small pool (slow queries, many workers): each timeout x max_waiting."""
    wl = workload.replace(mix=SLOW_MIX)
    return [
        Case(
            experiment="timeout",
            settings=PoolSettings(
                name=f"timeout={t:g},max_waiting={mw}",
                min_size=max_size,
                max_size=max_size,
                timeout=t,
                max_waiting=mw,
            ),
            workload=wl,
        )
        for t in timeouts
        for mw in max_waitings
    ]


def churn_cases(
    lifetimes: Sequence[tuple[float, float]],
    workload: Workload,
    *,
    min_size: int = 1,
    max_size: int = 4,
) -> list[Case]:
    """Each (max_idle, max_lifetime) pair: how often connections are replaced, what it costs."""
    return [
        Case(
            experiment="churn",
            settings=PoolSettings(
                name=f"idle={idle:g},life={life:g}",
                min_size=min_size,
                max_size=max_size,
                max_idle=idle,
                max_lifetime=life,
                timeout=30.0,
            ),
            workload=workload,
        )
        for idle, life in lifetimes
    ]


def kill_server_processes_action(dsn: str, at_s: float) -> Action:
    """An action that ``pg_terminate_backend``s all of the run's connections at ``at_s``."""
    return Action(at_s=at_s, name="terminate", fn=lambda app: terminate_server_processes(dsn, app))


def restart_actions(server: Any, at_s: float, down_s: float) -> tuple[Action, Action]:
    """Take the server down at ``at_s`` and bring it back (waiting) ``down_s`` later."""
    return (
        Action(at_s=at_s, name="take_down", fn=lambda _app: server.take_down()),
        Action(at_s=at_s + down_s, name="bring_up", fn=lambda _app: server.bring_up(wait=True)),
    )


def recovery_cases(
    dsn: str,
    workload: Workload,
    *,
    server: Any = None,
    base: PoolSettings,
    fault_at: float,
    down_s: float = 0.5,
    faults: Sequence[str] = ("terminate", "restart"),
) -> list[Case]:
    """With and without check: kill the pool's server processes; (given ``server``) restart it."""
    cases = []
    for fault in faults:
        if fault == "terminate":
            actions: tuple[Action, ...] = (kill_server_processes_action(dsn, fault_at),)
        elif fault == "restart":
            if server is None:
                continue
            actions = restart_actions(server, fault_at, down_s)
        else:
            raise ConfigError(f"unknown fault {fault!r}; use 'terminate' or 'restart'")
        for check in (False, True):
            cases.append(
                Case(
                    experiment="recovery",
                    settings=base.replace(name=f"{fault},check={check}", check=check),
                    workload=workload,
                    tags={"fault": fault, "fault_at_s": fault_at},
                    actions=actions,
                )
            )
    return cases


def long_outage_cases(
    server: Any,
    workload: Workload,
    *,
    base: PoolSettings,
    reconnect_timeouts: Sequence[float],
    outages: Sequence[float],
    fault_at: float,
    watch_s: float,
    mode: str = "sync",
) -> list[Case]:
    """The server down for each outage (seconds) under each ``reconnect_timeout``.

    After ``reconnect_timeout`` psycopg_pool gives up reconnecting a slot
    (psycopg #1315, #370 report pools that then never recover); each run goes
    on for ``watch_s`` after the server is back, to see whether and when a
    request succeeds again (``first_ok_after_up_s`` in ``runs``). ``mode`` only
    names the cases: run them with the sync or the async runner.
    """
    cases = []
    for rt in reconnect_timeouts:
        for outage in outages:
            name = f"{mode}, reconnect_timeout={rt:g}s, outage={outage:g}s"
            cases.append(
                Case(
                    experiment="long_outage",
                    settings=base.replace(name=name, reconnect_timeout=rt),
                    workload=workload.replace(duration=fault_at + outage + watch_s),
                    tags={
                        "fault": "restart",
                        "fault_at_s": fault_at,
                        "outage_s": outage,
                        "reconnect_timeout_s": rt,
                        "watch_s": watch_s,
                    },
                    actions=restart_actions(server, fault_at, outage),
                )
            )
    return cases


#: Columns of :func:`long_outage_frame`.
LONG_OUTAGE_COLUMNS = (
    "case",
    "mode",
    "pool",
    "reconnect_timeout_s",
    "outage_s",
    "fault_at_s",
    "faults_done_s",
    "first_ok_after_up_s",
    "recovered",
    "watch_s",
    "requests",
    "successes",
    "errors",
    "n_PoolTimeout",
    "service_gap_s",
    "leaked",
)


def long_outage_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per long-outage run: the setting and the time to the first success once the
    server was back (``recovered``: one came within ``watch_s``)."""
    df = runs[runs["experiment"] == "long_outage"].copy()
    if df.empty:
        return pd.DataFrame(columns=list(LONG_OUTAGE_COLUMNS))
    df["recovered"] = df["first_ok_after_up_s"].notna() & (
        df["first_ok_after_up_s"] <= df["watch_s"]
    )
    cols = [c for c in LONG_OUTAGE_COLUMNS if c in df.columns]
    return df[cols].reset_index(drop=True)


def preset_cases(presets: Sequence[PoolSettings], workload: Workload) -> list[Case]:
    """The same workload through each named preset."""
    return [Case(experiment="presets", settings=p, workload=workload) for p in presets]


def best_size(runs: pd.DataFrame, workers: int | None = None) -> tuple[int, float]:
    """The pool size with the highest median throughput in a size sweep (at ``workers``)."""
    df = aggregate_size(runs)
    df = df[df["pooled"].astype(bool)]
    if workers is not None:
        df = df[df["workers"] == workers]
    if df.empty:
        raise ConfigError("no pooled size-sweep runs to choose from (size sweep empty)")
    row = df.loc[df["throughput_rps"].idxmax()]
    return int(row["max_size"]), float(row["throughput_rps"])
