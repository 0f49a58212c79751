"""``equals_template``: a database equals a fresh clone of its template, or the change is named.

Each planted change (``dbstate.PLANTED``) is one kind of state a test can leave behind; every
one must be seen (a miss would hand the next test a changed database). The
clean cases must not be called dirty (that would only cost a needless clone).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from dbstate import CLEAN, CLEAN_SAMPLE, PLANTED, PLANTED_SAMPLE, run_statements
from sampling import sampled

from perfkit.lifecycle import Fingerprint, equals_template
from perfkit.lifecycle.dbconnect import connect
from perfkit.postgres import PostgresServer

pytestmark = pytest.mark.local


@pytest.mark.parametrize("kind", sampled(sorted(PLANTED), PLANTED_SAMPLE))
def test_a_planted_change_is_seen(
    kind: str, pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    run_statements(pg_server, clone, PLANTED[kind])
    result = equals_template(pg_server, clone, state_template, reference=reference)
    assert not result.equal, f"{kind}: the change was not seen"


@pytest.mark.parametrize("kind", sampled(sorted(CLEAN), CLEAN_SAMPLE))
def test_work_that_leaves_no_trace_is_clean(
    kind: str, pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    run_statements(pg_server, clone, CLEAN[kind])
    result = equals_template(pg_server, clone, state_template, reference=reference)
    assert result.equal, str(result)


def test_a_fresh_clone_equals_its_template(
    pg_server: PostgresServer, clone: str, state_template: str
) -> None:
    assert equals_template(pg_server, clone, state_template).equal


def _left_open(server: PostgresServer, dbname: str, work: Callable[[psycopg.Connection], None]):
    conn = connect(server.dsn_for(dbname))
    work(conn)
    return conn


def test_an_uncommitted_write_from_a_connection_left_open_is_not_clean(
    pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    conn = _left_open(pg_server, clone, lambda c: c.execute("INSERT INTO empty_things VALUES (9)"))
    try:
        result = equals_template(pg_server, clone, state_template, reference=reference)
        assert "1 other session(s) still connected" in result.differences
    finally:
        conn.close()


def test_a_committed_write_from_a_connection_left_open_is_seen(
    pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    def write(c: psycopg.Connection) -> None:
        c.execute("INSERT INTO empty_things VALUES (9)")
        c.commit()

    conn = _left_open(pg_server, clone, write)
    try:
        result = equals_template(pg_server, clone, state_template, reference=reference)
        assert "table public.empty_things changed" in result.differences
    finally:
        conn.close()


def test_the_difference_names_the_table(
    pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    run_statements(pg_server, clone, "DELETE FROM extra.notes")
    result = equals_template(pg_server, clone, state_template, reference=reference)
    assert result.differences == ("table extra.notes changed",)


def test_a_new_table_is_named_as_added(
    pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    run_statements(pg_server, clone, "CREATE TABLE newbie (x int)")
    result = equals_template(pg_server, clone, state_template, reference=reference)
    assert "table public.newbie added" in result.differences
