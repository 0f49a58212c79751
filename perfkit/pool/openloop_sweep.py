"""The open-loop stage of the pool lab: offered rates per pool size, pgbench beside, the knee.

:func:`open_loop_sweep` offers each rate to a fixed pool of each size
(:func:`perfkit.pool.openloop.run_open_loop`) and, right after, the same rate
to pgbench ``--rate`` with as many connections
(:func:`perfkit.pool.pgbench_rate.run_pgbench_rate`); one row per run, frame
``open_loop`` (``loop="open"``, ``client`` = ``"pool"`` or ``"pgbench"``).

Rates are given (``offered_rates``) or fractions of the closed-loop
throughput the size sweep measured at that pool size (:func:`default_rates`).

:func:`find_knee` (pure) gives, per client and pool size, the knee as defined
by :data:`KNEE_RULE`; :func:`label_closed` marks the closed-loop frames
``loop="closed"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perfkit.pool.openloop import OpenLoad, run_open_loop
from perfkit.pool.pgbench_rate import run_pgbench_rate
from perfkit.pool.settings import PSYCOPG_DEFAULTS, PoolSettings, Query
from perfkit.pool.sweeps import aggregate_size, cpu_row
from perfkit.postgres.cpu import CpuMeter

#: Completions must reach this share of the requests scheduled for a rate to be sustained.
SUSTAINED_SHARE = 0.95
KNEE_RULE = (
    "a rate is sustained when the p99 latency (from intended start) stayed within the "
    f"latency limit and at least {SUSTAINED_SHARE:.0%} of the scheduled requests completed "
    "(medians over repeats); the knee is the highest sustained rate below the first two "
    "consecutive rates that were not (a single miss between sustained rates is taken for "
    "noise and counted in failed_below)"
)
#: Closed-loop frames: each worker sends its next request when the previous one is back.
CLOSED_FRAMES = ("runs", "requests", "stats", "events", "pgbench", "pgbench_compare", "multiproc")
KNEE_COLUMNS = (
    "loop",
    "client",
    "connections",
    "knee_rps",
    "knee_p99_ms",
    "rates_tried",
    "failed_below",
    "limit_ms",
)


def open_pool(size: int) -> PoolSettings:
    """The fixed pool the open-loop stage offers its load to (the review's 3 s acquire timeout)."""
    return PSYCOPG_DEFAULTS.replace(name=f"open-{size}", min_size=size, max_size=size, timeout=3.0)


def default_rates(runs: pd.DataFrame, size: int, fractions: Sequence[float]) -> list[float]:
    """``fractions`` of the closed-loop throughput at pool size ``size`` (best over worker
    counts; the largest size swept when ``size`` was not), rounded to whole requests/s."""
    agg = aggregate_size(runs)
    pooled = agg[agg["pooled"].astype(bool)]
    at = pooled[pooled["max_size"] == size]
    if at.empty:
        at = pooled[pooled["max_size"] == pooled["max_size"].max()]
    capacity = float(at["throughput_rps"].max())
    return sorted({max(1.0, float(round(f * capacity))) for f in fractions})


@dataclass(frozen=True, kw_only=True)
class OpenStage:
    """What the open-loop stage runs: shapes shared by every rate and size."""

    sizes: tuple[int, ...]
    duration_s: int
    arrivals: str
    latency_limit_ms: float
    threads: int
    mix: tuple[Query, ...]
    pgbench: bool
    bindir: str | None = None
    repeats: int = 1
    seed: int = 0


def open_loop_sweep(
    server: Any,
    stage: OpenStage,
    rates: Callable[[int], Sequence[float]],
    *,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every (repeat, size, rate): the pool, then pgbench at the same rate and connections."""
    rows = []
    for r in range(stage.repeats):
        for size in stage.sizes:
            for rate in rates(size):
                if progress is not None:
                    progress(f"open loop: pool {size}, {rate:g} req/s offered, repeat {r}")
                tags = {"repeat": r, "size": size}
                rows.append(tags | _pool_run(server, stage, size, rate, seed=stage.seed + r))
                if stage.pgbench:
                    rows.append(tags | _pgbench_run(server, stage, size, rate, seed=stage.seed + r))
    return pd.DataFrame(rows)


def _pool_run(server: Any, stage: OpenStage, size: int, rate: float, seed: int) -> dict[str, Any]:
    load = OpenLoad(
        rate=rate,
        duration=float(stage.duration_s),
        arrivals=stage.arrivals,
        latency_limit_ms=stage.latency_limit_ms,
        threads=stage.threads,
        mix=stage.mix,
        seed=seed,
    )
    meter = CpuMeter(server)
    result = run_open_loop(server.dsn, open_pool(size), load, cpu=meter)
    return result.row() | cpu_row(meter)


def _pgbench_run(server: Any, stage: OpenStage, size: int, rate: float, seed: int) -> dict:
    return run_pgbench_rate(
        server,
        mix=stage.mix,
        clients=size,
        rate=rate,
        latency_limit_ms=stage.latency_limit_ms,
        duration_s=stage.duration_s,
        seed=seed,
        bindir=stage.bindir,
    )


def knee_of(rates: Sequence[float], sustained: Sequence[bool]) -> tuple[float, int]:
    """The knee by :data:`KNEE_RULE` over increasing ``rates`` and the misses below it."""
    knee, misses, misses_below, run = math.nan, 0, 0, 0
    for rate, ok in zip(rates, sustained, strict=True):
        if ok:
            knee, misses_below, run = float(rate), misses, 0
            continue
        misses, run = misses + 1, run + 1
        if run == 2:
            break
    return knee, misses_below


def find_knee(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (client, connections): the knee by :data:`KNEE_RULE` (NaN when no rate tried
    was sustained), its p99, how many rates were tried and how many below it missed."""
    rows = []
    if frame.empty:
        return pd.DataFrame(columns=list(KNEE_COLUMNS))
    df = frame.assign(share=frame["completed"] / frame["scheduled"].clip(lower=1))
    for (client, conns), g in df.groupby(["client", "connections"], sort=True):
        per_rate = g.groupby("offered_rps")[["latency_p99_ms", "share"]].median().sort_index()
        limit = float(g["latency_limit_ms"].iloc[0])
        ok = (per_rate["latency_p99_ms"] <= limit) & (per_rate["share"] >= SUSTAINED_SHARE)
        knee, failed_below = knee_of(list(per_rate.index), list(ok))
        p99 = float(per_rate.loc[knee, "latency_p99_ms"]) if not math.isnan(knee) else math.nan
        rows.append(
            {
                "loop": "open",
                "client": client,
                "connections": int(conns),
                "knee_rps": knee,
                "knee_p99_ms": p99,
                "rates_tried": len(per_rate),
                "failed_below": failed_below,
                "limit_ms": limit,
            }
        )
    return pd.DataFrame(rows, columns=list(KNEE_COLUMNS))


def label_closed(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames with ``loop="closed"`` on every closed-loop one (:data:`CLOSED_FRAMES`)."""
    out = dict(frames)
    for name in CLOSED_FRAMES:
        df = out.get(name)
        if df is not None and "loop" not in df.columns:
            out[name] = df.assign(loop="closed")
    return out
