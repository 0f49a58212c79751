"""The agreement table of real vs simulated herds: hand-built frames, then one small real run."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry import herd
from perfkit.retry.bigherd import BigHerdSettings, run_big_herd
from perfkit.retry.setupcost import measure_setup_costs
from perfkit.retry.validation import (
    AGREEMENT_METRICS,
    agreement,
    contended_simulate,
    fcfs_simulate,
    largest_agreeing_n,
    median_interval,
    run_validation,
)
from perfkit.retry.validation import main as validation_main

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


def test_contended_simulate_of_a_real_herd_has_the_real_summary_keys(
    server: PostgresServer,
) -> None:
    costs = measure_setup_costs(server, n=40).to_dict()
    bs = BigHerdSettings(strategy="full_jitter", n_clients=12, outage_s=0.2, deadline=20.0)
    real = {**run_big_herd(server, bs, seed=1)["summary"], "rep": 0}
    sim = contended_simulate(real, costs)
    assert set(AGREEMENT_METRICS) <= set(sim) and set(AGREEMENT_METRICS) <= set(real)
    assert sim["n_clients"] == 12 and sim["connected"] == 12
    assert sim["client_cpu_s"] > 0  # the contention model ran, with the measured client cost


def test_contended_simulate_takes_its_constants_from_the_costs_only() -> None:
    summary = {
        "strategy": "naive", "n_clients": 50, "rep": 0, "refused_s": 0.0002,
        "max_connections": 70, "loss_to_restart_s": 1.2, "outage_s": 1.0,
        "ready_after_event_s": 0.1, "hang_s": 0.0, "connect_timeout_s": 2.0, "deadline_s": 30.0,
        "notice_spread_s": 0.01, "client_processes": 1,
    }  # fmt: skip
    cheap = {"cores": 2.0, "server_cpu_per_connect_s": 0.001, "client_cpu_per_attempt_s": 0.001,
             "connect_s": 0.003, "refused_s": 0.0001}  # fmt: skip
    dear = {**cheap, "server_cpu_per_connect_s": 0.02}
    fast, slow = contended_simulate(summary, cheap), contended_simulate(summary, dear)
    assert slow["median_connected_after_ready_s"] > fast["median_connected_after_ready_s"]


def test_the_script_refuses_bad_sizes_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for sizes in ("100,abc", "0,100", ""):
        assert validation_main(["--sizes", sizes, "--out", str(tmp_path / "v")]) == 2
        assert "--sizes" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_the_script_refuses_an_unknown_strategy_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--sizes", "10", "--strategies", "naive,nonesuch", "--out", str(tmp_path / "v")]
    assert validation_main(argv) == 2
    assert "nonesuch" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_the_script_writes_csv_and_markdown_tables(tmp_path: Path) -> None:
    argv = ["--sizes", "8", "--reps", "1", "--strategies", "exponential", "--outage", "0.2",
            "--deadline", "20", "--costs-n", "40", "--out", str(tmp_path)]  # fmt: skip
    assert validation_main(argv) == 0
    table = pd.read_csv(tmp_path / "agreement.csv")
    assert set(table["metric"]) == set(AGREEMENT_METRICS) and (table["n_clients"] == 8).all()
    md = (tmp_path / "agreement.md").read_text()
    assert "| exponential | 8 | median reconnect after ready (s) |" in md
    real = pd.read_csv(tmp_path / "real.csv")
    assert real["load_1m_before"].notna().all() and (real["left_after"] == 0).all()
