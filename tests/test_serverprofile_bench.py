"""Benchmark: the wait sampler's cost to throughput, interleaved runs with and without it.

Run with ``python -m pytest -m bench -s tests/test_serverprofile_bench.py``. Prints the
overhead (1 - throughput with / without) with its exact 95 % interval, for the pool lab's
default mix and for ``SELECT 1`` alone (the worst case: every request is short). The goal
(issue 19) is <= 3 %; nothing is asserted about it.
"""

from __future__ import annotations

import os

import pytest

from perfkit.pool.runner import run_workload
from perfkit.pool.settings import PoolSettings, Query, Workload
from perfkit.postgres import PostgresServer
from perfkit.serverprofile import WaitSampler, analysis, overhead

pytestmark = pytest.mark.bench

PAIRS = int(os.environ.get("PERFKIT_SAMPLER_PAIRS", "12"))
DURATION_S = float(os.environ.get("PERFKIT_SAMPLER_RUN_S", "1.0"))
MIXES = {
    "default mix": None,
    "SELECT 1": (Query(name="select1", sql="SELECT 1", weight=1.0),),
}


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mix", list(MIXES))
def test_bench_sampler_overhead_on_pool_throughput(pg_server: PostgresServer, mix: str) -> None:
    settings = PoolSettings(name="overhead", min_size=8, max_size=8, timeout=30.0)
    kw = {} if MIXES[mix] is None else {"mix": MIXES[mix]}
    wl = Workload(workers=16, duration=DURATION_S, seed=0, **kw)
    rates: list[float] = []
    cpu: list[float] = []

    def once(on: bool) -> float:
        if not on:
            return float(run_workload(pg_server.dsn, settings, wl).summary()["throughput_rps"])
        with WaitSampler(pg_server.dsn) as sampler:
            tput = float(run_workload(pg_server.dsn, settings, wl).summary()["throughput_rps"])
        p = sampler.profile()
        rates.append(p.samples / p.elapsed_s)
        cpu.append(p.thread_cpu_s / p.elapsed_s)
        return tput

    pairs = overhead.interleaved(once, PAIRS)
    est = analysis.overhead(pairs)
    assert est is not None and est.n == PAIRS
    print(
        f"\n{mix}: {PAIRS} pairs of {DURATION_S:g} s runs, 16 workers, pool 8: "
        f"{analysis.overhead_sentence(pairs)} Samples per second: "
        f"{min(rates):.0f}-{max(rates):.0f} (goal 100); the sampler thread's CPU: "
        f"{1000 * min(cpu):.0f}-{1000 * max(cpu):.0f} ms per second."
    )
