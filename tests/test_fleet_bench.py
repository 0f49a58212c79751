"""Cost of the fleet search and of a simulation grid on a local Dask cluster (issue 22).

Goals: a recommendation for 1,000 clients in under ~60 s on this 2-core machine; the grid
strategies x {1,000, 10,000, 1,000,000} clients x 3 seeds spread over Dask workers. Timings
are printed, not asserted (``pytest -m bench -s tests/test_fleet_bench.py``).
"""

from __future__ import annotations

import statistics
import time

import pytest

from perfkit.retry import ContentionSettings, recommend_for_fleet, simulate_grid
from perfkit.retry.contention import EXAMPLE_COSTS

pytestmark = pytest.mark.bench

NAMED = ["naive", "exponential", "full_jitter", "decorrelated_jitter"]
REPEATS = 3


def test_bench_fleet_search_for_a_thousand_clients() -> None:
    walls, rec = [], None
    for _ in range(REPEATS):
        t = time.perf_counter()
        rec = recommend_for_fleet(1000, EXAMPLE_COSTS, max_connections=1100)
        walls.append(time.perf_counter() - t)
    assert rec is not None
    table = rec.comparison.set_index("strategy")
    assert table.loc["recommended", "objective"] <= table["objective"].min()
    print(
        f"\nfleet search, 1,000 clients, n={REPEATS}: median {statistics.median(walls):.1f} s "
        f"(min {min(walls):.1f}, max {max(walls):.1f}), {rec.evaluated} schedules\n"
        f"{rec.sentence()}"
    )


@pytest.mark.timeout(1800)
def test_bench_grid_to_a_million_clients_on_a_local_cluster() -> None:
    distributed = pytest.importorskip("distributed")

    def settings_for(n: int) -> ContentionSettings:
        return ContentionSettings.from_costs(EXAMPLE_COSTS, n_clients=n)

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        t = time.perf_counter()
        frame = simulate_grid(NAMED, [1000, 10_000, 1_000_000], 3, settings_for, client=client)
        wall = time.perf_counter() - t
    assert len(frame) == len(NAMED) * 3 * 3
    per_size = frame.groupby("n_clients")["cell_wall_s"].median()
    print(
        f"\n{len(frame)} cells on 2 workers in {wall:.1f} s "
        f"({frame['cell_wall_s'].sum():.1f} s of cell time); median cell time per size, "
        f"n=12 each: " + ", ".join(f"{n:,}: {v:.2f} s" for n, v in per_size.items())
    )
