"""``verified``: a released database is reused when the server shows it unchanged, else remade."""

from __future__ import annotations

import secrets
import time

import psycopg
import pytest

from perfkit.lifecycle import equals_template
from perfkit.lifecycle.bench import SUITE_DIR
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.strategies import Lease
from perfkit.lifecycle.timing_summary import summary_lines
from perfkit.lifecycle.verified import VerifiedPool
from perfkit.postgres import PostgresServer, reuse

MIGRATIONS = SUITE_DIR / "migrations.sql"
WRITE = "INSERT INTO tags (name) VALUES ('left behind')"  # the lab suite's migrations
DDL = "CREATE TABLE left_behind (x int)"
NAME = "verified"


def _session(pg_server: PostgresServer, **kw: object) -> IsolationSession:
    settings = IsolationSettings(
        backend="external",
        dsn=pg_server.dsn,
        migrations=(MIGRATIONS,),
        pool_size=2,
        **kw,  # type: ignore[arg-type]
    )
    return IsolationSession(settings)


def _pool(session: IsolationSession) -> VerifiedPool:
    pool = session.strategy(NAME)
    assert isinstance(pool, VerifiedPool)
    assert pool.wait_full(timeout=60)
    return pool


def _settle(pool: VerifiedPool, timeout: float = 30.0) -> None:
    """Wait until the recycler has dealt with every released database."""
    deadline = time.monotonic() + timeout
    while pool._returned.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)


def _use(session: IsolationSession, test_id: str, statement: str | None) -> Lease:
    lease = session.acquire(NAME, test_id)
    conn = session.connection(lease)
    if statement:
        conn.execute(statement)
        conn.commit()
    session.release(lease)
    return lease


def _event_count(session: IsolationSession, event: str) -> int:
    return sum(r["event"] == event for r in session.records)


def test_a_database_a_test_only_read_is_handed_out_again_without_a_clone(
    pg_server: PostgresServer,
) -> None:
    with _session(pg_server) as session:
        pool = _pool(session)
        _use(session, "reader", "SELECT count(*) FROM pg_class")
        _settle(pool)
        assert _event_count(session, "pool_reuse") == 1
        assert _event_count(session, "drop") == 0


def test_a_reused_database_gets_a_new_name(pg_server: PostgresServer) -> None:
    """Code under test caches connections per DSN; the ones it kept were ended."""
    with _session(pg_server) as session:
        pool = _pool(session)
        reader = _use(session, "reader", None)
        _settle(pool)
        assert _event_count(session, "pool_reuse") == 1
        (reused,) = [r["dbname"] for r in session.records if r["event"] == "pool_reuse"]
        assert reused != reader.dbname
        assert reader.dbname not in _databases(pg_server, reader.dbname)


def test_a_database_whose_schema_a_test_changed_is_not_handed_out_again(
    pg_server: PostgresServer,
) -> None:
    with _session(pg_server) as session:
        pool = _pool(session)
        changer = _use(session, "changer", DDL)
        _settle(pool)
        later = [session.acquire(NAME, f"t{i}") for i in range(3)]
        assert changer.dbname not in {lease.dbname for lease in later}
        for lease in later:
            session.release(lease)
        assert _event_count(session, "pool_dirty") == 1


def test_a_database_a_test_wrote_rows_in_is_reset_and_handed_out_equal_to_the_template(
    pg_server: PostgresServer,
) -> None:
    with _session(pg_server) as session:
        pool = _pool(session)
        _use(session, "writer", WRITE)
        _settle(pool)
        assert _event_count(session, "pool_reset") == 1
        (reset,) = [r["dbname"] for r in session.records if r["event"] == "pool_reset"]
        later = [session.acquire(NAME, f"t{i}") for i in range(3)]
        assert reset in {lease.dbname for lease in later}
        for lease in later:
            _close_ours(lease)
            assert equals_template(pg_server, lease.dbname, session.template).equal
            session.release(lease)


def test_the_next_test_gets_a_database_equal_to_the_template_after_a_left_open_write(
    pg_server: PostgresServer,
) -> None:
    with _session(pg_server) as session:
        pool = _pool(session)
        lease = session.acquire(NAME, "leaves-a-connection")
        left_open = psycopg.connect(lease.dsn)  # the code under test's own, never closed
        left_open.execute(WRITE)
        session.release(lease)
        _settle(pool)
        for i in range(3):
            nxt = session.acquire(NAME, f"next{i}")
            _close_ours(nxt)
            assert equals_template(pg_server, nxt.dbname, session.template).equal
            session.release(nxt)
            _settle(pool)
        left_open.close()


def test_the_summary_line_counts_reused_reset_and_recreated_databases(
    pg_server: PostgresServer,
) -> None:
    with _session(pg_server) as session:
        pool = _pool(session)
        _use(session, "reader", None)
        _settle(pool)
        _use(session, "writer", WRITE)
        _settle(pool)
        _use(session, "changer", DDL)
        _settle(pool)
        (line,) = summary_lines(session.records)
    assert line.startswith("verified: 3 tests")
    assert "1 reused clean (check p50" in line
    assert "1 reset in place (check p50" in line
    assert "1 recreated (check p50" in line


def test_a_parked_database_is_adopted_only_when_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(reuse.NAMESPACE_ENV, f"test-{secrets.token_hex(4)}")
    before = {info.key for info in reuse.list_reused()}
    local = IsolationSettings(backend="local", migrations=(MIGRATIONS,), pool_size=2, reuse=True)
    try:
        with IsolationSession(local) as first:
            _pool(first)
            prefix = first.strategy(NAME)._park_prefix  # type: ignore[attr-defined]
            server = first.shared_server
        parked = _databases(server, prefix)
        assert len(parked) == 2, "the first run parked its ready databases"
        with psycopg.connect(server.dsn_for(parked[0]), autocommit=True) as conn:
            conn.execute(WRITE)
        with IsolationSession(local) as second:
            pool = _pool(second)
            assert _event_count(second, "pool_adopt_refused") == 1
            assert _event_count(second, "pool_adopt") == 1
            for i in range(2):
                lease = second.acquire(NAME, f"t{i}")
                _close_ours(lease)
                assert equals_template(server, lease.dbname, second.template).equal
                second.release(lease)
            _settle(pool)
    finally:
        reuse.stop_reused(keys={i.key for i in reuse.list_reused()} - before)


def _close_ours(lease: Lease) -> None:
    """Close the connection perfkit opened ahead for the test (a session of its own)."""
    if lease.opened is not None:
        lease.opened.close()


def _databases(pg_server: PostgresServer, prefix: str) -> list[str]:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", [prefix]
        ).fetchall()
    return [r[0] for r in rows]


pytestmark = pytest.mark.local
