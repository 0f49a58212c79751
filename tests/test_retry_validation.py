"""The agreement table of real vs simulated herds: hand-built frames, then one small real run."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry import herd
from perfkit.retry.validation import (
    AGREEMENT_METRICS,
    agreement,
    fcfs_simulate,
    largest_agreeing_n,
    median_interval,
    run_validation,
)

METRIC = "median_connected_after_ready_s"


def _herds(strategy: str, n: int, values: list[float], metric: str = METRIC) -> pd.DataFrame:
    return pd.DataFrame(
        {"strategy": strategy, "n_clients": n, "rep": range(len(values)), metric: values}
    )


def _one(real: list[float], sim: list[float]) -> pd.Series:
    table = agreement(_herds("naive", 100, real), _herds("naive", 100, sim), metrics=[METRIC])
    assert len(table) == 1
    return table.iloc[0]


def test_medians_within_a_quarter_agree() -> None:
    row = _one([1.1, 1.2, 1.15], [1.0, 1.0, 1.0])
    assert row["real"] == pytest.approx(1.15) and row["sim"] == pytest.approx(1.0)
    assert row["ratio"] == pytest.approx(1.15)
    assert row["within_tolerance"] and row["agrees"]


def test_medians_far_apart_with_separate_intervals_disagree() -> None:
    row = _one([8.0, 9.0, 10.0], [2.0, 2.5, 3.0])
    assert not row["within_tolerance"] and not row["intervals_overlap"]
    assert not row["agrees"]


def test_overlapping_intervals_agree_even_beyond_a_quarter() -> None:
    row = _one([1.0, 2.0, 6.0], [0.5, 1.2, 1.4])
    assert row["ratio"] == pytest.approx(2.0 / 1.2)
    assert not row["within_tolerance"] and row["intervals_overlap"] and row["agrees"]


def test_few_herds_get_their_range_with_its_coverage() -> None:
    est = median_interval([3.0, 1.0, 2.0])
    assert (est["low"], est["value"], est["high"]) == (1.0, 2.0, 3.0)
    assert est["interval"] == "range" and est["coverage"] == pytest.approx(0.75)


def test_six_herds_or_more_get_the_exact_interval() -> None:
    est = median_interval([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    assert est["interval"] == "exact" and est["coverage"] == 0.95
    assert (est["low"], est["high"]) == (1.0, 6.0) and est["n"] == 6


def test_nan_herds_drop_out_of_the_metric() -> None:
    est = median_interval([1.0, math.nan, 3.0])
    assert est["n"] == 2 and est["value"] == 2.0


def test_zero_on_both_sides_agrees() -> None:
    row = _one([0.0, 0.0, 0.0], [0.0, 0.0])
    assert row["ratio"] == 1.0 and row["agrees"]


def test_a_cell_without_simulation_does_not_agree() -> None:
    table = agreement(_herds("naive", 100, [1.0]), _herds("naive", 300, [1.0]), metrics=[METRIC])
    assert math.isnan(table.iloc[0]["sim"]) and not table.iloc[0]["agrees"]


def test_one_row_per_strategy_size_and_metric() -> None:
    real = pd.concat([_herds(s, n, [1.0, 2.0]) for s in ("naive", "full_jitter") for n in (10, 20)])
    table = agreement(real, real)
    assert len(table) == 2 * 2 * len(AGREEMENT_METRICS)
    assert table.groupby(["strategy", "n_clients"]).size().eq(len(AGREEMENT_METRICS)).all()


def test_negative_tolerance_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        agreement(_herds("naive", 1, [1.0]), _herds("naive", 1, [1.0]), tolerance=-1)


def _table(agrees: dict[tuple[str, int], bool]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"strategy": s, "n_clients": n, "metric": m, "agrees": ok}
            for (s, n), ok in agrees.items()
            for m in ("median_connected_after_ready_s", "timeouts")
        ]
    )


def test_largest_agreeing_n_needs_every_strategy_to_agree() -> None:
    table = _table(
        {
            ("naive", 100): True,
            ("full_jitter", 100): True,
            ("naive", 300): True,
            ("full_jitter", 300): True,
            ("naive", 1000): False,
            ("full_jitter", 1000): True,
        }
    )
    assert largest_agreeing_n(table) == 300
    assert largest_agreeing_n(table, strategies=["full_jitter"]) == 1000


def test_largest_agreeing_n_is_none_when_nothing_agrees() -> None:
    assert largest_agreeing_n(_table({("naive", 100): False})) is None


# -- one small real validation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    settings = ServerSettings(
        backend="local", server_settings={**FAST_SERVER_SETTINGS, "max_connections": 50}
    )
    with create_server(settings) as server:
        yield server


def test_run_validation_pairs_every_real_herd_with_its_simulation(server: PostgresServer) -> None:
    costs = herd.calibrate(server, burst=10, seed=0)
    out = run_validation(
        server, ["exponential"], [10, 20], 2, fcfs_simulate, costs, outage_s=0.2, deadline=20.0
    )
    real, sim = out["real"], out["sim"]
    assert len(real) == len(sim) == 4
    assert real[["n_clients", "rep"]].values.tolist() == [[10, 0], [20, 0], [10, 1], [20, 1]]
    assert (real["connected"] == real["n_clients"]).all() and (real["left_after"] == 0).all()
    assert sim["p90_connected_after_ready_s"].notna().all()
    table = out["agreement"]
    assert set(table["n_clients"]) == {10, 20} and (table["real_n"] == 2).all()


def test_run_validation_checks_max_connections_before_running(server: PostgresServer) -> None:
    with pytest.raises(ConfigError, match="max_connections"):
        run_validation(server, ["naive"], [10, 500], 1, fcfs_simulate, {})
