"""Simulation cost of the CPU-contention herd model: 10,000 clients per strategy, 1,000,000 once.

Goals (issue 22): under 1 s per named strategy at 10,000 clients, under 60 s
for one 1,000,000-client herd on a 2-core machine. Timings are printed, not
asserted (``pytest -m bench -s tests/test_contention_bench.py``).
"""

from __future__ import annotations

import statistics
import time

import pytest

from perfkit.retry.contention import EXAMPLE_COSTS, ContentionSettings, simulate_contended

pytestmark = pytest.mark.bench

NAMED = ("naive", "exponential", "full_jitter", "decorrelated_jitter")
REPEATS = 5


def herd(n: int) -> ContentionSettings:
    return ContentionSettings.from_costs(EXAMPLE_COSTS, n_clients=n, max_connections=n + 20)


@pytest.mark.parametrize("strategy", NAMED)
def test_bench_ten_thousand_clients(strategy: str) -> None:
    walls = []
    for seed in range(REPEATS):
        t = time.perf_counter()
        result = simulate_contended(strategy, herd(10_000), seed=seed)
        walls.append(time.perf_counter() - t)
    print(
        f"\n{strategy}: 10,000 clients, n={REPEATS} seeds: median {statistics.median(walls):.3f} s "
        f"(min {min(walls):.3f}, max {max(walls):.3f}); {len(result.attempt_time):,} attempts"
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("strategy", ["full_jitter", "naive"])
def test_bench_one_million_clients(strategy: str) -> None:
    t = time.perf_counter()
    result = simulate_contended(strategy, herd(1_000_000))
    wall = time.perf_counter() - t
    summary = result.summary()
    print(
        f"\n{strategy}: 1,000,000 clients (represented by {summary['represented_by']}) "
        f"in {wall:.1f} s; {summary['attempts']:,} attempts, {summary['connected']:,} connected"
    )
