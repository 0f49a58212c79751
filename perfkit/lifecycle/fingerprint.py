"""Does a database still equal the template it was cloned from? Read from the server, never trusted.

:func:`fingerprint` reads one database as a :class:`Fingerprint`:

* ``catalogs``: a hash of every database-local system catalog (``pg_class``,
  ``pg_attribute``, ``pg_proc``, ``pg_type``, ``pg_enum``, ``pg_constraint``,
  ``pg_trigger`` with its enabled state, ``pg_rewrite`` (views, rules),
  ``pg_namespace``, ``pg_policy``, ``pg_description`` (comments), ``pg_extension``,
  ``pg_default_acl``, ``pg_largeobject_metadata``, ... found by asking
  ``pg_class`` for them, so a catalog added by a new PostgreSQL release is
  covered too). Grants live in the catalogs' ``*acl`` columns, row security in
  ``pg_class.relrowsecurity``. Columns that the server changes by itself
  (``relpages``, ``reltuples``, ``relallvisible``, ``relfrozenxid``,
  ``relminmxid``) are left out; ``pg_statistic`` and ``pg_statistic_ext_data``
  (ANALYZE output) are not read; the ``pg_temp_N`` schemas a session leaves
  behind (empty once it ends) are skipped.
* ``tables``: per non-temporary table and materialized view, its row count and
  a hash of its rows that does not depend on their physical order.
* ``sequences``: ``last_value`` and ``is_called`` of every sequence.
* ``large_objects``: a hash of every large object's contents.
* ``database``: database-level state that lives in shared catalogs: settings
  (``ALTER DATABASE / ROLE ... IN DATABASE ... SET``), its comment, ACL,
  connection limit and whether it accepts connections.
* ``sessions`` and ``prepared``: other sessions connected to it and prepared
  transactions left in it. Either makes the database "not provably clean":
  an open session can still write, a prepared transaction holds locks and
  uncommitted rows.

All of it is read in one ``REPEATABLE READ`` snapshot. Two fingerprints are
compared with :func:`differences`; :func:`equals_template` compares a
database with a fresh clone of its template (templates do not accept
connections, so the reference is read from a clone made for the purpose, and
the database-level part is then what ``CREATE DATABASE`` gives a new clone).

What this cannot see, by design: cluster-wide state (roles, tablespaces,
``ALTER SYSTEM``, replication slots) and anything outside the server.
The check reads every row of every table, so it costs time proportional to
the data: it is the proof, not the fast path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from perfkit.lifecycle.dbconnect import admin_connect, connect

if TYPE_CHECKING:
    from collections.abc import Mapping

    from perfkit.postgres import PostgresServer

__all__ = [
    "Comparison",
    "Fingerprint",
    "differences",
    "equals_template",
    "fingerprint",
    "template_fingerprint",
]

#: Catalog columns the server rewrites by itself (VACUUM, ANALYZE, freezing).
VOLATILE_COLUMNS: Mapping[str, frozenset[str]] = {
    "pg_class": frozenset({"relpages", "reltuples", "relallvisible", "relfrozenxid", "relminmxid"}),
}
#: Catalogs left out: ANALYZE output, and large object pages (hashed per object instead).
SKIPPED_CATALOGS = frozenset({"pg_statistic", "pg_statistic_ext_data", "pg_largeobject"})
#: Rows of these schemas are skipped in ``pg_namespace`` (a session's temporary schema
#: outlives the session, empty).
TEMP_SCHEMA_PATTERN = r"^pg_(toast_)?temp_\d+$"
_CATALOG_QUERY = """
SELECT c.relname, array_agg(a.attname ORDER BY a.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'pg_catalog'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind = 'r' AND NOT c.relisshared
GROUP BY c.relname
ORDER BY c.relname
"""
_USER_RELATIONS_QUERY = r"""
SELECT n.nspname, c.relname, c.relkind, c.relispopulated
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
ORDER BY n.nspname, c.relname
"""
_DATABASE_QUERY = """
SELECT d.datconnlimit, d.datallowconn, d.datacl::text,
       (SELECT description FROM pg_shdescription s
         WHERE s.objoid = d.oid AND s.classoid = 'pg_database'::regclass),
       (SELECT string_agg(coalesce(r.rolname, '*') || '=' || s.setconfig::text, ';'
                          ORDER BY coalesce(r.rolname, '*'))
          FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
         WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE d.datname = current_database()
"""
_SESSIONS_QUERY = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
_PREPARED_QUERY = "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"
_LARGE_OBJECTS_QUERY = """
SELECT count(*), md5(coalesce(string_agg(m.oid::text || ':' || md5(lo_get(m.oid)), ','
                                         ORDER BY m.oid), ''))
FROM pg_largeobject_metadata m
"""


@dataclass(frozen=True)
class Fingerprint:
    """What a database holds, as hashes: see the module docstring for each part."""

    catalogs: Mapping[str, str]
    tables: Mapping[str, str]
    sequences: Mapping[str, str]
    large_objects: str
    database: Mapping[str, str]
    sessions: int = 0
    prepared: int = 0

    def digest(self) -> str:
        """One hash of everything except ``sessions``/``prepared`` (which are not content)."""
        parts = [
            *(f"c:{k}={v}" for k, v in sorted(self.catalogs.items())),
            *(f"t:{k}={v}" for k, v in sorted(self.tables.items())),
            *(f"s:{k}={v}" for k, v in sorted(self.sequences.items())),
            f"lo={self.large_objects}",
            *(f"d:{k}={v}" for k, v in sorted(self.database.items())),
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Comparison:
    """The answer of :func:`equals_template`: ``equal``, and what differs when not."""

    database: str
    template: str
    differences: tuple[str, ...] = field(default=())

    @property
    def equal(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.equal

    def __str__(self) -> str:
        if self.equal:
            return f"{self.database} equals a fresh clone of {self.template}"
        listed = "; ".join(self.differences)
        return f"{self.database} differs from a fresh clone of {self.template}: {listed}"


def fingerprint(conn: psycopg.Connection) -> Fingerprint:
    """Read the fingerprint of the database ``conn`` is connected to (one snapshot).

    ``conn`` must not be inside a transaction; the read runs in its own
    read-only ``REPEATABLE READ`` transaction and leaves the connection idle.
    """
    previous = conn.autocommit
    conn.autocommit = False
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return Fingerprint(
                catalogs=_catalog_hashes(conn),
                tables=_table_hashes(conn),
                sequences=_sequence_states(conn),
                large_objects=_large_objects(conn),
                database=_database_level(conn),
                sessions=int(_scalar(conn, _SESSIONS_QUERY)),
                prepared=int(_scalar(conn, _PREPARED_QUERY)),
            )
    finally:
        conn.autocommit = previous


def differences(expected: Fingerprint, actual: Fingerprint) -> list[str]:
    """What differs between two fingerprints, one short phrase each (empty when equal)."""
    found: list[str] = []
    found += _mapping_differences("catalog", expected.catalogs, actual.catalogs)
    found += _mapping_differences("table", expected.tables, actual.tables)
    found += _mapping_differences("sequence", expected.sequences, actual.sequences)
    found += _mapping_differences("database", expected.database, actual.database)
    if expected.large_objects != actual.large_objects:
        found.append("large objects changed")
    if actual.sessions:
        found.append(f"{actual.sessions} other session(s) still connected")
    if actual.prepared:
        found.append(f"{actual.prepared} prepared transaction(s) left")
    return found


def equals_template(
    server: PostgresServer,
    dbname: str,
    template: str,
    *,
    reference: Fingerprint | None = None,
    sessions_allowed: bool = False,
) -> Comparison:
    """Whether ``dbname`` equals a fresh clone of ``template`` on ``server``.

    ``reference`` is the fingerprint of a fresh clone (from
    :func:`template_fingerprint`); without it one is made now, read and dropped.
    ``sessions_allowed``: other sessions still connected are not a difference
    (a stable DSN keeps the application's idle connections).
    """
    if reference is None:
        reference = template_fingerprint(server, template)
    with connect(server.dsn_for(dbname), autocommit=True) as conn:
        actual = fingerprint(conn)
    if sessions_allowed:
        actual = replace(actual, sessions=0)
    return Comparison(dbname, template, tuple(differences(reference, actual)))


def template_fingerprint(server: PostgresServer, template: str) -> Fingerprint:
    """The fingerprint of a fresh clone of ``template`` (made, read and dropped here)."""
    probe = f"perfkit_fp_{hashlib.sha1(template.encode()).hexdigest()[:8]}_{os.urandom(4).hex()}"
    with admin_connect(server.dsn) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(probe), sql.Identifier(template)
            )
        )
    try:
        with connect(server.dsn_for(probe), autocommit=True) as conn:
            return fingerprint(conn)
    finally:
        with admin_connect(server.dsn) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(probe))
            )


def _scalar(conn: psycopg.Connection, query: str) -> object:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def _catalog_hashes(conn: psycopg.Connection) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for name, columns in conn.execute(_CATALOG_QUERY).fetchall():
        if name in SKIPPED_CATALOGS:
            continue
        kept = [c for c in columns if c not in VOLATILE_COLUMNS.get(name, frozenset())]
        hashes[name] = str(_scalar(conn, _catalog_hash_query(name, kept)))
    return hashes


def _catalog_hash_query(catalog: str, columns: list[str]) -> sql.Composed:
    """``count:md5`` of a catalog's rows (order-independent), volatile columns left out."""
    row = sql.SQL("ROW({})::text").format(
        sql.SQL(", ").join(sql.Identifier("c", col) for col in columns)
    )
    where = sql.SQL("")
    if catalog == "pg_namespace":
        where = sql.SQL(" WHERE c.nspname !~ {}").format(sql.Literal(TEMP_SCHEMA_PATTERN))
    return sql.SQL(
        "SELECT count(*)::text || ':' || md5(coalesce(string_agg(h, '' ORDER BY h), ''))"
        " FROM (SELECT md5({row}) AS h FROM pg_catalog.{cat} c{where}) x"
    ).format(row=row, cat=sql.Identifier(catalog), where=where)


def _user_relations(conn: psycopg.Connection) -> list[tuple[str, str, str, bool]]:
    return [tuple(r) for r in conn.execute(_USER_RELATIONS_QUERY).fetchall()]  # type: ignore[misc]


def _table_hashes(conn: psycopg.Connection) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for schema, name, kind, populated in _user_relations(conn):
        if kind == "S":
            continue
        key = f"{schema}.{name}"
        if not populated:
            hashes[key] = "unpopulated"
            continue
        query = sql.SQL(
            "SELECT count(*)::text || ':' || md5(coalesce(string_agg(h, '' ORDER BY h), ''))"
            " FROM (SELECT md5(t::text) AS h FROM ONLY {} t) x"
        ).format(sql.Identifier(schema, name))
        hashes[key] = str(_scalar(conn, query))
    return hashes


def _sequence_states(conn: psycopg.Connection) -> dict[str, str]:
    states: dict[str, str] = {}
    for schema, name, kind, _populated in _user_relations(conn):
        if kind != "S":
            continue
        query = sql.SQL("SELECT last_value::text || '/' || is_called::text FROM {}").format(
            sql.Identifier(schema, name)
        )
        states[f"{schema}.{name}"] = str(_scalar(conn, query))
    return states


def _large_objects(conn: psycopg.Connection) -> str:
    """``count:md5`` of every large object; ``unreadable`` when the role may not read one."""
    try:
        with conn.transaction():
            row = conn.execute(_LARGE_OBJECTS_QUERY).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return "unreadable"
    assert row is not None
    return f"{row[0]}:{row[1]}"


def _database_level(conn: psycopg.Connection) -> dict[str, str]:
    row = conn.execute(_DATABASE_QUERY).fetchone()
    assert row is not None
    keys = ("connection_limit", "allow_connections", "acl", "comment", "settings")
    return {key: str(value) for key, value in zip(keys, row, strict=True)}


def _mapping_differences(
    kind: str, expected: Mapping[str, str], actual: Mapping[str, str]
) -> list[str]:
    found = [f"{kind} {k} added" for k in sorted(actual.keys() - expected.keys())]
    found += [f"{kind} {k} dropped" for k in sorted(expected.keys() - actual.keys())]
    found += [
        f"{kind} {k} changed"
        for k in sorted(expected.keys() & actual.keys())
        if expected[k] != actual[k]
    ]
    return found
