"""A template database with one of everything a test can change, and the changes themselves.

Shared by the tests of :mod:`perfkit.lifecycle.fingerprint` (the complete,
slow comparison) and :mod:`perfkit.lifecycle.cleancheck` (the fast check
that must agree with it).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.postgres import PostgresServer

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE SEQUENCE ticket_seq;
CREATE TABLE accounts (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    balance numeric NOT NULL DEFAULT 0 CHECK (balance >= 0),
    feeling mood
);
CREATE TABLE audit (id bigserial PRIMARY KEY, account_id bigint, note text);
CREATE TABLE empty_things (id int);
CREATE INDEX accounts_name ON accounts (name);
CREATE FUNCTION log_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit (account_id, note) VALUES (NEW.id, 'insert'); RETURN NEW; END $$;
CREATE TRIGGER accounts_log AFTER INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION log_account();
CREATE VIEW rich AS SELECT name FROM accounts WHERE balance > 100;
CREATE MATERIALIZED VIEW account_count AS SELECT count(*) AS n FROM accounts;
CREATE SCHEMA extra;
CREATE TABLE extra.notes (body text);
CREATE UNLOGGED TABLE scratchpad (note text);
INSERT INTO accounts (name, balance, feeling) VALUES ('ann', 10, 'ok'), ('bob', 200, 'sad');
INSERT INTO extra.notes VALUES ('hello');
"""
#: Same schema and rows for every clean case; the template is made once per module.
TEMPLATE = "perfkit_fp_template"


@contextmanager
def made_template(server: PostgresServer, name: str = TEMPLATE) -> Iterator[str]:
    """The template database with :data:`SCHEMA` applied, dropped afterwards."""
    with admin_connect(server.dsn) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with connect(server.dsn_for(name), autocommit=True) as conn:
            conn.execute(SCHEMA)
        yield name
    finally:
        with admin_connect(server.dsn) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextmanager
def made_clone(server: PostgresServer, template: str) -> Iterator[str]:
    """A fresh clone of ``template``, dropped afterwards."""
    name = f"perfkit_fp_clone_{uuid.uuid4().hex[:8]}"
    with admin_connect(server.dsn) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield name
    finally:
        with admin_connect(server.dsn) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_statements(server: PostgresServer, dbname: str, statements: str | list[str]) -> None:
    """Run the statements as a test would, each on its own (a list) or as one string."""
    with connect(server.dsn_for(dbname), autocommit=True) as conn:
        for statement in [statements] if isinstance(statements, str) else statements:
            conn.execute(statement)


#: One planted change per id: SQL run in the clone by a test that then disconnects.
PLANTED: dict[str, str] = {
    "insert_row": "INSERT INTO empty_things VALUES (1)",
    "update_row": "UPDATE accounts SET balance = 11 WHERE name = 'ann'",
    "update_enum_column": "UPDATE accounts SET feeling = 'sad' WHERE name = 'ann'",
    "delete_row": "DELETE FROM extra.notes",
    "insert_into_unlogged_table": "INSERT INTO scratchpad VALUES ('never in the WAL')",
    "row_committed_before_its_wal_is_flushed": (
        "SET synchronous_commit = off; INSERT INTO empty_things VALUES (5)"
    ),
    "truncate_table_with_rows": "TRUNCATE extra.notes",
    "truncate_empty_table": "TRUNCATE empty_things",
    "nextval": "SELECT nextval('ticket_seq')",
    "setval": "SELECT setval('accounts_id_seq', 1000)",
    "serial_consumed_by_rolled_back_insert": (
        "BEGIN; INSERT INTO empty_things VALUES (nextval('ticket_seq')); ROLLBACK"
    ),
    "create_table": "CREATE TABLE newbie (x int)",
    "create_unlogged_table": "CREATE UNLOGGED TABLE scratch (x int)",
    "drop_table": "DROP TABLE empty_things",
    "add_column": "ALTER TABLE accounts ADD COLUMN email text",
    "rename_column": "ALTER TABLE audit RENAME COLUMN note TO remark",
    "alter_column_type": "ALTER TABLE empty_things ALTER COLUMN id TYPE bigint",
    "set_column_default": "ALTER TABLE empty_things ALTER COLUMN id SET DEFAULT 7",
    "reloptions": "ALTER TABLE accounts SET (fillfactor = 70)",
    "create_index": "CREATE INDEX audit_note ON audit (note)",
    "drop_index": "DROP INDEX accounts_name",
    "create_function": "CREATE FUNCTION two() RETURNS int LANGUAGE sql AS 'SELECT 2'",
    "replace_function_body": (
        "CREATE OR REPLACE FUNCTION log_account() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN RETURN NEW; END $$"
    ),
    "create_type": "CREATE TYPE pair AS (a int, b int)",
    "create_domain": "CREATE DOMAIN positive AS int CHECK (VALUE > 0)",
    "add_enum_value": "ALTER TYPE mood ADD VALUE 'happy'",
    "add_check_constraint": "ALTER TABLE audit ADD CONSTRAINT note_len CHECK (length(note) < 99)",
    "drop_constraint": "ALTER TABLE accounts DROP CONSTRAINT accounts_balance_check",
    "create_trigger": (
        "CREATE TRIGGER audit_log AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION log_account()"
    ),
    "disable_trigger": "ALTER TABLE accounts DISABLE TRIGGER accounts_log",
    "enable_trigger_always": "ALTER TABLE accounts ENABLE ALWAYS TRIGGER accounts_log",
    "create_view": "CREATE VIEW poor AS SELECT name FROM accounts WHERE balance < 100",
    "replace_view": (
        "CREATE OR REPLACE VIEW rich AS SELECT name FROM accounts WHERE balance > 150"
    ),
    "create_rule": "CREATE RULE no_delete AS ON DELETE TO audit DO INSTEAD NOTHING",
    "refresh_materialized_view": (
        "INSERT INTO empty_things VALUES (1); DELETE FROM empty_things;"
        " INSERT INTO accounts (name) VALUES ('cy'); REFRESH MATERIALIZED VIEW account_count;"
        " DELETE FROM accounts WHERE name = 'cy'; DELETE FROM audit WHERE note = 'insert'"
    ),
    "create_schema": "CREATE SCHEMA scratch",
    "drop_schema": "DROP SCHEMA extra CASCADE",
    "create_policy": "CREATE POLICY mine ON accounts USING (name = current_user)",
    "enable_row_security": "ALTER TABLE accounts ENABLE ROW LEVEL SECURITY",
    "grant_on_table": "GRANT SELECT ON accounts TO PUBLIC",
    "revoke_on_schema": "REVOKE ALL ON SCHEMA public FROM PUBLIC",
    "alter_default_privileges": "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
    "comment_on_table": "COMMENT ON TABLE accounts IS 'money'",
    "comment_on_column": "COMMENT ON COLUMN accounts.name IS 'who'",
    "large_object": "SELECT lo_from_bytea(0, 'blob')",
    "create_extension": "CREATE EXTENSION citext",
    "database_setting": "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET work_mem = ''7MB''',"
    " current_database()); END $$",
    "database_comment": "DO $$ BEGIN EXECUTE format('COMMENT ON DATABASE %I IS ''x''',"
    " current_database()); END $$",
    "database_connection_limit": "DO $$ BEGIN EXECUTE format("
    "'ALTER DATABASE %I CONNECTION LIMIT 50', current_database()); END $$",
    "rows_written_with_triggers_off": (
        "SET session_replication_role = replica; INSERT INTO accounts (name) VALUES ('dee')"
    ),
    "rows_written_after_stats_reset": (
        "SELECT pg_stat_reset(); INSERT INTO empty_things VALUES (3)"
    ),
    "vacuum_full_rewrite": "VACUUM FULL empty_things",
    "cluster_rewrite": "CLUSTER accounts USING accounts_pkey",
}


#: Work that leaves the database equal to the template: must not be called dirty.
CLEAN: dict[str, str | list[str]] = {
    "nothing": "SELECT 1",
    "reads": "SELECT * FROM accounts JOIN audit ON audit.account_id = accounts.id",
    "update_to_the_same_value": "UPDATE accounts SET balance = balance",
    "rolled_back_insert": "BEGIN; INSERT INTO extra.notes VALUES ('x'); ROLLBACK",
    "insert_then_delete": "INSERT INTO extra.notes VALUES ('x'); DELETE FROM extra.notes"
    " WHERE body = 'x'",
    "temporary_table": "CREATE TEMP TABLE t (x int); INSERT INTO t VALUES (1)",
    "analyze_and_vacuum": ["ANALYZE", "VACUUM accounts", "VACUUM FREEZE audit"],
    "session_settings": "SET work_mem = '64MB'; SET search_path = extra, public",
    "trigger_disabled_then_enabled": (
        "ALTER TABLE accounts DISABLE TRIGGER accounts_log;"
        " ALTER TABLE accounts ENABLE TRIGGER accounts_log"
    ),
}

#: The planted kinds every default run covers, a few per category: rows, sequences, DDL,
#: the catalog beyond tables (privileges, database settings), a table rewritten with the same
#: rows, and session state (triggers off, statistics reset). ``-m slow`` runs every other kind.
PLANTED_SAMPLE = (
    "insert_row",
    "insert_into_unlogged_table",
    "row_committed_before_its_wal_is_flushed",
    "update_row",
    "nextval",
    "create_table",
    "add_column",
    "grant_on_table",
    "database_setting",
    "vacuum_full_rewrite",
    "rows_written_with_triggers_off",
    "rows_written_after_stats_reset",
)
#: The clean kinds every default run covers; ``-m slow`` runs the others.
CLEAN_SAMPLE = ("nothing", "rolled_back_insert", "temporary_table", "session_settings")


#: Every planted and clean statement: the pool the randomized cases draw from.
STATEMENTS = sorted({*PLANTED.values(), *(v for v in CLEAN.values() if isinstance(v, str))})


def random_steps(rng: random.Random) -> list[tuple[str, str]]:
    """Up to four (connection "A" or "B", statement) steps of one randomized case."""
    return [(rng.choice("AB"), rng.choice(STATEMENTS)) for _ in range(rng.randint(0, 4))]


def random_cases(seed: int, count: int) -> list[tuple[list[tuple[str, str]], bool]]:
    """The first ``count`` randomized cases of ``seed``: (steps, whether B commits) each.

    Drawn in one order, so a slice of them is the same cases whoever plays it: the default
    run plays the first few and ``-m slow`` the rest."""
    rng = random.Random(seed)
    return [(random_steps(rng), rng.random() < 0.5) for _ in range(count)]


def play(
    a: psycopg.Connection, b: psycopg.Connection, steps: list[tuple[str, str]], commit_b: bool
) -> None:
    """Run the steps on A (autocommit) and B (a transaction, committed only with
    ``commit_b``); errors are part of the game (a dropped table, a lock timeout)."""
    for who, statement in steps:
        conn = a if who == "A" else b
        try:
            conn.execute(statement)
        except psycopg.Error:
            if conn is b:
                b.rollback()
    if commit_b:
        b.commit()
