"""The workload runners against a real server: counts add up, nothing leaks, errors are typed."""

from __future__ import annotations

import pytest

from perfkit.pool import (
    NO_POOL,
    Action,
    PoolSettings,
    Query,
    Workload,
    run_workload,
    run_workload_async_blocking,
)
from perfkit.pool.server_processes import count_server_processes, terminate_server_processes
from perfkit.postgres import PostgresServer

QUICK = Workload(workers=4, duration=0.4, seed=1)
SLOW = (Query(name="sleep50ms", sql="SELECT pg_sleep(0.05)"),)


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_every_request_is_a_success_or_an_error_and_the_pool_agrees(
    pg_server: PostgresServer, runner
) -> None:
    result = runner(pg_server.dsn, PoolSettings(min_size=1, max_size=3), QUICK)
    s = result.summary()
    assert s["requests"] > 0
    assert s["requests"] == s["successes"] + s["errors"]
    assert result.final_stats["requests_num"] == s["requests"]
    assert result.final_stats.get("requests_errors", 0) == s["n_acquire_errors"]


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_no_connection_is_left_on_the_server_after_the_run(
    pg_server: PostgresServer, runner
) -> None:
    result = runner(pg_server.dsn, PoolSettings(min_size=2, max_size=4), QUICK)
    assert result.leaked == 0
    assert result.summary()["leaked"] == 0


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_no_pool_baseline_connects_per_request_and_leaves_nothing(
    pg_server: PostgresServer, runner
) -> None:
    result = runner(pg_server.dsn, NO_POOL, QUICK.replace(workers=2))
    s = result.summary()
    assert s["successes"] > 0 and s["errors"] == 0
    assert result.stats.empty
    assert result.leaked == 0


def test_stats_series_never_exceeds_max_size_and_sees_waiters(pg_server: PostgresServer) -> None:
    wl = Workload(workers=6, duration=0.5, mix=SLOW, stats_interval=0.02)
    result = run_workload(pg_server.dsn, PoolSettings(min_size=1, max_size=2), wl)
    stats = result.stats
    assert len(stats) >= 5
    assert stats["pool_size"].max() <= 2
    assert stats["requests_waiting"].max() > 0
    assert (stats["in_use"] == stats["pool_size"] - stats["pool_available"]).all()


def test_acquire_timeouts_are_recorded_as_pool_timeout(pg_server: PostgresServer) -> None:
    wl = Workload(workers=4, duration=0.5, mix=SLOW)
    settings = PoolSettings(min_size=1, max_size=1, timeout=0.01)
    result = run_workload(pg_server.dsn, settings, wl)
    s = result.summary()
    assert s["n_PoolTimeout"] > 0
    assert s["requests"] == s["successes"] + s["errors"]
    failed = result.requests[~result.requests["ok"]]
    assert set(failed["stage"]) == {"acquire"}
    assert failed["hold_ms"].isna().all()
    assert result.leaked == 0


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_max_waiting_rejects_with_too_many_requests(pg_server: PostgresServer, runner) -> None:
    wl = Workload(workers=6, duration=0.4, mix=SLOW)
    settings = PoolSettings(min_size=1, max_size=1, max_waiting=1)
    s = runner(pg_server.dsn, settings, wl).summary()
    assert s["n_TooManyRequests"] > 0
    assert s["requests"] == s["successes"] + s["errors"]


def test_actions_run_at_their_time_and_are_recorded(pg_server: PostgresServer) -> None:
    seen: list[str] = []
    action = Action(at_s=0.1, name="look", fn=lambda app: seen.append(app))
    result = run_workload(pg_server.dsn, PoolSettings(min_size=1), QUICK, actions=[action])
    assert len(seen) == 1 and seen[0].startswith("perfkit-pool-")
    assert result.events["action"].tolist() == ["look"]
    assert result.events["t_s"].iloc[0] >= 0.1


def test_runs_tag_their_connections_so_the_server_can_count_them(
    pg_server: PostgresServer,
) -> None:
    counts: list[int] = []
    action = Action(
        at_s=0.1,
        name="count",
        fn=lambda app: counts.append(count_server_processes(pg_server.dsn, app)),
    )
    run_workload(pg_server.dsn, PoolSettings(min_size=3), QUICK, actions=[action])
    assert counts == [3]


def test_async_runner_injects_actions_and_records_when_they_returned(
    pg_server: PostgresServer,
) -> None:
    action = Action(
        at_s=0.1, name="kill", fn=lambda app: terminate_server_processes(pg_server.dsn, app)
    )
    settings = PoolSettings(min_size=2, max_size=2, check=True)
    wl = Workload(workers=1, duration=0.5, think_time=0.03)
    result = run_workload_async_blocking(pg_server.dsn, settings, wl, actions=[action])
    ev = result.events
    assert ev["action"].tolist() == ["kill"] and ev["ok"].all()
    assert (ev["end_s"] >= ev["t_s"]).all()
    assert result.final_stats["connections_num"] > 2
    assert result.leaked == 0


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_an_action_scheduled_after_the_workers_finish_still_runs(
    pg_server: PostgresServer, runner
) -> None:
    seen: list[str] = []
    action = Action(at_s=0.4, name="bring_up", fn=lambda app: seen.append(app))
    wl = Workload(workers=1, duration=0.1)
    result = runner(pg_server.dsn, PoolSettings(min_size=1), wl, actions=[action])
    assert len(seen) == 1
    assert result.events["t_s"].iloc[0] >= 0.4
