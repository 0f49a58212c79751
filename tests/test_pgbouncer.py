"""PgBouncer in front of real servers: pooling modes, cleanup, sweeps after SIGKILL, secrets."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import psycopg
import pytest

from perfkit.doctor import check_pgbouncer
from perfkit.errors import BackendUnavailable, ConfigError, ServerStartError
from perfkit.postgres import PostgresServer, ServerSettings, cleanup, create_server, leaks
from perfkit.postgres.local import free_port
from perfkit.postgres.pgbouncer import (
    AUTH_NAME,
    CONFIG_NAME,
    PgBouncer,
    PgBouncerSettings,
    find_pgbouncer,
)

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from perfkit.postgres import ServerSettings, create_server
    from perfkit.postgres.pgbouncer import PgBouncer
    server = create_server(ServerSettings(backend="external", dsn=os.environ["UPSTREAM_DSN"]))
    with server, PgBouncer(server) as bouncer:
        print(json.dumps({"pid": bouncer.pid, "workdir": str(bouncer.workdir)}), flush=True)
        time.sleep(120)
    """
)


def own_tempdirs() -> set[Path]:
    """perfkit temp directories this test process owns (others' runs may make their own)."""
    return {p for p in cleanup.owned_tempdirs() if cleanup.owner_of(p) == os.getpid()}


def bouncer_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "pgbouncer"}


def pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_child(server: PostgresServer) -> tuple[subprocess.Popen[str], int, Path]:
    """A python process running a pgbouncer in front of ``server``; its pid and directory."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "UPSTREAM_DSN": server.dsn},  # not argv: ps shows argv
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        pytest.fail(f"child exited with {proc.returncode} before starting pgbouncer")
    info = json.loads(line)
    return proc, int(info["pid"]), Path(info["workdir"])


def connect(bouncer: PgBouncer) -> psycopg.Connection:
    # No server-side prepared statements: a transaction-mode pool does not keep them.
    return psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None)


def test_queries_go_through_a_transaction_pool_that_frees_idle_clients_servers(
    pg_server: PostgresServer,
) -> None:
    settings = PgBouncerSettings(pool_mode="transaction")
    with PgBouncer(pg_server, settings) as bouncer, connect(bouncer) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
        pool = bouncer.pool()
    assert row == (pg_server.settings.user, pg_server.settings.dbname)
    assert pool["pool_mode"] == "transaction"
    assert pool["cl_active"] == 1  # the idle client ...
    assert pool["sv_active"] == 0  # ... holds no server connection between transactions


def test_queries_go_through_a_session_pool_that_pins_a_server_per_client(
    pg_server: PostgresServer,
) -> None:
    settings = PgBouncerSettings(pool_mode="session")
    with (
        PgBouncer(pg_server, settings) as bouncer,
        connect(bouncer) as first,
        connect(bouncer) as second,
    ):
        rows = [c.execute("SELECT pg_backend_pid()").fetchone() for c in (first, second)]
        pool = bouncer.pool()
    assert rows[0] != rows[1]
    assert pool["pool_mode"] == "session"
    assert pool["cl_active"] == 2 and pool["sv_active"] == 2


def test_pgbouncer_in_front_of_a_container_passes_queries(
    docker_pg_server: PostgresServer,
) -> None:
    with PgBouncer(docker_pg_server) as bouncer, connect(bouncer) as conn:
        row = conn.execute("SELECT 40 + 2").fetchone()
        stats = {r["database"]: r for r in bouncer.show("STATS")}
    assert row == (42,)
    assert stats[docker_pg_server.settings.dbname]["total_query_count"] >= 1


def test_pool_size_limits_server_connections(pg_server: PostgresServer) -> None:
    settings = PgBouncerSettings(pool_mode="session", default_pool_size=1, query_wait_timeout=1)
    with PgBouncer(pg_server, settings) as bouncer, connect(bouncer) as conn:
        conn.execute("SELECT 1")
        with (
            pytest.raises(psycopg.OperationalError, match="query_wait_timeout"),
            connect(bouncer) as second,
        ):
            second.execute("SELECT 1")


def test_private_directory_and_auth_file_are_owner_only(pg_server: PostgresServer) -> None:
    with PgBouncer(pg_server) as bouncer:
        assert bouncer.workdir is not None
        modes = {
            "dir": bouncer.workdir.stat().st_mode & 0o777,
            "auth": (bouncer.workdir / AUTH_NAME).stat().st_mode & 0o777,
        }
    assert modes == {"dir": 0o700, "auth": 0o600}


def test_pgbouncer_listens_on_loopback_only(pg_server: PostgresServer) -> None:
    with PgBouncer(pg_server) as bouncer:
        assert bouncer.pid is not None
        listening = {
            c.laddr.ip
            for c in psutil.Process(bouncer.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
    assert listening == {"127.0.0.1"}


def test_auth_file_holds_the_scram_verifier_not_the_password(pg_server: PostgresServer) -> None:
    with PgBouncer(pg_server) as bouncer:
        assert bouncer.workdir is not None
        auth = (bouncer.workdir / AUTH_NAME).read_text()
    assert bouncer.auth_secret == "scram-verifier"
    assert "SCRAM-SHA-256$" in auth and pg_server.settings.password not in auth


def test_nothing_is_left_after_stop(pg_server: PostgresServer) -> None:
    with PgBouncer(pg_server) as bouncer:
        pid, workdir = bouncer.pid, bouncer.workdir
        assert pid is not None and pid_running(pid)
    assert not pid_running(pid)
    assert workdir is not None and not workdir.exists()
    assert bouncer not in cleanup.live_components()


def test_nothing_is_left_after_a_keyboard_interrupt_in_the_with_block(
    pg_server: PostgresServer,
) -> None:
    with pytest.raises(KeyboardInterrupt), PgBouncer(pg_server) as bouncer:
        pid, workdir = bouncer.pid, bouncer.workdir
        raise KeyboardInterrupt
    assert pid is not None and not pid_running(pid)
    assert workdir is not None and not workdir.exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_nothing_is_left_when_the_owning_run_is_interrupted(
    pg_server: PostgresServer, sig: signal.Signals
) -> None:
    proc, pid, workdir = start_child(pg_server)
    proc.send_signal(sig)
    proc.wait(30)
    assert not pid_running(pid) and not workdir.exists()


def test_failed_start_raises_with_the_log_tail_and_leaves_nothing() -> None:
    dead = f"postgresql://perfkit:secret-pw@127.0.0.1:{free_port()}/perfkit"  # nothing listens
    server = create_server(ServerSettings(backend="external", dsn=dead))
    dirs_before, pids_before = own_tempdirs(), bouncer_pids()
    with pytest.raises(ServerStartError, match="pgbouncer log tail") as raised:
        PgBouncer(server, PgBouncerSettings(startup_timeout=1)).start()
    assert "secret-pw" not in str(raised.value)
    assert own_tempdirs() <= dirs_before
    assert bouncer_pids() <= pids_before


def test_a_pgbouncer_whose_owner_was_killed_is_reported_and_swept(
    pg_server: PostgresServer,
) -> None:
    proc, pid, workdir = start_child(pg_server)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait(30)
    assert pid_running(pid) and workdir.exists()
    assert any(f"pgbouncer process {pid}" in item for item in leaks.find_leftovers())

    removed = leaks.sweep_dead_owners()

    assert any(f"pgbouncer process {pid}" in item for item in removed)
    assert not pid_running(pid) and not workdir.exists()
    assert not any(str(workdir) in item for item in leaks.find_leftovers())


def test_missing_binary_raises_backend_unavailable_before_anything_starts(
    pg_server: PostgresServer,
) -> None:
    dirs_before, pids_before = own_tempdirs(), bouncer_pids()
    with pytest.raises(BackendUnavailable, match="apt-get install pgbouncer"):
        PgBouncer(pg_server, search_path="")
    assert own_tempdirs() <= dirs_before
    assert bouncer_pids() <= pids_before


def test_finder_looks_in_sbin_even_when_path_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("PERFKIT_PGBOUNCER", raising=False)
    assert os.access(find_pgbouncer(), os.X_OK)


def test_password_never_appears_in_masked_dsn_repr_or_logs(
    pg_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    password = pg_server.settings.password
    caplog.set_level(logging.DEBUG)
    with PgBouncer(pg_server) as bouncer, connect(bouncer) as conn:
        conn.execute("SELECT 1")
        assert bouncer.workdir is not None
        shown = {
            "masked_dsn": bouncer.masked_dsn,
            "repr": repr(bouncer),
            "describe": str(bouncer.describe()),
            "config": (bouncer.workdir / CONFIG_NAME).read_text(),
            "pgbouncer log": bouncer.log_text(),
            "python log": caplog.text,
        }
        assert password in bouncer.dsn  # the real DSN carries it; nothing shown does
    assert {name: password in text for name, text in shown.items()} == dict.fromkeys(shown, False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pool_mode", "statement"),
        ("default_pool_size", 0),
        ("max_client_conn", True),
        ("query_wait_timeout", 0),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"PgBouncerSettings.{field}"):
        PgBouncerSettings(**{field: value})  # type: ignore[arg-type]


def test_doctor_reports_the_pgbouncer_binary() -> None:
    status = check_pgbouncer()
    assert status.usable and "PgBouncer" in status.detail


def test_server_login_retry_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="server_login_retry"):
        PgBouncerSettings(server_login_retry=0)
