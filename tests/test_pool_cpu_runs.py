"""Every pool run records the client's and the server's CPU (perfkit.pool.sweeps.run_cases)."""

from __future__ import annotations

import os

import pytest

from perfkit.pool.arunner import run_workload_async_blocking
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import Workload
from perfkit.pool.sweeps import CPU_COLUMNS, aggregate_size, run_cases, size_cases
from perfkit.postgres import PostgresServer
from perfkit.postgres.cpu import CLIENT_BOUND_PCT

WL = Workload(workers=4, duration=0.4, seed=5)


@pytest.mark.parametrize("runner", [run_workload, run_workload_async_blocking])
def test_runs_carry_sane_client_and_server_cpu(pg_server: PostgresServer, runner) -> None:
    runs = run_cases(
        pg_server.dsn, size_cases([2], [4], WL, no_pool=False), runner=runner, server=pg_server
    ).runs
    assert set(CPU_COLUMNS) <= set(runs.columns)
    row = runs.iloc[0]
    cores = os.cpu_count() or 1
    assert row["cores"] == cores
    assert 0 < row["client_cpu_pct"] <= cores * 100 * 1.5  # a busy client uses some CPU
    assert 0 < row["server_cpu_pct"] <= cores * 100 * 1.5  # so do the backends serving it
    assert row["client_bound"] == (row["client_cpu_pct"] >= CLIENT_BOUND_PCT)


def test_without_a_server_only_the_server_cpu_is_unknown(pg_server: PostgresServer) -> None:
    runs = run_cases(pg_server.dsn, size_cases([2], [2], WL, no_pool=False)).runs
    assert runs["server_cpu_pct"].isna().all()
    assert (runs["client_cpu_pct"] > 0).all()


def test_aggregated_size_rows_say_whether_the_median_run_was_client_bound(
    pg_server: PostgresServer,
) -> None:
    runs = run_cases(
        pg_server.dsn, size_cases([1, 2], [2], WL, no_pool=False, repeats=2), server=pg_server
    ).runs
    agg = aggregate_size(runs)
    assert agg["client_bound"].dtype == bool
    expected = agg["client_cpu_pct"] >= CLIENT_BOUND_PCT
    assert (agg["client_bound"] == expected).all()
