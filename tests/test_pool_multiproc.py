"""The multi-process runner (perfkit.pool.multiproc) against real local servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from perfkit.errors import ConnectionBudgetWarning
from perfkit.pool import multiproc
from perfkit.pool.multiproc import run_processes
from perfkit.pool.server_processes import count_server_processes
from perfkit.pool.settings import PoolSettings, Workload
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server

SHORT = Workload(workers=3, duration=0.3, seed=2)
POOL = PoolSettings(name="per-process", min_size=2, max_size=2, timeout=5.0)


@pytest.fixture
def small_server() -> Iterator[PostgresServer]:
    """A local server that takes only 5 connections (3 of them reserved for superusers)."""
    settings = {**FAST_SERVER_SETTINGS, "max_connections": 5}
    with create_server(ServerSettings(backend="local", server_settings=settings)) as server:
        yield server


def test_requests_are_successes_plus_errors_across_processes(pg_server: PostgresServer) -> None:
    result = run_processes(pg_server.dsn, POOL, SHORT, processes=2)
    s = result.summary()
    assert result.per_process["process"].tolist() == [0, 1]
    assert s["requests"] == s["successes"] + s["errors"] > 0
    assert s["requests"] == int(result.per_process["requests"].sum())
    assert sorted(result.requests["process"].unique()) == [0, 1]
    assert s["requests_add_up"] is True


def test_no_connection_of_any_process_is_left_on_the_server(pg_server: PostgresServer) -> None:
    result = run_processes(pg_server.dsn, POOL, SHORT, processes=2)
    assert result.leaked == 0
    assert len(result.application_names) == 2
    assert [count_server_processes(pg_server.dsn, app) for app in result.application_names] == [
        0,
        0,
    ]


def test_throughput_interval_comes_from_summed_bins(pg_server: PostgresServer) -> None:
    s = run_processes(pg_server.dsn, POOL, SHORT, processes=2, bin_s=0.1).summary()
    assert s["throughput_n"] == 3
    assert s["throughput_low"] <= s["throughput_mean_rps"] <= s["throughput_high"]
    assert s["throughput_mean_rps"] == pytest.approx(s["throughput_rps"], rel=0.15)


def test_more_connections_than_max_connections_is_warned_and_flagged(
    small_server: PostgresServer,
) -> None:
    grow = PoolSettings(name="grows", min_size=1, max_size=3, timeout=1.0)
    with pytest.warns(ConnectionBudgetWarning, match=r"2 processes x pool max_size 3 = 6"):
        result = run_processes(small_server.dsn, grow, SHORT, processes=2)
    s = result.summary()
    assert (s["total_connections"], s["max_connections"]) == (6, 5)
    assert s["over_max_connections"] is True
    assert s["requests"] == s["successes"] + s["errors"]
    assert result.leaked == 0


def test_the_password_reaches_the_children_only_through_stdin(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.Popen

    def spy(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        seen.append((list(args), dict(kwargs.get("env") or {})))
        return real(args, **kwargs)

    monkeypatch.setattr(multiproc.subprocess, "Popen", spy)
    run_processes(pg_server.dsn, POOL, SHORT, processes=1)
    password = pg_server.settings.password
    assert password and seen
    for args, env in seen:
        assert not any(password in a for a in args)
        assert not any(password in v for v in env.values())
