"""CPU accounting (perfkit.postgres.cpu) against real local and Docker servers."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import psycopg
import pytest

from perfkit.postgres import PostgresServer
from perfkit.postgres.cpu import (
    CLIENT_BOUND_PCT,
    CpuUsage,
    container_counter,
    docker_stats_counter,
    measure_cpu,
)

#: About a second of one server core (PostgreSQL 15 on this kind of machine).
SERVER_BUSY_SQL = "SELECT count(*) FROM generate_series(1, 1e7)"


def _busy_client(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _server_busy(server: PostgresServer) -> CpuUsage:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")  # connection set up outside the interval
        with measure_cpu(server) as cpu:
            conn.execute(SERVER_BUSY_SQL).fetchall()
    assert cpu.usage is not None
    return cpu.usage


def _schedstat() -> tuple[float, float]:
    """This thread's seconds on a core and seconds runnable but waiting for one (kernel)."""
    path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
    on_cpu, waiting, _ = path.read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def test_busy_client_loop_shows_one_core_less_the_time_it_waited_for_one(
    pg_server: PostgresServer,
) -> None:
    # On a shared machine the loop may wait for a core; the kernel says how long,
    # so "near 100 %" is checked as: on-core + waiting = the whole interval.
    cpu0, wait0 = _schedstat()
    with measure_cpu(pg_server) as cpu:
        _busy_client(0.8)
    cpu1, wait1 = _schedstat()
    usage = cpu.usage
    assert usage is not None
    waited_pct = (wait1 - wait0) / usage.wall_s * 100.0
    assert (cpu1 - cpu0) / usage.wall_s * 100.0 + waited_pct > 90.0
    assert usage.client_cpu_pct == pytest.approx(100.0 - waited_pct, abs=12.0), usage
    assert usage.client_cpu_pct < 130.0
    assert usage.server_cpu_pct < 30.0, usage
    assert usage.client_bound == (usage.client_cpu_pct >= CLIENT_BOUND_PCT)
    if waited_pct < 8.0:
        assert usage.client_bound
    assert usage.cores >= 1
    assert usage.wall_s == pytest.approx(0.8, abs=0.2)


@pytest.mark.local
def test_server_busy_query_on_local_server_shows_server_cpu_above_client(
    pg_server: PostgresServer,
) -> None:
    usage = _server_busy(pg_server)
    assert usage.server_source == "process tree"
    assert usage.server_cpu_pct > 50.0, usage
    assert usage.server_cpu_pct > usage.client_cpu_pct, usage
    assert not usage.client_bound


@pytest.mark.docker
def test_server_busy_query_on_docker_server_shows_server_cpu_above_client(
    docker_pg_server: PostgresServer,
) -> None:
    usage = _server_busy(docker_pg_server)
    assert usage.server_source.startswith("cgroup") or usage.server_source == "docker stats"
    assert usage.server_cpu_pct > 50.0, usage
    assert usage.server_cpu_pct > usage.client_cpu_pct, usage


@pytest.mark.local
def test_local_server_cpu_counts_connections_that_ended_during_the_interval(
    pg_server: PostgresServer,
) -> None:
    with measure_cpu(pg_server) as cpu:
        for _ in range(3):
            with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
                conn.execute("SELECT count(*) FROM generate_series(1, 3e6)").fetchall()
    usage = cpu.usage
    assert usage is not None
    # Each backend exited before the interval ended: its CPU is in the postmaster's
    # reaped-children times, so the server still shows most of a core.
    assert usage.server_cpu_pct > 40.0, usage


def test_server_cpu_is_nan_without_a_server() -> None:
    with measure_cpu(None) as cpu:
        _busy_client(0.05)
    assert cpu.usage is not None
    assert math.isnan(cpu.usage.server_cpu_pct)
    assert cpu.usage.server_source == "none"


@pytest.mark.local
def test_local_server_gives_its_postmaster_and_backend_pids(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pids = pg_server.server_pids()
    assert pids[0] == pg_server.postmaster_pid()  # type: ignore[attr-defined]
    assert row[0] in pids


@pytest.mark.docker
def test_docker_server_gives_the_host_pids_of_its_container(
    docker_pg_server: PostgresServer,
) -> None:
    pids = docker_pg_server.server_pids()
    assert pids, "no host pids for the container"
    assert len(pids) >= 2  # postmaster and its background processes


@pytest.mark.docker
def test_docker_stats_counter_agrees_with_the_containers_cgroup(
    docker_pg_server: PostgresServer,
) -> None:
    container = docker_pg_server.container  # type: ignore[attr-defined]
    source, cgroup = container_counter(container)
    stats = docker_stats_counter(container)
    with psycopg.connect(docker_pg_server.dsn, autocommit=True) as conn:
        conn.execute(SERVER_BUSY_SQL).fetchall()
    assert source.startswith("cgroup")
    # Both read the same kernel counter; the API round trip lets some idle CPU in.
    assert stats() == pytest.approx(cgroup(), abs=0.3)
