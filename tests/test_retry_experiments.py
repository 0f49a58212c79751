"""Integration specs of the retry scenarios and the herd on real local PostgreSQL servers.

Only facts are asserted (who connected, which errors were seen, that the
frames are complete), never durations: the machine is shared and noisy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry.experiments import ClientSpec, cold_start, hang, outage, specs_for, summarize
from perfkit.retry.herd import HerdSettings, calibrate, rate_frame, run_herd
from perfkit.retry.probe import LOG_CONNECTION_SETTINGS

SPECS = specs_for(["naive", "full_jitter"], connect_timeout=2.0, deadline=30.0)


def test_cold_start_clients_connect_after_the_probe_sees_the_server_launch() -> None:
    result = cold_start(ServerSettings(backend="local"), SPECS, reps=1, seed=1)
    runs = result.runs
    assert list(runs["label"]) == ["naive", "full_jitter"]
    assert runs["connected"].all()
    assert (runs["ready_at"] >= runs["event_at"]).all()
    assert runs["overshoot_s"].notna().all()
    assert set(result.attempts["label"]) == {"naive", "full_jitter"}
    assert (result.attempts.groupby("label")["outcome"].last() == "ok").all()


def test_outage_clients_are_refused_while_down_then_reconnect(
    fresh_pg_server: PostgresServer,
) -> None:
    result = outage(fresh_pg_server, SPECS, outage_s=[0.5], reps=1, seed=2)
    runs = result.runs
    assert runs["connected"].all()
    assert (runs["attempts"] >= 2).all()
    failed = result.attempts[result.attempts["outcome"] != "ok"]
    assert set(failed["error_kind"]) <= {"refused", "starting_up"}
    assert (runs["param_s"] == 0.5).all()
    assert fresh_pg_server.is_ready()


def test_hang_without_connect_timeout_waits_in_one_attempt(
    fresh_pg_server: PostgresServer,
) -> None:
    specs = [
        ClientSpec(strategy="naive", connect_timeout=None, deadline=None, label="no-timeout"),
        ClientSpec(strategy="naive", connect_timeout=1.0, label="timeout"),
    ]
    result = hang(fresh_pg_server, specs, hang_s=3.0, seed=3)
    runs = result.runs.set_index("label")
    assert runs.loc["no-timeout", "attempts"] == 1
    assert runs.loc["timeout", "attempts"] >= 2  # libpq rounds 1 s up to 2 s; 3 s hang
    timed_out = result.attempts[result.attempts["outcome"] == "timeout"]
    assert set(timed_out["label"]) == {"timeout"}
    assert runs["connected"].all()


def test_summary_has_one_row_per_scenario_and_label(fresh_pg_server: PostgresServer) -> None:
    result = outage(fresh_pg_server, SPECS, outage_s=[0.2], reps=2, seed=4)
    table = summarize(result.runs)
    assert len(table) == 2 and (table["runs"] == 2).all()
    assert not math.isnan(table["overshoot_median_s"].iloc[0])


@pytest.fixture
def herd_server() -> PostgresServer:
    settings = ServerSettings(
        backend="local",
        server_settings={**FAST_SERVER_SETTINGS, **LOG_CONNECTION_SETTINGS, "max_connections": 30},
    )
    with create_server(settings) as server:
        yield server


def test_herd_counts_attempts_at_client_and_server_and_too_many_clients(
    herd_server: PostgresServer,
) -> None:
    hs = HerdSettings(strategy="naive", n_clients=40, outage_s=0.3, deadline=5.0)
    result = run_herd(herd_server, hs, seed=0)
    s = result.summary
    assert s["max_connections"] == 30
    assert s["connected"] + s["gave_up"] == 40
    assert s["gave_up"] >= 10  # at most 30 backends, one held by the sampler
    assert s["too_many_clients"] > 0
    assert s["peak_backends"] <= 30
    assert s["server_attempts"] is not None and s["server_attempts"] >= s["connected"]
    rates = rate_frame(result.attempts)
    assert rates["attempts"].sum() == len(result.attempts)


@pytest.mark.docker
def test_herd_on_a_container_counts_attempts_from_the_container_log(docker_or_skip: None) -> None:
    settings = ServerSettings(
        backend="docker", server_settings={**FAST_SERVER_SETTINGS, **LOG_CONNECTION_SETTINGS}
    )
    with create_server(settings) as server:
        result = run_herd(
            server, HerdSettings(strategy="naive", n_clients=10, outage_s=0.3, deadline=20.0)
        )
    s = result.summary
    assert s["connected"] == 10
    assert s["server_attempts"] is not None and s["server_attempts"] >= s["connected"]


def test_threaded_herd_connects_everyone_when_there_is_room(herd_server: PostgresServer) -> None:
    hs = HerdSettings(strategy="full_jitter", n_clients=10, outage_s=0.2, mode="threads")
    s = run_herd(herd_server, hs, seed=1).summary
    assert s["connected"] == 10 and s["gave_up"] == 0
    assert not math.isnan(s["all_connected_after_ready_s"])


def test_calibration_measures_positive_costs(pg_server: PostgresServer) -> None:
    cal = calibrate(pg_server, n_sequential=5, burst=10)
    assert cal["connect_s"] > 0 and cal["capacity_per_s"] > 0 and cal["refused_s"] > 0


def test_shared_retry_budget_limits_the_herds_retry_rate(herd_server: PostgresServer) -> None:
    hs = HerdSettings(
        strategy="naive", n_clients=20, outage_s=1.0, budget_per_s=10.0, budget_burst=2
    )
    result = run_herd(herd_server, hs, seed=2)
    assert result.summary["label"] == "naive+budget10/s"
    assert result.summary["connected"] == 20
    retries = np.sort(result.attempts.loc[result.attempts["attempt"] > 1, "start"].to_numpy())
    # Token bucket: at most burst + rate * window retries start in any window (+1 for edges).
    per_second = np.searchsorted(retries, retries + 1.0) - np.arange(len(retries))
    assert per_second.max() <= 2 + 10 + 1
