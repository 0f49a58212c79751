"""Specs of the many-client reconnect model (perfkit.retry.simulate)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from perfkit.errors import ConfigError
from perfkit.retry import get_strategy
from perfkit.retry.simulate import (
    OK,
    REFUSED,
    TIMEOUT,
    TOO_MANY,
    SimSettings,
    simulate,
    simulate_many,
)

AMPLE = {"capacity_per_s": 1e6, "latency_s": 0.001, "refused_s": 0.0002}


def test_same_seed_gives_the_same_simulation() -> None:
    s = SimSettings(n_clients=300, outage_s=1.0)
    a, b = simulate("full_jitter", s, seed=4), simulate("full_jitter", s, seed=4)
    assert np.array_equal(a.attempt_time, b.attempt_time)
    assert np.array_equal(a.connected_at, b.connected_at, equal_nan=True)


def test_attempts_before_the_server_is_ready_are_refused_and_none_after() -> None:
    s = SimSettings(n_clients=200, outage_s=2.0, **AMPLE)
    r = simulate("equal_jitter", s, seed=1)
    before = r.attempt_time < s.ready_s
    assert (r.attempt_outcome[before] == REFUSED).all()
    assert not (r.attempt_outcome[~before] == REFUSED).any()


def test_with_ample_capacity_every_client_connects_on_its_first_live_attempt() -> None:
    s = SimSettings(n_clients=500, outage_s=1.0, **AMPLE)
    r = simulate("full_jitter", s, seed=2)
    assert not np.isnan(r.connected_at).any()
    assert (r.attempt_outcome[r.attempt_time >= s.ready_s] == OK).all()
    assert (r.connected_at >= s.ready_s).all()


def test_attempts_while_the_port_listens_but_the_server_boots_wait_for_it() -> None:
    s = SimSettings(n_clients=100, outage_s=1.0, boot_s=1.0, hang_s=0.8, **AMPLE)
    r = simulate("naive", s, seed=3)
    waiting = (r.attempt_time >= s.hang_from_s) & (r.attempt_time < s.ready_s)
    assert waiting.any()
    assert (r.attempt_outcome[waiting] == OK).all()
    assert (r.attempt_outcome[r.attempt_time < s.hang_from_s] == REFUSED).all()
    # Naive clients all have an attempt in flight (0.8 s window > 0.5 s delay): none waits longer.
    assert r.connected_at.max() - s.ready_s < 0.01


def test_a_waiting_attempt_times_out_when_the_server_comes_up_too_late() -> None:
    s = SimSettings(
        n_clients=10, outage_s=0.0, boot_s=3.0, hang_s=3.0, connect_timeout=1.0, **AMPLE
    )
    r = simulate("naive", s, seed=0)
    assert (r.attempt_outcome[r.attempt_time + 1.0 <= s.ready_s] == TIMEOUT).all()
    assert not np.isnan(r.connected_at).any()


def test_no_client_exceeds_its_strategys_max_attempts() -> None:
    s = SimSettings(n_clients=400, outage_s=30.0, **AMPLE)  # longer than naive's 15 s of sleep
    r = simulate("naive", s, seed=0)
    per_client = np.bincount(r.attempt_client, minlength=400)
    assert per_client.max() == get_strategy("naive").max_attempts
    assert np.isnan(r.connected_at).all()


def test_no_attempt_starts_after_the_deadline() -> None:
    s = SimSettings(n_clients=300, outage_s=100.0, deadline=10.0, start_spread_s=0.5, **AMPLE)
    r = simulate("grpc", s, seed=3)
    assert r.attempt_time.max() < 10.5
    assert r.summary()["gave_up"] == 300


def test_max_connections_caps_connected_clients_and_rejects_the_rest_with_53300() -> None:
    s = SimSettings(n_clients=120, outage_s=0.5, max_connections=50, **AMPLE)
    r = simulate("review", s, seed=0)
    summary = r.summary()
    assert summary["connected"] == 50
    assert summary["too_many_clients"] > 0
    assert (r.attempt_outcome == TOO_MANY).sum() == summary["too_many_clients"]


def test_lockstep_strategies_hit_the_server_with_the_whole_herd_at_once() -> None:
    s = SimSettings(n_clients=1000, outage_s=1.0, **AMPLE)
    naive = simulate("naive", s).summary()
    jitter = simulate("full_jitter", s).summary()
    assert naive["peak_rate_after_restart_per_100ms"] == 1000
    assert jitter["peak_rate_after_restart_per_100ms"] < 500


def test_limited_capacity_makes_clients_wait_in_line() -> None:
    slow = SimSettings(n_clients=100, outage_s=0.5, capacity_per_s=100.0, latency_s=0.005)
    r = simulate("naive", slow)
    connected = np.sort(r.connected_at)
    assert connected[-1] - connected[0] == pytest.approx(0.99, abs=0.02)


def test_short_connect_timeout_under_overload_produces_timeouts() -> None:
    s = SimSettings(n_clients=2000, outage_s=0.5, capacity_per_s=200.0, connect_timeout=1.0)
    assert simulate("naive", s).summary()["timeouts"] > 0


def test_simulate_many_returns_one_summary_row_per_strategy() -> None:
    frame, results = simulate_many(["naive", "grpc"], SimSettings(n_clients=50))
    assert list(frame["strategy"]) == ["naive", "grpc"]
    assert set(results) == {"naive", "grpc"}


def test_attempts_frame_is_relative_to_the_restart() -> None:
    s = SimSettings(n_clients=10, outage_s=2.0, **AMPLE)
    frame = simulate("naive", s).attempts_frame()
    assert frame["t_event_s"].min() == pytest.approx(-2.0)
    assert set(frame["outcome"].astype(str)) <= {"ok", "refused"}


def test_unbounded_strategy_without_deadline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="deadline"):
        simulate("grpc", SimSettings(n_clients=1, deadline=None))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_clients", 0),
        ("capacity_per_s", 0.0),
        ("outage_s", -1.0),
        ("max_connections", 0),
        ("connect_timeout", 0.0),
        ("hang_s", -0.1),
        ("n_clients", True),
    ],
)
def test_bad_settings_are_config_errors_naming_the_field(field: str, value: object) -> None:
    values = {"n_clients": 10, field: value}
    with pytest.raises(ConfigError, match=field):
        SimSettings(**values)  # type: ignore[arg-type]


@pytest.mark.bench
def test_bench_ten_thousand_clients_for_every_strategy() -> None:
    s = SimSettings(n_clients=10_000, outage_s=1.0)
    for name in [
        "naive",
        "exponential",
        "full_jitter",
        "equal_jitter",
        "decorrelated_jitter",
        "review",
        "polly_v2",
        "grpc",
    ]:
        t = time.perf_counter()
        simulate(name, s)
        print(f"{name}: {time.perf_counter() - t:.3f} s for 10,000 clients")


def test_a_full_accept_queue_drops_syns_and_the_clients_time_out() -> None:
    s = SimSettings(
        n_clients=500,
        outage_s=0.5,
        capacity_per_s=50.0,
        backlog=5,
        connect_timeout=1.0,
        deadline=3.0,
    )
    summary = simulate("naive", s).summary()
    assert summary["timeouts"] > 0
    assert summary["connected"] < 500


def test_backlog_must_be_a_positive_int() -> None:
    with pytest.raises(ConfigError, match="backlog"):
        SimSettings(n_clients=1, backlog=0)
