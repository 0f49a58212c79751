"""Specs of the herd model whose server contends for CPU (perfkit.retry.contention)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from perfkit.errors import ConfigError
from perfkit.retry import ContentionSettings, RetryBudget, simulate_contended
from perfkit.retry.contention import main
from perfkit.retry.simulate import OK, REFUSED, TOO_MANY, SimSettings, simulate

#: A machine with CPU to spare: every attempt gets a core of its own.
AMPLE = {"cores": 1e6, "server_cpu_s": 1e-7, "client_cpu_s": 1e-7, "client_processes": 1000}
#: A 2-core server whose burst of 1,000 setups needs 5 s of CPU: more than the 2 s timeout.
HEAVY = {
    "n_clients": 1000,
    "outage_s": 1.0,
    "cores": 2.0,
    "server_cpu_s": 0.01,
    "client_cpu_s": 0.0,
    "connect_timeout": 2.0,
    "deadline": 30.0,
}
COSTS = {
    "cores": 2.0,
    "server_cpu_per_connect_s": 0.002,
    "client_cpu_per_attempt_s": 0.001,
    "connect_s": 0.004,
    "refused_s": 0.0003,
}


def settings(**values: Any) -> ContentionSettings:
    base: dict[str, Any] = {"latency_s": 0.001, "refused_s": 0.0002}
    return ContentionSettings(**{**base, **values})


def retry_times(result: Any) -> np.ndarray:
    """Start times of every attempt but each client's first, sorted."""
    order = np.lexsort((result.attempt_time, result.attempt_client))
    clients = result.attempt_client[order]
    first = np.r_[True, clients[1:] != clients[:-1]]
    return np.sort(result.attempt_time[order][~first])


def most_in_one_second(times: np.ndarray) -> int:
    ends = np.searchsorted(times, times + 1.0, side="left")
    return int((ends - np.arange(len(times))).max())


def test_same_seed_gives_the_same_simulation() -> None:
    s = settings(**{**HEAVY, "n_clients": 300})
    a, b = (
        simulate_contended("full_jitter", s, seed=4),
        simulate_contended("full_jitter", s, seed=4),
    )
    assert np.array_equal(a.attempt_time, b.attempt_time)
    assert np.array_equal(a.attempt_outcome, b.attempt_outcome)
    assert np.array_equal(a.connected_at, b.connected_at, equal_nan=True)


def test_with_ample_cores_and_tiny_costs_it_matches_the_fifo_model() -> None:
    common = {"n_clients": 500, "outage_s": 1.0, "latency_s": 0.001, "refused_s": 0.0002}
    for name in ("naive", "full_jitter", "grpc"):
        fifo = simulate(name, SimSettings(capacity_per_s=1e7, **common), seed=3)
        ps = simulate_contended(name, ContentionSettings(**AMPLE, **common), seed=3)
        np.testing.assert_allclose(ps.connected_at, fifo.connected_at, atol=1e-3)
        assert ps.summary()["p90_connected_after_ready_s"] == pytest.approx(
            fifo.summary()["p90_connected_after_ready_s"], abs=1e-3
        )


def test_a_burst_longer_than_the_connect_timeout_collapses_into_timeouts() -> None:
    summary = simulate_contended("naive", settings(**HEAVY)).summary()
    assert summary["timeouts"] > summary["n_clients"]
    assert summary["connected"] < summary["n_clients"]


def test_the_same_herd_spread_over_time_connects_without_timeouts() -> None:
    spread = settings(**{**HEAVY, "start_spread_s": 20.0})  # 50 arrivals/s for 200/s of CPU
    summary = simulate_contended("naive", spread).summary()
    assert summary["timeouts"] == 0
    assert summary["connected"] == summary["n_clients"]


def test_server_cpu_of_abandoned_setups_is_counted_as_wasted() -> None:
    r = simulate_contended("naive", settings(**HEAVY))
    summary = r.summary()
    assert summary["wasted_server_cpu_s"] > 0
    useful = summary["connected"] * HEAVY["server_cpu_s"]
    assert summary["server_cpu_s"] == pytest.approx(useful + summary["wasted_server_cpu_s"])


def test_a_herd_that_connects_in_time_wastes_no_server_cpu() -> None:
    spread = settings(**{**HEAVY, "start_spread_s": 20.0})
    assert simulate_contended("naive", spread).summary()["wasted_server_cpu_s"] == 0


def test_the_retry_budget_caps_retries_per_second() -> None:
    budget = RetryBudget(capacity=10, refill_per_s=50)
    without = simulate_contended("naive", settings(**HEAVY))
    limited = simulate_contended("naive", settings(**HEAVY, retry_budget=budget))
    assert most_in_one_second(retry_times(without)) > 10 + 50
    assert most_in_one_second(retry_times(limited)) <= 10 + 50 + 1


def test_the_retry_budget_also_paces_retries_while_the_server_is_down() -> None:
    budget = RetryBudget(capacity=5, refill_per_s=20)
    r = simulate_contended("naive", settings(**HEAVY, retry_budget=budget))
    refused = r.attempt_time[r.attempt_outcome == REFUSED]
    assert len(refused) <= HEAVY["n_clients"] + 5 + 20 * HEAVY["outage_s"] + 1


def test_contended_refusals_queue_in_the_client_event_loop() -> None:
    values = {**HEAVY, "client_cpu_s": 0.002, "refused_s": 0.001}
    free = simulate_contended("naive", settings(**values))
    loop = simulate_contended("naive", settings(**values, contended_refusals=True))
    first = loop.attempt_time[loop.attempt_outcome == REFUSED]
    # One loop needs 1,000 x 1 ms for the herd's first refusals: attempts pile up behind it.
    assert (loop.attempt_outcome == REFUSED).sum() < (free.attempt_outcome == REFUSED).sum()
    assert loop.summary()["client_cpu_s"] > free.summary()["client_cpu_s"]
    assert first.max() < values["outage_s"] + 0.05


def test_max_connections_caps_connected_clients_and_rejects_the_rest_with_53300() -> None:
    s = ContentionSettings(n_clients=120, outage_s=0.5, max_connections=50, **AMPLE)
    r = simulate_contended("full_jitter", s)
    summary = r.summary()
    assert summary["connected"] == 50
    assert summary["too_many_clients"] > 0
    assert (r.attempt_outcome == TOO_MANY).sum() == summary["too_many_clients"]


def test_one_client_event_loop_is_slower_than_several_on_the_same_cores() -> None:
    values = {**HEAVY, "server_cpu_s": 0.001, "client_cpu_s": 0.002, "cores": 8.0}
    one = simulate_contended("full_jitter", settings(**values, client_processes=1)).summary()
    eight = simulate_contended("full_jitter", settings(**values, client_processes=8)).summary()
    assert one["median_connected_after_ready_s"] > 2 * eight["median_connected_after_ready_s"]


def test_a_full_accept_queue_drops_syns_and_the_clients_time_out() -> None:
    slow_postmaster = {**HEAVY, "server_cpu_s": 0.005, "accept_s": 0.005, "connect_timeout": 1.0}
    full = simulate_contended("naive", settings(**slow_postmaster, backlog=5)).summary()
    assert full["timeouts"] > 0
    assert full["connected"] < HEAVY["n_clients"]


@pytest.mark.parametrize(("cores", "together_s"), [(1.0, 0.4), (2.0, 0.2), (8.0, 0.1)])
def test_setups_in_flight_share_the_cores(cores: float, together_s: float) -> None:
    # Four setups of 0.1 s start at once: each runs at min(1, cores / 4) of a core.
    s = settings(
        n_clients=4, outage_s=0.0, boot_s=0.05, cores=cores, server_cpu_s=0.1, client_cpu_s=0.0
    )
    r = simulate_contended("naive", s)
    first_live = 0.0002 + 0.5
    np.testing.assert_allclose(r.connected_at, first_live + together_s, atol=1e-9)


def test_a_shared_event_loop_finishes_a_lockstep_herd_together() -> None:
    s = settings(
        n_clients=100, outage_s=0.0, boot_s=0.05, cores=2.0, server_cpu_s=0.0, client_cpu_s=0.01
    )
    r = simulate_contended("naive", s)
    np.testing.assert_allclose(r.connected_at, 0.0002 + 0.5 + 100 * 0.01, atol=1e-9)


def test_a_fifo_event_loop_lets_a_lockstep_herd_out_one_attempt_at_a_time() -> None:
    s = settings(
        n_clients=100,
        outage_s=0.0,
        boot_s=0.05,
        cores=2.0,
        server_cpu_s=0.0,
        client_cpu_s=0.01,
        client_discipline="fifo",
    )
    r = simulate_contended("naive", s)
    expected = 0.0002 + 0.5 + 0.01 * np.arange(1, 101)
    np.testing.assert_allclose(np.sort(r.connected_at), expected, atol=1e-9)


def test_a_dropped_syn_is_retransmitted_1_s_then_3_s_after_the_first() -> None:
    # One postmaster taking 0.1 s per connection, room for one in the accept queue.
    s = settings(
        n_clients=3,
        outage_s=0.0,
        boot_s=0.05,
        cores=1.0,
        server_cpu_s=0.1,
        accept_s=0.1,
        client_cpu_s=0.0,
        backlog=1,
        connect_timeout=5.0,
    )
    r = simulate_contended("naive", s)
    first_live = 0.0002 + 0.5  # refused at 0, then naive's 0.5 s
    expected = [first_live + 0.1, first_live + 1.0 + 0.1, first_live + 3.0 + 0.1]
    np.testing.assert_allclose(np.sort(r.connected_at), expected, atol=1e-6)


def test_attempts_while_the_port_listens_but_the_server_boots_wait_for_it() -> None:
    s = ContentionSettings(n_clients=100, outage_s=1.0, boot_s=1.0, hang_s=0.8, **AMPLE)
    r = simulate_contended("naive", s, seed=3)
    waiting = (r.attempt_time >= s.hang_from_s) & (r.attempt_time < s.ready_s)
    assert waiting.any()
    assert (r.attempt_outcome[waiting] == OK).all()
    assert r.connected_at.max() - s.ready_s < 0.01


def test_no_attempt_starts_after_the_deadline() -> None:
    s = ContentionSettings(n_clients=300, outage_s=100.0, deadline=10.0, **AMPLE)
    r = simulate_contended("grpc", s, seed=3)
    assert r.attempt_time.max() < 10.0
    assert r.summary()["gave_up"] == 300


def test_a_large_herd_is_represented_and_expanded_back_to_every_client() -> None:
    values = {**HEAVY, "n_clients": 2000, "server_cpu_s": 0.002}
    exact = simulate_contended("full_jitter", settings(**values)).summary()
    r = simulate_contended("full_jitter", settings(**values, exact_up_to=500))
    summary = r.summary()
    assert summary["represented_by"] == 4
    assert len(r.connected_at) == 2000
    assert summary["median_connected_after_ready_s"] == pytest.approx(
        exact["median_connected_after_ready_s"], rel=0.25
    )


def test_both_models_report_the_p90_time_to_reconnect() -> None:
    s = ContentionSettings(n_clients=200, **AMPLE)
    for summary in (
        simulate_contended("full_jitter", s).summary(),
        simulate("full_jitter", s).summary(),
    ):
        assert summary["p90_connected_after_ready_s"] >= summary["median_connected_after_ready_s"]


def test_from_costs_reads_the_measured_costs() -> None:
    s = ContentionSettings.from_costs(COSTS, n_clients=10, client_processes=2)
    assert (s.cores, s.server_cpu_s, s.client_cpu_s) == (2.0, 0.002, 0.001)
    assert (s.latency_s, s.refused_s, s.client_processes) == (0.004, 0.0003, 2)


def test_from_sim_keeps_the_runs_scenario_and_takes_the_cpu_costs() -> None:
    sim = SimSettings(
        n_clients=300, outage_s=1.3, boot_s=0.2, start_spread_s=0.04, refused_s=0.0004, backlog=640
    )
    costs = {**COSTS, "refused_s": 0.0003}
    s = ContentionSettings.from_sim(sim, costs, client_processes=4)
    assert (s.n_clients, s.outage_s, s.boot_s, s.start_spread_s) == (300, 1.3, 0.2, 0.04)
    assert (s.backlog, s.refused_s, s.latency_s, s.client_processes) == (640, 0.0004, 0.004, 4)
    assert s.server_cpu_s == 0.002


def test_from_costs_names_a_missing_cost() -> None:
    with pytest.raises(ConfigError, match="server_cpu_per_connect_s"):
        ContentionSettings.from_costs({"cores": 2.0}, n_clients=10)


def test_plain_fifo_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="ContentionSettings"):
        simulate_contended("naive", SimSettings(n_clients=10))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cores", 0.0),
        ("cores", -1.0),
        ("server_cpu_s", -0.001),
        ("client_cpu_s", -1.0),
        ("client_processes", 0),
        ("client_processes", 1.5),
        ("retry_budget", "10/s"),
        ("accept_s", 1.0),
        ("exact_up_to", 0),
        ("contended_refusals", "yes"),
        ("client_discipline", "lifo"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_field(field: str, value: object) -> None:
    values: dict[str, Any] = {"n_clients": 10, "cores": 2.0, "server_cpu_s": 0.002}
    values = {**values, "client_cpu_s": 0.001, field: value}
    with pytest.raises(ConfigError, match=field):
        ContentionSettings(**values)


@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("capacity", {"capacity": 0, "refill_per_s": 1.0}),
        ("refill_per_s", {"capacity": 5, "refill_per_s": -1.0}),
        ("capacity", {"capacity": float("nan"), "refill_per_s": 1.0}),
    ],
)
def test_a_bad_retry_budget_is_a_config_error_naming_the_field(
    field: str, values: dict[str, float]
) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryBudget(**values)


def test_the_script_prints_the_summary_and_the_wall_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--clients", "200", "--strategy", "exponential", "--retry-budget", "20,100"]) == 0
    out = capsys.readouterr().out
    assert "p90_connected_after_ready_s" in out
    assert "wall time" in out and "200 clients (exponential)" in out


def test_the_script_names_a_bad_setting_before_simulating(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--clients", "10", "--cores", "0"])
    assert "ContentionSettings.cores" in capsys.readouterr().err


def _second_attempt_starts(result: Any) -> np.ndarray:
    frame = result.attempts_frame().sort_values(["client", "t_event_s"])
    return frame.groupby("client")["t_event_s"].nth(1).to_numpy()


@pytest.mark.parametrize("budget", [None, RetryBudget(capacity=1e6, refill_per_s=1e6)])
def test_attempts_while_the_old_server_shuts_down_fail_together_when_it_exits(
    budget: RetryBudget | None,
) -> None:
    values = {"n_clients": 50, "outage_s": 1.0, "start_spread_s": 0.5, "cores": 2.0,
              "server_cpu_s": 0.001, "client_cpu_s": 0.0, "retry_budget": budget}  # fmt: skip
    spread = simulate_contended("naive", settings(**values))
    lockstep = simulate_contended("naive", settings(**values, shutdown_s=0.6))
    assert np.ptp(_second_attempt_starts(spread)) > 0.3  # the notice spread carries on
    # every first attempt fails at 0.6 s; naive sleeps 0.5 s: t_event = 1.1 - outage 1.0
    assert _second_attempt_starts(lockstep) == pytest.approx(np.full(50, 0.1))


def test_client_loops_in_one_session_weigh_as_one_entity() -> None:
    values = {**HEAVY, "server_cpu_s": 0.001, "client_cpu_s": 0.002, "client_processes": 4}
    own = simulate_contended("full_jitter", settings(**values)).summary()
    shared = simulate_contended("full_jitter", settings(**values, client_sessions=1)).summary()
    assert shared["median_connected_after_ready_s"] > 1.5 * own["median_connected_after_ready_s"]


def test_the_shutdown_cannot_outlast_the_outage() -> None:
    with pytest.raises(ConfigError, match="shutdown_s"):
        settings(n_clients=10, outage_s=1.0, cores=2.0, server_cpu_s=0.001, client_cpu_s=0.0,
                 shutdown_s=1.5)  # fmt: skip


def test_a_container_s_backends_share_one_group_s_weight_against_the_client_loop() -> None:
    values = {**HEAVY, "n_clients": 300, "server_cpu_s": 0.02, "client_cpu_s": 0.004,
              "start_spread_s": 1.0, "connect_timeout": 10.0}  # fmt: skip
    alone = simulate_contended("full_jitter", settings(**values)).summary()
    grouped = simulate_contended("full_jitter", settings(**values, server_groups=1)).summary()
    # a busy loop takes one of the two cores from the group, not 1/(backends + 1) of them
    slower = grouped["median_connected_after_ready_s"] / alone["median_connected_after_ready_s"]
    assert slower > 1.3


def test_client_work_after_the_server_s_answer_keeps_an_idle_attempt_as_long() -> None:
    values = {"n_clients": 1, "outage_s": 0.5, "cores": 2.0, "server_cpu_s": 0.003,
              "client_cpu_s": 0.002}  # fmt: skip
    before = simulate_contended("naive", settings(**values)).connected_at[0]
    split = simulate_contended("naive", settings(**values, client_after_s=0.0015)).connected_at[0]
    assert split == pytest.approx(before)


def test_client_work_after_the_answer_is_done_after_a_boot_s_wait() -> None:
    # 200 clients waiting in the boot's hang window on one loop: their client work,
    # done while they waited, no longer delays them; the part after the answer does
    values = {"n_clients": 200, "outage_s": 1.0, "boot_s": 1.0, "hang_s": 0.9, "cores": 2.0,
              "server_cpu_s": 0.001, "client_cpu_s": 0.003,
              "client_discipline": "fifo"}  # fmt: skip
    first = simulate_contended("naive", settings(**values)).summary()
    after = simulate_contended("naive", settings(**values, client_after_s=0.0029)).summary()
    assert after["median_connected_after_ready_s"] > 2 * first["median_connected_after_ready_s"]
    assert after["connected"] == first["connected"] == 200
