"""Benchmark: the wait sampler's cost to throughput, with and without it, interleaved.

Run with ``python -m pytest -m bench -s tests/test_serverprofile_bench.py``. Prints the
overhead (1 - throughput with / without) with its exact 95 % interval, for the pool lab's
default mix and for ``SELECT 1`` alone (the worst case: every request is short), in
pairs of 0.25 s windows of one run (the pool lab's design) and in pairs of whole runs.
The goal (issue 19) is <= 3 %; nothing is asserted about it.
"""

from __future__ import annotations

import os

import pytest

from perfkit.pool.measure import sampler_overhead
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import PoolSettings, Query, Workload
from perfkit.postgres import PostgresServer
from perfkit.serverprofile import WaitSampler, analysis, overhead

pytestmark = pytest.mark.bench

WINDOW_PAIRS = int(os.environ.get("PERFKIT_SAMPLER_WINDOW_PAIRS", "80"))
RUN_PAIRS = int(os.environ.get("PERFKIT_SAMPLER_PAIRS", "12"))
RUN_S = float(os.environ.get("PERFKIT_SAMPLER_RUN_S", "1.0"))
MIXES = {
    "default mix": None,
    "SELECT 1": (Query(name="select1", sql="SELECT 1", weight=1.0),),
}
SETTINGS = PoolSettings(name="overhead", min_size=8, max_size=8, timeout=30.0)


def _workload(mix: str, duration: float) -> Workload:
    kw = {} if MIXES[mix] is None else {"mix": MIXES[mix]}
    return Workload(workers=16, duration=duration, seed=0, **kw)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mix", list(MIXES))
def test_bench_sampler_overhead_in_interleaved_windows(pg_server: PostgresServer, mix: str) -> None:
    pairs = sampler_overhead(pg_server.dsn, SETTINGS, _workload(mix, 1.0), WINDOW_PAIRS)
    est = analysis.overhead(pairs)
    assert est is not None and est.n == WINDOW_PAIRS
    print(
        f"\n{mix}, {WINDOW_PAIRS} pairs of 0.25 s windows, 16 workers, pool 8: "
        + analysis.overhead_sentence(pairs)
    )


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("mix", list(MIXES))
def test_bench_sampler_overhead_in_interleaved_runs(pg_server: PostgresServer, mix: str) -> None:
    wl = _workload(mix, RUN_S)
    rates: list[float] = []
    cpu: list[float] = []

    def once(on: bool) -> float:
        if not on:
            return float(run_workload(pg_server.dsn, SETTINGS, wl).summary()["throughput_rps"])
        with WaitSampler(pg_server.dsn) as sampler:
            tput = float(run_workload(pg_server.dsn, SETTINGS, wl).summary()["throughput_rps"])
        p = sampler.profile()
        rates.append(p.samples / p.elapsed_s)
        cpu.append(p.cpu_s / p.elapsed_s)
        return tput

    pairs = overhead.interleaved(once, RUN_PAIRS)
    est = analysis.overhead(pairs)
    assert est is not None and est.n == RUN_PAIRS
    print(
        f"\n{mix}, {RUN_PAIRS} pairs of {RUN_S:g} s runs, 16 workers, pool 8: "
        f"{analysis.overhead_sentence(pairs)} Samples per second: "
        f"{min(rates):.0f}-{max(rates):.0f} (goal 100); the sampler process's CPU: "
        f"{1000 * min(cpu):.0f}-{1000 * max(cpu):.0f} ms per second."
    )
