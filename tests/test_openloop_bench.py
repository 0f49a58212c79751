"""Benchmark: open-loop p99 of the pool's runner vs pgbench --rate, and a planted stall.

Run with ``python -m pytest -m bench -s tests/test_openloop_bench.py``; the
figures are printed (medians over runs with exact 95 % order-statistic
intervals), never asserted. On one local server, with C connections:

1. the knee of the pool's open-loop runner (:data:`~perfkit.pool.openloop_sweep.KNEE_RULE`)
   on the pool lab's default mix, from rates that are fractions of the closed-loop
   throughput;
2. at 50 % and 80 % of that knee, RUNS runs each, interleaved: the pool's open-loop
   p99, pgbench ``--rate`` p99 (same script, rate, connections), and closed-loop p99
   (C workers on a pool of C, think time set so they offer about the same rate);
3. a planted stall (1 % of requests ``pg_sleep(0.05)``, 99 % ``SELECT 1``) at 50 % and
   80 % of the knee on C connections, and at 50 % on one connection: open-loop p99 and
   p99.9 vs closed-loop p50 and p99 (closed loop: think time C / rate).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from perfkit.pool.measure import server_settings
from perfkit.pool.openloop import OpenLoad, run_open_loop
from perfkit.pool.openloop_conclusions import p99_agree
from perfkit.pool.openloop_sweep import find_knee, open_pool
from perfkit.pool.pgbench_rate import run_pgbench_rate
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import DEFAULT_MIX, Query, Workload
from perfkit.postgres import create_server
from perfkit.stats import exact_median_interval

pytestmark = pytest.mark.bench
C = 4
DURATION_S = 3
RUNS = 6  # the fewest runs an exact 95 % interval of the median comes from
KNEE_REPEATS = 3
LIMIT_MS = 50.0
THREADS = 32
FRACTIONS = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
STALL_MIX = (
    Query(name="fast", sql="SELECT 1", weight=99),
    Query(name="stall50ms", sql="SELECT pg_sleep(0.05)", weight=1),
)


def _open(dsn: str, rate: float, mix: tuple[Query, ...], seed: int, conns: int = C) -> dict:
    load = OpenLoad(
        rate=rate,
        duration=float(DURATION_S),
        arrivals="poisson",
        latency_limit_ms=LIMIT_MS,
        threads=THREADS,
        mix=mix,
        seed=seed,
    )
    return run_open_loop(dsn, open_pool(conns), load).row()


def _closed(
    dsn: str, mix: tuple[Query, ...], think_s: float, seed: int, conns: int = C
) -> pd.DataFrame:
    wl = Workload(workers=conns, duration=float(DURATION_S), mix=mix, think_time=think_s, seed=seed)
    result = run_workload(dsn, open_pool(conns), wl)
    return result.requests[result.requests["ok"]]


def _fmt(values: list[float]) -> str:
    est = exact_median_interval(values)
    if est is None:
        return f"{sorted(values)} (n={len(values)} runs)"
    return f"{est.value:.2f} [{est.low:.2f}, {est.high:.2f}] ms (n={est.n} runs)"


def _knee(dsn: str, capacity: float) -> float:
    """The knee from KNEE_REPEATS sweeps over FRACTIONS x capacity (medians per rate)."""
    rows = [
        _open(dsn, round(f * capacity), DEFAULT_MIX, seed=r) | {"repeat": r}
        for r in range(KNEE_REPEATS)
        for f in FRACTIONS
    ]
    frame = pd.DataFrame(rows)
    for rate, g in frame.groupby("offered_rps"):
        print(
            f"  knee sweep: {rate:.0f} offered -> p99 per repeat "
            f"{[round(v, 1) for v in g['latency_p99_ms']]} ms, completed/scheduled "
            f"{[f'{c}/{s}' for c, s in zip(g['completed'], g['scheduled'], strict=True)]}"
        )
    return float(find_knee(frame)["knee_rps"].iloc[0])


def _compare_at(server: object, share: float, knee: float, capacity: float) -> None:
    """RUNS interleaved runs of the pool, pgbench --rate and the closed loop at share x knee."""
    dsn = server.dsn  # type: ignore[attr-defined]
    rate = round(share * knee)
    think = max(C / rate - C / capacity, 0.0)
    pool, bench, closed = [], [], []
    for i in range(RUNS):
        pool.append(_open(dsn, rate, DEFAULT_MIX, seed=i))
        bench.append(
            run_pgbench_rate(
                server,  # type: ignore[arg-type]
                mix=DEFAULT_MIX,
                clients=C,
                rate=rate,
                latency_limit_ms=LIMIT_MS,
                duration_s=DURATION_S,
                seed=i,
            )
        )
        requests = _closed(dsn, DEFAULT_MIX, think, seed=i)
        closed.append(float(requests["total_ms"].quantile(0.99)))
    p_pool = [r["latency_p99_ms"] for r in pool]
    p_bench = [r["latency_p99_ms"] for r in bench]
    a, b = exact_median_interval(p_pool), exact_median_interval(p_bench)
    assert a is not None and b is not None
    gap = abs(a.value - b.value) / max(a.value, b.value)
    overlap = a.low <= b.high and b.low <= a.high
    per_run = sum(p99_agree(pd.Series(x), pd.Series(y)) for x, y in zip(pool, bench, strict=True))
    verdict = "agree" if gap <= 0.25 or overlap else "differ"
    print(f"{share:.0%} of knee = {rate} req/s offered, {C} connections:")
    print(f"  open loop, pool    p99 {_fmt(p_pool)}")
    print(f"  open loop, pgbench p99 {_fmt(p_bench)}")
    print(f"  gap {gap:.0%}, intervals overlap: {overlap} -> {verdict} (within 25 % or overlap)")
    print(f"  closed loop ({C} workers, think {think * 1000:.2f} ms) p99 {_fmt(closed)}")
    print(f"  runs whose p99 intervals (n = requests) agree: {per_run}/{RUNS}")
    print(f"  achieved req/s, pool: {_fmt([r['achieved_rps'] for r in pool])}".replace(" ms", ""))


def _stall(dsn: str, rate: int, conns: int) -> None:
    """The planted stall at ``rate`` on ``conns`` connections: open-loop p99 / p99.9 vs
    closed-loop p50 / p99 (closed loop: think time set so it offers about ``rate``)."""
    p99_open, p999_open, p50_closed, p99_closed = [], [], [], []
    for i in range(RUNS):
        row = _open(dsn, rate, STALL_MIX, seed=i, conns=conns)
        p99_open.append(row["latency_p99_ms"])
        p999_open.append(row["latency_p999_ms"])
        closed = _closed(dsn, STALL_MIX, conns / rate, seed=i, conns=conns)["total_ms"]
        p50_closed.append(float(closed.quantile(0.5)))
        p99_closed.append(float(closed.quantile(0.99)))
    shown = sum(v >= 50 for v in p99_open)
    print(f"planted stall (1 % pg_sleep(0.05)), {rate} req/s offered, {conns} connection(s):")
    print(f"  open loop p99    {_fmt(p99_open)} (>= 50 ms in {shown}/{RUNS} runs)")
    print(f"  open loop p99.9  {_fmt(p999_open)}")
    print(f"  closed loop p50  {_fmt(p50_closed)}")
    print(f"  closed loop p99  {_fmt(p99_closed)}")


def test_bench_open_loop_p99_vs_pgbench_rate_and_a_planted_stall() -> None:
    with create_server(server_settings("local")) as server:
        sat = _closed(server.dsn, DEFAULT_MIX, 0.0, seed=0)
        capacity = len(sat) / DURATION_S
        print(f"\nclosed-loop throughput, {C} workers on a pool of {C}: {capacity:.0f} req/s")
        knee = _knee(server.dsn, capacity)
        print(f"open-loop knee (pool, {C} connections, limit {LIMIT_MS:g} ms): {knee:.0f} req/s")
        assert not math.isnan(knee), "no rate tried was sustained"
        for share in (0.5, 0.8):
            _compare_at(server, share, knee, capacity)
        for share in (0.5, 0.8):
            _stall(server.dsn, round(share * knee), C)
        _stall(server.dsn, round(0.5 * knee), 1)
