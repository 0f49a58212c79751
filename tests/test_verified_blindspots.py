"""``verified`` refuses migrations whose databases it cannot check, naming the migration file."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest
from pluginrun import InnerPytest, leftovers
from psycopg import sql
from psycopg.conninfo import make_conninfo

from perfkit.errors import MigrationError
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.strategies import WarmPool
from perfkit.postgres import PostgresServer

TABLES = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n"
#: A foreign table (a wrapper without handler: core PostgreSQL, no extension needed).
FOREIGN = TABLES + (
    "CREATE FOREIGN DATA WRAPPER perfkit_nowhere;\n"
    "CREATE SERVER elsewhere FOREIGN DATA WRAPPER perfkit_nowhere;\n"
    "CREATE FOREIGN TABLE remote_rows (id int) SERVER elsewhere;\n"
)
#: Unlogged tables, materialized views, partitions and large objects are read like any other.
NORMAL = TABLES + (
    "CREATE UNLOGGED TABLE scratch (id int);\n"
    "INSERT INTO items (name) VALUES ('seed');\n"
    "CREATE MATERIALIZED VIEW item_names AS SELECT name FROM items;\n"
    "CREATE TABLE events (at date NOT NULL) PARTITION BY RANGE (at);\n"
    "CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') "
    "TO ('2027-01-01');\n"
    "SELECT lo_from_bytea(0, 'blob');\n"
)


def _session(server: PostgresServer, tmp_path: Path, schema: str, **kw: object) -> IsolationSession:
    migrations = tmp_path / "schema.sql"
    migrations.write_text(schema)
    settings = IsolationSettings(
        backend="external",
        dsn=server.dsn,
        migrations=(migrations,),
        pool_size=1,
        **kw,  # type: ignore[arg-type]
    )
    return IsolationSession(settings)


def _ready_pool(session: IsolationSession, name: str = "verified") -> WarmPool:
    pool = session.strategy(name)
    assert isinstance(pool, WarmPool)
    assert pool.wait_full(timeout=60)
    return pool


@pytest.mark.parametrize("stable_dsn", [False, True], ids=["verified", "stable-dsn"])
def test_a_migration_with_a_foreign_table_is_refused_naming_the_file_and_line(
    pg_server: PostgresServer, tmp_path: Path, stable_dsn: bool
) -> None:
    with (
        _session(
            pg_server, tmp_path, FOREIGN, isolation="verified", stable_dsn=stable_dsn
        ) as session,
        pytest.raises(MigrationError) as info,
    ):
        _ready_pool(session)
    message = str(info.value)
    assert f"{tmp_path / 'schema.sql'}:4" in message  # the CREATE FOREIGN TABLE statement
    assert "foreign table public.remote_rows" in message
    assert "--perfkit-isolation=warm-pool or template" in message


def test_a_migration_that_turns_tuple_statistics_off_is_refused(
    fresh_pg_server: PostgresServer, tmp_path: Path
) -> None:
    """A server of its own: the role setting reaches every database of the cluster."""
    schema = TABLES + "ALTER ROLE CURRENT_USER SET track_counts = off;\n"
    with (
        _session(fresh_pg_server, tmp_path, schema) as session,
        pytest.raises(MigrationError) as info,
    ):
        _ready_pool(session)
    message = str(info.value)
    assert f"track_counts = off for perfkit's sessions ({tmp_path / 'schema.sql'}:2)" in message
    assert "warm-pool or template" in message


def test_the_same_foreign_table_migration_works_under_warm_pool(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    with _session(pg_server, tmp_path, FOREIGN) as session:
        _ready_pool(session, "warm-pool")
        lease = session.acquire("warm-pool", "t")
        session.release(lease)


def _rows_after_a_write(session: IsolationSession, insert: str, table: str) -> object:
    """One test commits ``insert``; the next one counts ``table``'s rows (its ``fetchone()``)."""
    lease = session.acquire("verified", "writes")
    conn = session.connection(lease)
    conn.execute(insert)
    conn.commit()
    session.release(lease)
    lease = session.acquire("verified", "looks")
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    rows = session.connection(lease).execute(query).fetchone()
    session.release(lease)
    return rows


def test_a_migration_with_unlogged_tables_views_partitions_and_large_objects_is_accepted(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    with _session(pg_server, tmp_path, NORMAL) as session:
        _ready_pool(session)
        rows = _rows_after_a_write(session, "INSERT INTO scratch VALUES (1)", "scratch")
    assert rows == (0,)


def test_the_plugin_reports_the_refusal_with_the_migration_file(
    inner_pytest: InnerPytest,
) -> None:
    result, document = inner_pytest.run(
        "def test_x(perfkit_db):\n    pass\n",
        "--perfkit-backend=local",
        "--perfkit-isolation=verified",
        schema=FOREIGN,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["E *MigrationError: isolation 'verified' cannot check databases made by the migrations*"]
    )
    result.stdout.fnmatch_lines(["E *foreign table public.remote_rows (*schema.sql:4)*"])
    assert leftovers(document) == []


#: A base type without binary send/receive functions (as some extensions' types are).
TEXT_ONLY_TYPE = TABLES + (
    "CREATE TYPE textonly;\n"
    "CREATE FUNCTION textonly_in(cstring) RETURNS textonly AS 'textin' LANGUAGE internal "
    "IMMUTABLE STRICT;\n"
    "CREATE FUNCTION textonly_out(textonly) RETURNS cstring AS 'textout' LANGUAGE internal "
    "IMMUTABLE STRICT;\n"
    "CREATE TYPE textonly (INPUT = textonly_in, OUTPUT = textonly_out, LIKE = text);\n"
    "CREATE TABLE labels (id int PRIMARY KEY, label textonly);\n"
    "INSERT INTO labels VALUES (1, 'seed');\n"
)


@pytest.mark.parametrize("stable_dsn", [False, True], ids=["verified", "stable-dsn"])
def test_seed_rows_without_binary_output_turn_reset_off_and_recreate_instead(
    pg_server: PostgresServer, tmp_path: Path, stable_dsn: bool
) -> None:
    with _session(
        pg_server, tmp_path, TEXT_ONLY_TYPE, isolation="verified", stable_dsn=stable_dsn
    ) as session:
        _ready_pool(session)
        rows = _rows_after_a_write(
            session, "INSERT INTO labels VALUES (2, 'left behind')", "labels"
        )
        events = [r for r in session.records if r["event"] == "reset_unavailable"]
    assert rows == (1,)
    assert len(events) == 1 and "binary" in events[0]["reason"]


def test_a_migration_whose_state_the_reader_cannot_read_is_refused_naming_the_file(
    fresh_pg_server: PostgresServer, tmp_path: Path
) -> None:
    """perfkit's role is no superuser here; the migration takes its own right to read a
    sequence's position, which the check compares."""
    password = secrets.token_hex(8)
    with psycopg.connect(fresh_pg_server.dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE perfkit_plain LOGIN CREATEDB PASSWORD {}").format(password)
        )
    dsn = make_conninfo(fresh_pg_server.dsn, user="perfkit_plain", password=password)
    schema = TABLES + "CREATE SEQUENCE hidden;\nREVOKE ALL ON SEQUENCE hidden FROM CURRENT_USER;\n"
    migrations = tmp_path / "schema.sql"
    migrations.write_text(schema)
    settings = IsolationSettings(backend="external", dsn=dsn, migrations=(migrations,), pool_size=1)
    with IsolationSession(settings) as session, pytest.raises(MigrationError) as info:
        _ready_pool(session)
    message = str(info.value)
    assert f"cannot read the state of a database made by the migrations {migrations}" in message
    assert "permission denied for sequence hidden" in message
    assert "warm-pool or template" in message
