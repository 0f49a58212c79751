"""Schema migration tests (3 tests): build the schema from scratch, then migrate it.

Each test works in a private schema it drops at the end, so it behaves the
same under every isolation strategy (``truncate`` does not undo DDL).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.migration

V1 = (Path(__file__).parent / "migrations.sql").read_text()
V2_UP = """
ALTER TABLE tasks ADD COLUMN priority int NOT NULL DEFAULT 0;
UPDATE tasks SET priority = CASE WHEN schedule LIKE '*/%' THEN 1 ELSE 0 END;
CREATE INDEX tasks_priority ON tasks (priority DESC, next_run_at);
"""
V2_DOWN = "DROP INDEX tasks_priority; ALTER TABLE tasks DROP COLUMN priority;"


@pytest.fixture
def schema(perfkit_db: psycopg.Connection) -> Iterator[str]:
    name = f"mig_{secrets.token_hex(4)}"
    perfkit_db.execute(f"CREATE SCHEMA {name}")
    perfkit_db.execute(f"SET search_path = {name}")
    perfkit_db.execute(V1.encode())
    perfkit_db.commit()
    try:
        yield name
    finally:
        perfkit_db.rollback()
        perfkit_db.execute(f"DROP SCHEMA {name} CASCADE")
        perfkit_db.execute("RESET search_path")
        perfkit_db.commit()


def columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def seed(conn: psycopg.Connection, n: int) -> None:
    conn.execute("INSERT INTO executors (name, kind) VALUES ('m', 'sql')")
    conn.execute(
        "INSERT INTO tasks (name, schedule, executor_id) "
        "SELECT 'task-' || i, CASE WHEN i %% 2 = 0 THEN '*/5 * * * *' ELSE '0 * * * *' END, "
        "(SELECT id FROM executors) FROM generate_series(1, %s) AS i",
        [n],
    )
    conn.commit()


@pytest.mark.quick
def test_upgrade_backfills_priority(perfkit_db: psycopg.Connection, schema: str) -> None:
    seed(perfkit_db, 200)
    perfkit_db.execute(V2_UP.encode())
    perfkit_db.commit()
    counts = dict(
        perfkit_db.execute("SELECT priority, count(*) FROM tasks GROUP BY priority").fetchall()
    )
    assert counts == {0: 100, 1: 100}
    assert "priority" in columns(perfkit_db, schema, "tasks")


def test_downgrade_restores_the_previous_schema(
    perfkit_db: psycopg.Connection, schema: str
) -> None:
    before = columns(perfkit_db, schema, "tasks")
    seed(perfkit_db, 50)
    perfkit_db.execute(V2_UP.encode())
    perfkit_db.execute(V2_DOWN.encode())
    perfkit_db.commit()
    assert columns(perfkit_db, schema, "tasks") == before
    assert perfkit_db.execute("SELECT count(*) FROM tasks").fetchone() == (50,)


def test_failed_migration_leaves_schema_unchanged(
    perfkit_db: psycopg.Connection, schema: str
) -> None:
    before = columns(perfkit_db, schema, "runs")
    seed(perfkit_db, 10)
    with pytest.raises(psycopg.errors.UndefinedColumn), perfkit_db.transaction():
        perfkit_db.execute("ALTER TABLE runs ADD COLUMN duration_ms int")
        perfkit_db.execute("UPDATE runs SET duration_ms = no_such_column")
    assert columns(perfkit_db, schema, "runs") == before
