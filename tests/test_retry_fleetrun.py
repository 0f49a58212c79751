"""The fleet recommendation on real herds next to the named strategies (small N, local server)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry.bigherd import BigHerdSettings, run_big_herd
from perfkit.retry.contention import RetryBudget
from perfkit.retry.fleet import recommend_for_fleet
from perfkit.retry.fleetrun import RECOMMENDED, main, run_fleet_check, scenario_from
from perfkit.retry.validation import VALIDATED_MODEL

N = 12
COSTS = {"cores": 2.0, "server_cpu_per_connect_s": 0.003, "client_cpu_per_attempt_s": 0.002,
         "connect_s": 0.004, "refused_s": 0.00015}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    settings = ServerSettings(
        backend="local", server_settings={**FAST_SERVER_SETTINGS, "max_connections": 40}
    )
    with create_server(settings) as server:
        yield server


def test_the_scenario_of_a_real_herd_carries_its_shutdown_and_the_validated_model(
    server: PostgresServer,
) -> None:
    pilot = run_big_herd(server, BigHerdSettings(strategy="naive", n_clients=N, outage_s=0.2))
    scenario = scenario_from(pilot["summary"])
    assert scenario["client_discipline"] == VALIDATED_MODEL["client_discipline"]
    assert 0 <= scenario["shutdown_s"] <= scenario["outage_s"]
    assert "n_clients" not in scenario and scenario["client_processes"] == 1


def test_the_recommendation_runs_for_real_next_to_the_named_strategies(
    server: PostgresServer,
) -> None:
    rec = recommend_for_fleet(N, COSTS, seeds=1, named=("naive",), outage_s=0.2, deadline=20.0)
    out = run_fleet_check(server, rec, reps=1, named=["naive"], outage_s=0.2, deadline=20.0)
    runs, table = out["runs"], out["table"]
    assert list(runs["strategy"]) == [RECOMMENDED, "naive"]
    assert (runs["connected"] == N).all() and (runs["left_after"] == 0).all()
    assert set(table["strategy"]) == {RECOMMENDED, "naive"} and (table["herds"] == 1).all()
    assert out["sentence"].startswith(f"for {N} clients against this server use ")
    assert "for naive" in out["sentence"] and "measured on real herds" in out["sentence"]


def test_a_recommendation_with_a_budget_runs_with_the_budget(server: PostgresServer) -> None:
    rec = recommend_for_fleet(N, COSTS, seeds=1, named=(), outage_s=0.2, deadline=20.0)
    budgeted = dataclasses.replace(rec, budget=RetryBudget(capacity=5.0, refill_per_s=50.0))
    out = run_fleet_check(server, budgeted, reps=1, named=[], outage_s=0.2, deadline=20.0)
    assert out["runs"]["retry_budget_refill_per_s"].tolist() == [50.0]


def test_the_script_refuses_an_unknown_strategy_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--clients", "10", "--strategies", "nonesuch", "--out", str(tmp_path / "f")]) == 2
    assert "nonesuch" in capsys.readouterr().err and not (tmp_path / "f").exists()
