"""The WAL tells the stable-DSN check which tables and catalog pages a test wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbstate import SCHEMA
from psycopg import sql
from psycopg.conninfo import make_conninfo

from perfkit.lifecycle import walcheck
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.postgres import PostgresServer, ServerSettings, create_server

DB = "walcheck_db"


@pytest.fixture(scope="module")
def wal_server() -> Iterator[PostgresServer]:
    """A server of this module's own, where pg_walinspect gets installed."""
    with create_server(ServerSettings(backend="local")) as server:
        yield server


@pytest.fixture
def database(wal_server: PostgresServer) -> Iterator[tuple[psycopg.Connection, int]]:
    """A database with the shared schema: (an autocommit connection to it, its oid)."""
    with psycopg.connect(wal_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DB)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    conn = psycopg.connect(make_conninfo(wal_server.dsn, dbname=DB), autocommit=True)
    conn.execute(SCHEMA.encode())
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    assert row is not None
    yield conn, int(row[0])
    conn.close()
    with psycopg.connect(wal_server.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(DB)))


@pytest.fixture
def reader(
    wal_server: PostgresServer, database: tuple[psycopg.Connection, int]
) -> Iterator[walcheck.WalReader]:
    found = walcheck.WalReader.open(wal_server.dsn, database[1], install=True)
    assert found is not None, "pg_walinspect should be available on a server perfkit started"
    yield found
    found.close()


def _touched_by(
    database: tuple[psycopg.Connection, int], reader: walcheck.WalReader, *statements: str
) -> walcheck.Touched | None:
    conn, _ = database
    nodes = walcheck.read_node_map(conn)
    start = reader.position()
    for statement in statements:
        conn.execute(statement)
    return walcheck.classify(reader.written_since(start), nodes)


def test_rows_written_name_their_tables(
    database: tuple[psycopg.Connection, int], reader: walcheck.WalReader
) -> None:
    # (catalog pages may be named too: reading them prunes dead rows, which is logged)
    touched = _touched_by(database, reader, "INSERT INTO accounts (name) VALUES ('cy')")
    assert touched is not None
    assert touched.tables == {("public", "accounts"), ("public", "audit")}  # and its trigger's


def test_ddl_names_the_catalog_pages_it_wrote(
    database: tuple[psycopg.Connection, int], reader: walcheck.WalReader
) -> None:
    touched = _touched_by(database, reader, "ALTER TABLE accounts ADD COLUMN email text")
    assert touched is not None
    assert {"pg_attribute", "pg_class"} <= {catalog for catalog, _ in touched.pages}


def test_a_relation_made_after_the_baseline_is_not_placed(
    database: tuple[psycopg.Connection, int], reader: walcheck.WalReader
) -> None:
    touched = _touched_by(
        database, reader, "CREATE TABLE newbie (x int)", "INSERT INTO newbie VALUES (1)"
    )
    assert touched is None  # the full scan decides


def test_a_commit_that_did_not_wait_for_its_wal_is_read(
    database: tuple[psycopg.Connection, int], reader: walcheck.WalReader
) -> None:
    touched = _touched_by(
        database, reader, "SET synchronous_commit = off", "INSERT INTO empty_things VALUES (1)"
    )
    assert touched is not None
    assert touched.tables == {("public", "empty_things")}


def test_other_databases_writes_are_not_reported(
    wal_server: PostgresServer,
    database: tuple[psycopg.Connection, int],
    reader: walcheck.WalReader,
) -> None:
    with psycopg.connect(wal_server.dsn, autocommit=True) as other:
        other.execute("CREATE TABLE IF NOT EXISTS elsewhere (x int)")
        touched = _touched_by(database, reader, "SELECT 1")
        other.execute("INSERT INTO elsewhere VALUES (1)")
    assert touched == walcheck.Touched()


def test_unlogged_tables_are_listed_for_a_scan_of_their_own(
    database: tuple[psycopg.Connection, int],
) -> None:
    assert walcheck.read_node_map(database[0]).unlogged == (("public", "scratchpad"),)


def test_a_server_perfkit_does_not_own_gets_no_reader_without_the_extension(
    pg_server: PostgresServer,
) -> None:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        installed = conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_walinspect'"
        ).fetchone()
    assert installed == (0,), "another test installed pg_walinspect on the shared server"
    assert walcheck.WalReader.open(pg_server.dsn, 1, install=False) is None


NODES = walcheck.NodeMap(
    tables={10: ("public", "a"), 11: ("public", "a")},  # a table and its index
    catalogs={1259: "pg_class", 2619: "pg_statistic"},
    quiet=frozenset({2662}),
    unlogged=(),
)


def test_an_index_block_counts_as_its_table() -> None:
    assert walcheck.classify([(11, 4)], NODES) == walcheck.Touched(
        tables=frozenset({("public", "a")})
    )


def test_statistics_written_by_analyze_are_not_a_change() -> None:
    assert walcheck.classify([(2619, 0), (2662, 3)], NODES) == walcheck.Touched()


def test_catalog_blocks_are_kept_page_by_page() -> None:
    touched = walcheck.classify([(1259, 0), (1259, 7), (1259, 7)], NODES)
    assert touched == walcheck.Touched(pages=frozenset({("pg_class", 0), ("pg_class", 7)}))


def test_an_unknown_file_node_sends_the_check_to_the_full_scan() -> None:
    assert walcheck.classify([(10, 0), (99999, 0)], NODES) is None


def test_a_stable_home_finds_row_changes_from_the_wal_and_reads_nothing_when_only_read(
    wal_server: PostgresServer, tmp_path: Path
) -> None:
    migrations = tmp_path / "schema.sql"
    migrations.write_text(SCHEMA)
    settings = IsolationSettings(
        isolation="verified",
        backend="external",
        dsn=wal_server.dsn,
        migrations=(migrations,),
        pool_size=1,
        clone_workers=1,
        stable_dsn=True,
    )
    with IsolationSession(settings) as session:
        for statement in ("INSERT INTO empty_things VALUES (1)", "SELECT 1"):
            lease = session.acquire("verified", statement)
            with psycopg.connect(lease.require_dsn(), autocommit=True) as conn:
                conn.execute(statement)
            session.release(lease)
        checks = [(r["event"], r.get("check")) for r in session.records if r.get("stable")]
    assert checks == [("pool_reset", "wal"), ("pool_reuse", "quick")]
