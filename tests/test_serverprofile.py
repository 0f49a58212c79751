"""The server profiler against real servers: planted waits, statements, bounds and cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pandas as pd
import psutil
import psycopg
import pytest

from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.postgres.settings import FAST_SERVER_SETTINGS
from perfkit.serverprofile import Profiler, WaitSampler, analysis, overhead
from perfkit.serverprofile.sampler import APPLICATION_NAME, CHILD_MODULE


def _planted_lock_wait(dsn: str, hold_s: float) -> Iterator[None]:
    """A second session blocked on a row lock the first one holds for ``hold_s``."""
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("CREATE TABLE IF NOT EXISTS planted (id int PRIMARY KEY, v int)")
        setup.execute("INSERT INTO planted VALUES (1, 0) ON CONFLICT DO NOTHING")
    holder = psycopg.connect(dsn)
    holder.execute("UPDATE planted SET v = v + 1 WHERE id = 1")  # transaction left open

    def blocked() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE planted SET v = v + 1 WHERE id = 1")

    waiter = threading.Thread(target=blocked)
    waiter.start()
    try:
        time.sleep(hold_s)
        yield
    finally:
        holder.commit()
        holder.close()
        waiter.join(10)


def _sampler_backends(dsn: str) -> int:
    # Named like the sampler so that a running sampler leaves this session out too.
    with psycopg.connect(dsn, autocommit=True, application_name=APPLICATION_NAME) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (APPLICATION_NAME,),
        ).fetchone()
    return int(row[0]) if row else -1


def _sampler_processes() -> list[psutil.Process]:
    children = psutil.Process().children(recursive=True)
    return [p for p in children if CHILD_MODULE in " ".join(p.cmdline())]


def _lock_waits(server: PostgresServer) -> int:
    sampler = WaitSampler(server.dsn, interval_s=0.01).start()
    try:
        for _ in _planted_lock_wait(server.dsn, hold_s=0.5):
            pass
    finally:
        profile = sampler.stop()
    return sum(n for key, n in profile.counts.items() if key[:2] == ("Lock", "transactionid"))


def test_sampler_sees_a_session_blocked_on_a_row_lock(pg_server: PostgresServer) -> None:
    assert _lock_waits(pg_server) > 0


@pytest.mark.docker
def test_sampler_sees_a_row_lock_wait_on_docker(docker_pg_server: PostgresServer) -> None:
    assert _lock_waits(docker_pg_server) > 0


def test_sampler_leaves_its_own_backend_out(pg_server: PostgresServer) -> None:
    with WaitSampler(pg_server.dsn, interval_s=0.005) as sampler:
        time.sleep(0.3)
        seen_running = _sampler_backends(pg_server.dsn)
    profile = sampler.profile()
    assert seen_running == 1  # it was connected while it sampled ...
    assert profile.samples > 10
    # ... and never counted itself: no client backend was running its query.
    running_own_query = [k for k in profile.counts if k[2] == "active" and k[3] == "client backend"]
    assert running_own_query == []


def test_sampler_stops_without_leaving_a_process_or_connection(pg_server: PostgresServer) -> None:
    sampler = WaitSampler(pg_server.dsn, interval_s=0.01).start()
    assert _sampler_processes() != []
    time.sleep(0.1)
    sampler.stop()
    assert not sampler.alive
    assert _sampler_processes() == []
    deadline = time.monotonic() + 5
    while _sampler_backends(pg_server.dsn) and time.monotonic() < deadline:
        time.sleep(0.05)  # the backend exits just after the client closes
    assert _sampler_backends(pg_server.dsn) == 0


def test_profiler_close_stops_its_sampler(pg_server: PostgresServer) -> None:
    with Profiler(pg_server.dsn) as profiler, profiler.measure("v"):
        assert _sampler_backends(pg_server.dsn) == 1
    assert _sampler_processes() == []


def test_sampler_memory_does_not_grow_with_duration(pg_server: PostgresServer) -> None:
    with WaitSampler(pg_server.dsn, interval_s=0.002) as sampler:
        time.sleep(0.3)
        short = sampler.profile()
        time.sleep(1.2)
        long = sampler.profile()
    assert long.samples > 3 * short.samples
    assert len(long.counts) <= len(short.counts) + 2  # keys, not samples, are stored


def _planted_statement_calls(server: PostgresServer) -> list[int]:
    profiler = Profiler.for_server(server)
    with profiler.measure("planted"), psycopg.connect(server.dsn, autocommit=True) as conn:
        for i in range(37):
            conn.execute("SELECT %s::int + 41 AS planted_statement", (i,))
    top = profiler.frames()["top_statements"]
    assert not top["query"].str.contains("perfkit-serverprofile").any()
    return top[top["query"].str.contains("planted_statement")]["calls"].tolist()


def test_statement_deltas_count_a_planted_statement(pg_server: PostgresServer) -> None:
    assert _planted_statement_calls(pg_server) == [37]


@pytest.mark.docker
def test_statement_deltas_count_a_planted_statement_on_docker(
    docker_pg_server: PostgresServer,
) -> None:
    assert _planted_statement_calls(docker_pg_server) == [37]


def test_profiler_creates_no_extension_when_told_not_to(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS not_ours")
        conn.execute("CREATE DATABASE not_ours")
    dsn = pg_server.dsn_for("not_ours")
    profiler = Profiler(dsn, create_extension=False)
    with profiler.measure("v"):
        pass
    with psycopg.connect(dsn) as conn:
        created = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
        )
        assert created.fetchone() == (0,)
    assert any("not installed in this database" in note for note in profiler.notes)


def test_profiler_frames_hold_counters_and_backend_states(pg_server: PostgresServer) -> None:
    profiler = Profiler(pg_server.dsn)
    with profiler.measure("v", size=3) as run, psycopg.connect(pg_server.dsn) as conn:
        conn.execute("SELECT pg_sleep(0.2)")
        run.add("pool", {"requests_num": 5})
    counters = profiler.frames()["server_counters"]
    sources = set(counters["source"])
    assert {"pg_stat_database", "pg_stat_bgwriter", "backends", "sampler", "pool"} <= sources
    commits = counters[counters["counter"] == "xact_commit"]["value"]
    assert commits.iloc[0] >= 1
    assert set(counters["size"]) == {3}


@pytest.fixture
def server_without_statements() -> Iterator[PostgresServer]:
    settings = {**FAST_SERVER_SETTINGS, "shared_preload_libraries": ""}
    with create_server(ServerSettings(backend="local", server_settings=settings)) as server:
        yield server


def test_profiler_says_so_and_carries_on_without_pg_stat_statements(
    server_without_statements: PostgresServer,
) -> None:
    profiler = Profiler(server_without_statements.dsn)
    with profiler.measure("v"), psycopg.connect(server_without_statements.dsn) as conn:
        conn.execute("SELECT pg_sleep(0.05)")
    frames = profiler.frames()
    assert any("pg_stat_statements is not available" in note for note in profiler.notes)
    assert frames["top_statements"].empty
    assert not frames["wait_profile"].empty


def test_overhead_runs_alternate_which_arm_goes_first() -> None:
    expected = [(0, False), (0, True), (1, True), (1, False), (2, False), (2, True)]
    assert overhead.order(3) == expected


def test_overhead_is_the_paired_throughput_loss() -> None:
    rows = []
    for pair in range(8):
        base = 1000.0 + 37 * pair
        rows += [
            {"pair": pair, "sampler": False, "throughput_rps": base},
            {"pair": pair, "sampler": True, "throughput_rps": base * 0.9},
        ]
    est = analysis.overhead(pd.DataFrame(rows))
    assert est is not None and est.n == 8
    assert est.value == pytest.approx(0.1)


def test_sampler_process_exits_when_its_parent_is_killed(pg_server: PostgresServer) -> None:
    script = (
        "import os, sys\n"
        "from perfkit.serverprofile import WaitSampler\n"
        "s = WaitSampler(os.environ['SAMPLER_DSN']).start()\n"
        "print(s.pid, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    env = {**os.environ, "SAMPLER_DSN": str(pg_server.dsn)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    child = int(done.stdout.split()[0])
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(child)


def test_a_profiler_dropped_without_close_stops_its_sampler(pg_server: PostgresServer) -> None:
    profiler = Profiler(pg_server.dsn)
    with profiler.measure("v"):
        pass
    assert _sampler_processes() != []
    del profiler
    assert _sampler_processes() == []
