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


def herd(n: int, discipline: str = "ps") -> ContentionSettings:
    return ContentionSettings.from_costs(
        EXAMPLE_COSTS, n_clients=n, max_connections=n + 20, client_discipline=discipline
    )


@pytest.mark.parametrize("strategy", NAMED)
def test_bench_ten_thousand_clients(strategy: str) -> None:
    walls, cpus = [], []
    for seed in range(REPEATS):
        t, c = time.perf_counter(), time.process_time()
        result = simulate_contended(strategy, herd(10_000), seed=seed)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(
        f"\n{strategy}: 10,000 clients, n={REPEATS} seeds: wall median "
        f"{statistics.median(walls):.3f} s (min {min(walls):.3f}, max {max(walls):.3f}), "
        f"CPU median {statistics.median(cpus):.3f} s; {len(result.attempt_time):,} attempts"
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("strategy", "discipline"), [*((name, "ps") for name in NAMED), ("full_jitter", "fifo")]
)
def test_bench_one_million_clients(strategy: str, discipline: str) -> None:
    t, c = time.perf_counter(), time.process_time()
    result = simulate_contended(strategy, herd(1_000_000, discipline))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    summary = result.summary()
    print(
        f"\n{strategy} ({discipline} loops): 1,000,000 clients "
        f"(represented by {summary['represented_by']}) "
        f"in {wall:.1f} s wall, {cpu:.1f} s CPU; {summary['attempts']:,} attempts, "
        f"{summary['connected']:,} connected"
    )
