"""Check-before-acquire and recovery when the server kills backends or restarts (real servers)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from perfkit.pool import Action, PoolSettings, Query, Workload, run_workload
from perfkit.pool.checkout import measure_checkout, summarize_checkout
from perfkit.pool.runner import make_pool
from perfkit.pool.server_processes import new_application_name, terminate_server_processes
from perfkit.pool.sweeps import restart_actions
from perfkit.postgres import PostgresServer

#: One worker that mostly thinks, running only trivial statements.
CALM = Workload(
    workers=1, duration=0.8, think_time=0.03, seed=3, mix=(Query(name="one", sql="SELECT 1"),)
)


def _kill_idle(dsn: str) -> Action:
    return Action(at_s=0.3, name="terminate", fn=lambda app: terminate_server_processes(dsn, app))


def _idle_pool(dsn: str, *, check: bool) -> ConnectionPool:
    settings = PoolSettings(min_size=2, max_size=2, check=check)
    pool = make_pool(dsn, settings, new_application_name("perfkit-test-kill"))
    pool.open(wait=True, timeout=10)
    return pool


def test_check_replaces_a_killed_connection_before_handing_it_out(
    pg_server: PostgresServer,
) -> None:
    pool = _idle_pool(pg_server.dsn, check=True)
    try:
        assert terminate_server_processes(pg_server.dsn, pool.name) == 2
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert pool.get_stats()["connections_num"] > 2
    finally:
        pool.close()


def test_without_check_a_killed_connection_fails_the_next_query(
    pg_server: PostgresServer,
) -> None:
    pool = _idle_pool(pg_server.dsn, check=False)
    try:
        assert terminate_server_processes(pg_server.dsn, pool.name) == 2
        conn = pool.getconn()
        try:
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        finally:
            pool.putconn(conn)
    finally:
        pool.close()


def test_with_check_the_workload_survives_killed_backends(pg_server: PostgresServer) -> None:
    settings = PoolSettings(min_size=2, max_size=2, check=True)
    result = run_workload(pg_server.dsn, settings, CALM, actions=[_kill_idle(pg_server.dsn)])
    s = result.summary()
    assert result.events["ok"].all()
    assert s["n_acquire_errors"] == 0
    assert s["n_query_errors"] <= 1  # only a query in flight at the kill can fail
    assert result.final_stats["connections_num"] > 2  # replacements were opened
    assert result.leaked == 0


def test_without_check_killed_backends_fail_queries_then_the_pool_heals(
    pg_server: PostgresServer,
) -> None:
    settings = PoolSettings(min_size=2, max_size=2, check=False)
    result = run_workload(pg_server.dsn, settings, CALM, actions=[_kill_idle(pg_server.dsn)])
    reqs = result.requests
    failed = reqs[~reqs["ok"]]
    assert len(failed) >= 1
    assert set(failed["stage"]) == {"query"}
    assert reqs[reqs["start_s"] > failed["start_s"].max()]["ok"].sum() > 0
    assert result.leaked == 0


def test_pool_recovers_after_the_server_restarts(fresh_pg_server: PostgresServer) -> None:
    settings = PoolSettings(min_size=2, max_size=2, check=True, timeout=2.0)
    wl = Workload(workers=2, duration=2.0, think_time=0.01)
    actions = restart_actions(fresh_pg_server, at_s=0.3, down_s=0.3)
    result = run_workload(fresh_pg_server.dsn, settings, wl, actions=actions)
    assert result.events["action"].tolist() == ["take_down", "bring_up"]
    assert result.events["ok"].all()
    back = result.events["end_s"].iloc[1]  # bring_up(wait=True) returned: server ready
    reqs = result.requests
    assert reqs[(reqs["start_s"] > back) & reqs["ok"]].shape[0] > 0
    assert result.summary()["requests"] == len(reqs)
    assert result.leaked == 0


@pytest.mark.bench
def test_bench_checkout_cost_with_and_without_check(pg_server: PostgresServer) -> None:
    summary = summarize_checkout(measure_checkout(pg_server.dsn, n=2000))
    print(summary.to_string())


def test_checkout_measurement_yields_n_rows_per_setting(pg_server: PostgresServer) -> None:
    df = measure_checkout(pg_server.dsn, n=60)
    assert df.groupby("check").size().to_dict() == {False: 60, True: 60}
    assert (df["checkout_ms"] > 0).all()
    assert set(summarize_checkout(df)["check"]) == {False, True}
