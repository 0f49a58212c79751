"""The big herd on a real local server: everyone reconnects, the books balance, the model is beside.

Facts only (counts, who connected, what is left), never durations: the
machine is shared and noisy. The 1,000-client run is a benchmark (``-m bench``).
"""

from __future__ import annotations

import math
import resource
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry.bigherd import (
    MAX_CONNECTIONS_MARGIN,
    METRICS,
    BigHerdSettings,
    big_herd,
    compare_with_simulation,
    ensure_fd_limit,
    main,
    run_big_herd,
)

N = 50


def _server(n_clients: int) -> Iterator[PostgresServer]:
    settings = ServerSettings(
        backend="local",
        server_settings={
            **FAST_SERVER_SETTINGS,
            "max_connections": n_clients + MAX_CONNECTIONS_MARGIN,
        },
    )
    with create_server(settings) as server:
        yield server


@pytest.fixture(scope="module")
def herd_server() -> Iterator[PostgresServer]:
    yield from _server(N)


@pytest.fixture(scope="module")
def one_run(herd_server: PostgresServer) -> dict[str, Any]:
    bs = BigHerdSettings(strategy="full_jitter", n_clients=N, outage_s=0.3, deadline=30.0)
    return run_big_herd(herd_server, bs, seed=3)


@pytest.fixture(scope="module")
def frames(herd_server: PostgresServer) -> dict[str, pd.DataFrame]:
    return big_herd(
        herd_server, ["naive", "decorrelated_jitter"], N, outage_s=0.3, deadline=30.0, seed=4
    )


def test_every_client_reconnects_after_the_restart(one_run: dict[str, Any]) -> None:
    s = one_run["summary"]
    assert s["connected"] == N and s["gave_up"] == 0
    assert one_run["clients"]["connected_t_event_s"].notna().all()
    assert not math.isnan(s["all_connected_after_ready_s"])


def test_every_client_noticed_the_loss_before_the_restart(one_run: dict[str, Any]) -> None:
    assert (one_run["clients"]["noticed_t_event_s"] < 0).all()


def test_attempts_balance_with_clients(one_run: dict[str, Any]) -> None:
    s, attempts = one_run["summary"], one_run["attempts"]
    assert s["attempts"] == len(attempts) >= N
    assert (attempts["outcome"] == "ok").sum() == N
    per_client = attempts.groupby("client")["attempt"].max()
    assert per_client.tolist() == one_run["clients"]["attempts"].tolist()
    assert s["attempts_after_ready"] <= s["attempts_after_restart"] <= s["attempts"]


def test_no_connection_is_left_after_the_run(one_run: dict[str, Any]) -> None:
    assert one_run["summary"]["left_after"] == 0


def test_backends_stay_within_max_connections(one_run: dict[str, Any]) -> None:
    s = one_run["summary"]
    # All held at once (the sampler counts itself out; the probe may overlap the herd).
    assert N <= s["peak_backends"] <= N + 1
    assert s["peak_backends"] < s["max_connections"]
    assert s["too_many_clients"] == 0


def test_the_comparison_has_real_and_sim_for_every_metric(
    frames: dict[str, pd.DataFrame],
) -> None:
    comparison = frames["comparison"]
    for name in ("naive", "decorrelated_jitter"):
        rows = comparison[comparison["strategy"] == name]
        assert rows["metric"].tolist() == list(METRICS)
        assert rows["real"].notna().all() and rows["sim"].notna().all()
    connected = comparison[comparison["metric"] == "connected"]
    assert (connected["real"] == N).all() and (connected["sim"] == N).all()


def test_quantile_metrics_carry_intervals(frames: dict[str, pd.DataFrame]) -> None:
    comparison = frames["comparison"]
    median = comparison[comparison["metric"] == "median_connected_after_ready_s"]
    assert (median["real_low"] <= median["real"]).all()
    assert (median["real"] <= median["real_high"]).all()
    assert (median["sim_low"] <= median["sim"]).all() and (median["n"] == N).all()


def test_comparison_is_a_function_of_the_frames(frames: dict[str, pd.DataFrame]) -> None:
    again = compare_with_simulation(frames, seed=4)
    pd.testing.assert_frame_equal(again, frames["comparison"])


def test_too_few_max_connections_is_refused_before_anything_runs(
    herd_server: PostgresServer,
) -> None:
    with pytest.raises(ConfigError, match="max_connections"):
        run_big_herd(herd_server, BigHerdSettings(strategy="naive", n_clients=N + 30))


def test_fd_limit_is_left_alone_when_high_enough() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    info = ensure_fd_limit(10, margin=0)
    assert not info["raised"] and resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft


def test_unknown_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown retry strategy"):
        BigHerdSettings(strategy="nope")


def test_script_prints_the_comparison_and_writes_csv(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "big.csv"
    argv = ["--clients", "20", "--strategies", "exponential", "--outage", "0.2"]
    assert main([*argv, "--deadline", "30", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "== exponential: n=20 clients" in printed
    written = pd.read_csv(out)
    assert written["metric"].tolist() == list(METRICS)
    assert out.with_suffix(".runs.csv").exists()


@pytest.mark.bench
def test_bench_thousand_clients_reconnect() -> None:
    n = 1000
    for server in _server(n):
        result = big_herd(server, ["naive", "exponential", "full_jitter", "decorrelated_jitter"], n)
    runs = result["bigherd"]
    print(runs.to_string())
    print(result["comparison"].to_string())
    assert (runs["connected"] + runs["gave_up"] == n).all()
    assert (runs["left_after"] == 0).all()
    assert (runs["peak_backends"] < runs["max_connections"]).all()
