"""The external backend: an existing server reached by DSN; nothing started, nothing stopped."""

from __future__ import annotations

import psycopg
import pytest

from perfkit.errors import BackendUnavailable, ConfigError, OutageUnsupported
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.postgres.local import free_port


def test_external_server_is_used_as_is(pg_server: PostgresServer) -> None:
    server = create_server(ServerSettings(backend="external", dsn=pg_server.dsn))
    with server, psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert pg_server.is_ready()  # leaving the context did not stop someone else's server


def test_refusing_dsn_names_host_port_and_hides_password() -> None:
    port = free_port()
    dsn = f"postgresql://someone:hunter2@127.0.0.1:{port}/db"
    with pytest.raises(BackendUnavailable) as info:
        create_server(ServerSettings(backend="external", dsn=dsn)).start()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_non_loopback_dsn_is_rejected_before_connecting() -> None:
    with pytest.raises(ConfigError, match="not a loopback"):
        create_server(ServerSettings(backend="external", dsn="postgresql://u:p@0.0.0.0/db"))


def test_outage_controls_are_unavailable(pg_server: PostgresServer) -> None:
    server = create_server(ServerSettings(backend="external", dsn=pg_server.dsn))
    with pytest.raises(OutageUnsupported, match="external"):
        server.pause()


def test_log_of_someone_elses_server_is_not_available(pg_server: PostgresServer) -> None:
    with create_server(ServerSettings(backend="external", dsn=pg_server.dsn)) as server:
        assert server.log_text() is None
