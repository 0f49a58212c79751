"""Simulation grids (perfkit.retry.simsweep) here and on a real dask.distributed cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.retry import ContentionSettings, SimSettings, simulate_grid

STRATEGIES = ["naive", "full_jitter"]
SIZES = [50, 200]
VOLATILE = ["sim_elapsed_s", "cell_wall_s"]


def settings_for(n: int) -> SimSettings:
    return SimSettings(n_clients=n, outage_s=0.5, capacity_per_s=400.0)


@pytest.fixture(scope="module")
def cluster_client() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


COSTS = {
    "cores": 2.0,
    "server_cpu_per_connect_s": 0.003,
    "client_cpu_per_attempt_s": 0.0023,
    "connect_s": 0.0039,
    "refused_s": 0.00013,
}


def contended_for(n: int) -> ContentionSettings:
    return ContentionSettings.from_costs(COSTS, n_clients=n, outage_s=0.5)


def _stable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=VOLATILE).reset_index(drop=True)


def test_a_grid_has_one_row_per_strategy_size_and_seed() -> None:
    frame = simulate_grid(STRATEGIES, SIZES, 2, settings_for)
    cells = set(zip(frame["strategy"], frame["n_clients"], frame["seed"], strict=True))
    assert cells == {(s, n, seed) for s in STRATEGIES for n in SIZES for seed in (0, 1)}
    assert len(frame) == len(cells)
    assert (frame["connected"] <= frame["n_clients"]).all()


def test_the_same_seeds_give_the_same_rows_locally_and_on_a_cluster(cluster_client: Any) -> None:
    local = simulate_grid(STRATEGIES, SIZES, [3, 4], settings_for)
    remote = simulate_grid(STRATEGIES, SIZES, [3, 4], settings_for, client=cluster_client)
    pd.testing.assert_frame_equal(_stable(local), _stable(remote))


def test_the_contention_model_gives_the_same_rows_on_a_cluster(cluster_client: Any) -> None:
    local = simulate_grid(STRATEGIES, SIZES, 2, contended_for)
    remote = simulate_grid(STRATEGIES, SIZES, 2, contended_for, client=cluster_client)
    assert "wasted_server_cpu_s" in local.columns  # the contention model's rows
    pd.testing.assert_frame_equal(_stable(local), _stable(remote))


def test_each_cell_is_a_task_on_the_clusters_workers(cluster_client: Any) -> None:
    from distributed import get_task_stream

    with get_task_stream(cluster_client) as stream:
        simulate_grid(STRATEGIES, [50], 2, settings_for, client=cluster_client)
    cells = [t for t in stream.data if "run_cell" in str(t["key"])]
    assert len(cells) == len(STRATEGIES) * 2
    assert {t["worker"] for t in cells} <= set(cluster_client.scheduler_info()["workers"])


def test_an_address_opens_and_closes_its_own_client(cluster_client: Any) -> None:
    address = cluster_client.scheduler.address
    frame = simulate_grid(["naive"], [50], 1, settings_for, client=address)
    assert len(frame) == 1


def test_bad_cells_fail_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="unknown retry strategy"):
        simulate_grid(["naive", "nope"], SIZES, 1, settings_for)
    with pytest.raises(ConfigError, match="size must be <= 1000000"):
        simulate_grid(["naive"], [2_000_000], 1, settings_for)
    with pytest.raises(ConfigError, match="n_clients=7"):
        simulate_grid(["naive"], [7], 1, lambda n: settings_for(n + 1))


def test_perfkit_simulate_runs_the_grid_on_a_scheduler(
    cluster_client: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from perfkit.cli import main

    out = tmp_path / "grid.csv"
    address = cluster_client.scheduler.address
    argv = ["simulate", "--strategies", "naive,full_jitter", "--sizes", "50,100", "--seeds", "2"]
    assert main([*argv, "--scheduler", address, "--output", str(out)]) == 0
    assert "8 cells in" in capsys.readouterr().out
    rows = pd.read_csv(out)
    local = simulate_grid(
        ["naive", "full_jitter"], [50, 100], 2, lambda n: SimSettings(n_clients=n)
    )
    assert rows["attempts"].tolist() == local["attempts"].tolist()


def test_perfkit_simulate_with_costs_runs_the_contention_model(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from perfkit.cli import main

    costs = tmp_path / "costs.yaml"
    costs.write_text(yaml.safe_dump(COSTS))
    out = tmp_path / "grid.csv"
    argv = ["simulate", "--strategies", "full_jitter", "--sizes", "200", "--seeds", "1"]
    assert main([*argv, "--costs", str(costs), "--outage-s", "0.5", "--output", str(out)]) == 0
    assert "model: contention" in capsys.readouterr().out
    rows = pd.read_csv(out)
    local = simulate_grid(["full_jitter"], [200], 1, contended_for)
    assert rows["attempts"].tolist() == local["attempts"].tolist()


def test_perfkit_simulate_rejects_sizes_that_are_not_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from perfkit.cli import main

    assert main(["simulate", "--sizes", "1000,lots"]) == 2
    assert "--sizes must be a comma-separated list of ints" in capsys.readouterr().err
