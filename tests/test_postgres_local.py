"""The local backend: a real PostgreSQL cluster from binaries on this machine."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psycopg
import pytest

from perfkit.errors import BackendUnavailable
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.postgres.local import LocalServer


def test_server_accepts_connections_on_loopback(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.dsn) as conn:
        row = conn.execute("SELECT inet_server_addr()::text").fetchone()
    assert row is not None and row[0].startswith("127.0.0.1")


def test_server_settings_are_applied(pg_server: PostgresServer) -> None:
    with psycopg.connect(pg_server.dsn) as conn:
        row = conn.execute("SHOW fsync").fetchone()
    assert row == ("off",)


def test_wrong_password_is_refused(pg_server: PostgresServer) -> None:
    dsn = pg_server.dsn.replace(pg_server.settings.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, connect_timeout=5)


def test_server_does_not_run_as_root(pg_server: PostgresServer) -> None:
    assert isinstance(pg_server, LocalServer)
    if os.geteuid() != 0:
        pytest.skip("only meaningful when the tests run as root")
    with psycopg.connect(pg_server.dsn) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    owner = os.stat(row[0]).st_uid
    assert owner != 0


def test_ready_time_is_recorded_after_start(pg_server: PostgresServer) -> None:
    assert pg_server.started_at is not None and pg_server.ready_at is not None
    assert pg_server.ready_at >= pg_server.started_at


def test_memory_counts_the_whole_server(pg_server: PostgresServer) -> None:
    # postmaster + background workers together use at least a few MiB
    assert pg_server.memory_bytes() > 4 * 2**20


def test_version_is_reported(pg_server: PostgresServer) -> None:
    assert pg_server.server_version()[0].isdigit()


def test_log_text_is_the_servers_log(pg_server: PostgresServer) -> None:
    assert "database system is ready to accept connections" in (pg_server.log_text() or "")


def test_stop_removes_data_directory_and_processes() -> None:
    server = create_server(ServerSettings(backend="local"))
    server.start()
    workdir = server.workdir
    pid = server._proc.pid if server._proc else None
    server.stop()
    assert workdir is not None and not workdir.exists()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_take_down_refuses_connections_and_bring_up_restores(
    fresh_pg_server: PostgresServer,
) -> None:
    fresh_pg_server.take_down()
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(fresh_pg_server.dsn, connect_timeout=2)
    fresh_pg_server.bring_up()
    assert fresh_pg_server.is_ready()


def test_pause_makes_connections_hang_until_resume(fresh_pg_server: PostgresServer) -> None:
    fresh_pg_server.pause()
    try:
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(fresh_pg_server.dsn, connect_timeout=2)
    finally:
        fresh_pg_server.resume()
    assert fresh_pg_server.is_ready()


def test_start_without_wait_returns_before_ready() -> None:
    server = create_server(ServerSettings(backend="local"))
    try:
        server.start(wait=False)
        assert server.ready_at is None
        ready = server.wait_until_ready()
        assert ready >= (server.started_at or 0) and server.is_ready()
    finally:
        server.stop()


def test_missing_binaries_fail_before_anything_starts(tmp_path: object) -> None:
    with pytest.raises(BackendUnavailable, match="no PostgreSQL server binaries"):
        create_server(ServerSettings(backend="local", bindir="/nonexistent/bin"))


def test_bad_server_setting_fails_start_with_log_and_cleans_up() -> None:
    server = create_server(
        ServerSettings(backend="local", server_settings={"shared_buffers": "lots"})
    )
    with pytest.raises(Exception, match="shared_buffers"):
        server.start()
    assert server.workdir is None


def test_repr_and_description_never_show_the_password(pg_server: PostgresServer) -> None:
    secret = pg_server.settings.password
    assert secret not in repr(pg_server)
    assert secret not in str(pg_server.describe())
    assert "***" in pg_server.masked_dsn


def test_auto_explains_its_choice() -> None:
    from perfkit.postgres import choose_backend

    choice = choose_backend(ServerSettings(backend="auto"))
    assert choice.backend in ("docker", "local")
    assert choice.reason


def test_a_killed_local_server_leaves_no_shared_memory_segment(tmp_path: Path) -> None:
    """Its dynamic shared memory lives in the data directory, which cleanup removes."""
    before = {p.name for p in Path("/dev/shm").glob("PostgreSQL.*")}
    server = create_server(ServerSettings(backend="local")).start()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("SELECT 1")
        pid = server.postmaster_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    finally:
        server.stop()
    after = {p.name for p in Path("/dev/shm").glob("PostgreSQL.*")}
    assert not (after - before)
