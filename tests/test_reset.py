"""Reset in place: a rows-only change is undone (equal to the template again); others refused."""

from __future__ import annotations

import pytest
from dbstate import PLANTED, PLANTED_SAMPLE, run_statements
from sampling import sampled

from perfkit.lifecycle import Fingerprint, equals_template
from perfkit.lifecycle import reset as resets
from perfkit.lifecycle.cleancheck import (
    RELATIONS_CHANGED,
    end_other_sessions,
    read_state,
    unchanged,
)
from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.postgres import PostgresServer

pytestmark = pytest.mark.local

#: Planted kinds that change only rows or sequence positions: each must be reset in place.
ROWS_ONLY = {
    "insert_row",
    "update_row",
    "update_enum_column",
    "delete_row",
    "nextval",
    "setval",
    "serial_consumed_by_rolled_back_insert",
    "rows_written_with_triggers_off",
}


def _plan_after(
    server: PostgresServer, dbname: str, statements: str | list[str]
) -> tuple[resets.ResetPlan | None, resets.Pristine]:
    """As the ``verified`` strategy decides: reset only when relations alone changed."""
    with connect(server.dsn_for(dbname), autocommit=True) as conn:
        state, before = read_state(conn), resets.details(conn)
        pristine = resets.read_pristine(conn)
    run_statements(server, dbname, statements)
    with admin_connect(server.dsn) as admin:
        end_other_sessions(admin, dbname)
    with connect(server.dsn_for(dbname), autocommit=True) as conn:
        if unchanged(state, read_state(conn)) != [RELATIONS_CHANGED]:
            return None, pristine
        return resets.plan_reset(before, resets.details(conn)), pristine


@pytest.mark.parametrize("kind", sampled(sorted(PLANTED), PLANTED_SAMPLE))
def test_a_planted_change_is_reset_to_the_template_or_refused(
    kind: str, pg_server: PostgresServer, clone: str, state_template: str, reference: Fingerprint
) -> None:
    plan, pristine = _plan_after(pg_server, clone, PLANTED[kind])
    if kind in ROWS_ONLY:
        assert plan is not None, f"{kind} changes only rows: it should be reset in place"
    if plan is None:
        return
    with connect(pg_server.dsn_for(clone)) as conn:
        resets.reset(conn, plan, pristine)
    result = equals_template(pg_server, clone, state_template, reference=reference)
    assert result.equal, f"{kind}: reset left {result}"


def test_ddl_is_never_reset_in_place(pg_server: PostgresServer, clone: str) -> None:
    plan, _ = _plan_after(pg_server, clone, "ALTER TABLE accounts ADD COLUMN email text")
    assert plan is None


def test_a_reset_names_only_the_tables_that_changed(pg_server: PostgresServer, clone: str) -> None:
    plan, _ = _plan_after(pg_server, clone, "DELETE FROM extra.notes")
    assert plan is not None
    assert [(t.schema, t.name) for t in plan.tables] == [("extra", "notes")]
    assert plan.sequences == ()
