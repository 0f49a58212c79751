"""perfkit's admin connections: a busy server is waited for, a hung one is given up on."""

from __future__ import annotations

import time

import pytest

from perfkit.errors import ServerUnresponsive
from perfkit.lifecycle.dbconnect import admin_connect, server_answers
from perfkit.postgres import PostgresServer, ServerSettings, create_server


def test_a_statement_longer_than_the_deadline_finishes_when_the_server_answers(
    pg_server: PostgresServer,
) -> None:
    with admin_connect(pg_server.dsn, deadline_s=0.5) as conn:
        t0 = time.monotonic()
        assert conn.execute("SELECT pg_sleep(2), 1").fetchone() == ("", 1)
        assert time.monotonic() - t0 >= 2  # probed (alive) at least three times, not cut


def test_a_paused_server_ends_the_statement_with_server_unresponsive() -> None:
    with (
        create_server(ServerSettings(backend="local")) as server,
        admin_connect(server.dsn, deadline_s=0.5) as conn,
    ):
        server.pause()  # SIGSTOP of every server process: nothing answers
        try:
            with pytest.raises(ServerUnresponsive, match="did not answer"):
                conn.execute("SELECT 1")
        finally:
            server.resume()


def test_server_answers_is_false_for_a_paused_server() -> None:
    with create_server(ServerSettings(backend="local")) as server:
        assert server_answers(server.dsn)
        server.pause()
        try:
            assert not server_answers(server.dsn, timeout_s=1)
        finally:
            server.resume()
