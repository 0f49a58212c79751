"""What a test wrote, read from the write-ahead log instead of scanning every catalog.

The stable-DSN check (:mod:`perfkit.lifecycle.stablecheck`) cannot trust the
statistics counters, so its detail step scans every user table and every local
system catalog (about 25,000 catalog rows: most of a settle's time). Every
change to the contents of a WAL-logged relation is written to the WAL first,
naming the relation's file node and the block it changed, so the WAL since the
baseline says exactly which relations and which catalog pages can differ.
This module reads it with ``pg_walinspect`` (PostgreSQL 15+, in contrib):

1. :meth:`WalReader.written_since` forces the WAL out (a synchronously committed
   ``pg_logical_emit_message``: perfkit's servers run with
   ``synchronous_commit = off``, and ``pg_walinspect`` reads only flushed WAL)
   and returns every ``(file node, block)`` of the database's main forks
   written since a baseline position;
2. :func:`classify` maps them through the :class:`NodeMap` read with the
   baseline: user tables (their indexes and TOAST tables count as the table)
   to check and reset, system catalog pages to check row by row, and anything
   it does not know (a relation created, rewritten, truncated, a mapped
   catalog moved) as ``None``: the caller then falls back to the full scan.

What the WAL does not show is checked anyway: unlogged tables (never in the
WAL) are always scanned, sequence positions are read (``nextval`` logs only
every 32 values), and so are the database's shared-catalog state and prepared
transactions. A catalog page counts as unchanged when it holds as many
visible rows as at the baseline and none newer than the baseline's
transaction horizon (old rows can only have been deleted, so equal counts
mean the same rows). Catalogs' indexes and TOAST tables are not checked: they
change only with a row of their catalog. ``pg_statistic`` (ANALYZE) is
ignored, as in the full scan.

The reader connects to the server's default database (where it installs
``pg_walinspect`` on servers perfkit started; on other servers it uses it
when it is already installed) and needs a superuser or the
``pg_read_server_files`` role; without either the check falls back to the
full scan.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from perfkit.lifecycle.dbconnect import connect

__all__ = [
    "NodeMap",
    "Touched",
    "WalBaseline",
    "WalReader",
    "catalog_filter",
    "classify",
    "install",
    "read_node_map",
    "read_page_counts",
]

#: A table with more blocks than this written since the baseline counts as large.
MANY_BLOCKS = 128

#: Catalogs written by ANALYZE (autovacuum's too): not a change a test made.
IGNORED_CATALOGS = frozenset({"pg_statistic", "pg_statistic_ext_data"})

_NODES = """
SELECT pg_relation_filenode(c.oid), n.nspname, c.relname, c.relkind, c.relpersistence,
       coalesce(owner_n.nspname, ''), coalesce(owner.relname, ''),
       coalesce(owner.relkind, '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
       SELECT t.oid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
        WHERE i.indexrelid = c.oid
       UNION ALL
       SELECT t.oid FROM pg_class t WHERE t.reltoastrelid = c.oid AND c.relkind = 't'
  ) o ON true
  LEFT JOIN pg_class owner ON owner.oid = o.oid
  LEFT JOIN pg_namespace owner_n ON owner_n.oid = owner.relnamespace
 WHERE c.relpersistence <> 't' AND pg_relation_filenode(c.oid) IS NOT NULL
   AND NOT c.relisshared
"""
#: Force the WAL out, then read the block references of the database's records since a
#: position: one round trip (``start`` and ``like`` are literals perfkit made).
_FLUSH_AND_READ = (
    "BEGIN; SET LOCAL synchronous_commit = on; "
    "SELECT pg_logical_emit_message(true, 'perfkit', ''); COMMIT; "
    "SELECT block_ref FROM pg_get_wal_records_info({start}::pg_lsn, pg_current_wal_flush_lsn())"
    " WHERE block_ref LIKE {like}"
)
_BLOCK_REF = re.compile(r"rel \d+/(\d+)/(\d+) fork main blk (\d+)")
_INSERT_LSN = "SELECT pg_current_wal_insert_lsn()::text"
INSTALL = "CREATE EXTENSION IF NOT EXISTS pg_walinspect"


def install(dsn: str) -> bool:
    """Install ``pg_walinspect`` in the database ``dsn`` names (a server perfkit started and
    hands to the plugin as ``external``); whether it is there now."""
    try:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(INSTALL)
    except psycopg.Error:
        return False
    return True


@dataclass(frozen=True)
class NodeMap:
    """What each file node of the database is, read with the baseline."""

    tables: dict[int, tuple[str, str]]  # user table (or its index/TOAST) -> (schema, table)
    catalogs: dict[int, str]  # system catalog heap -> its name
    quiet: frozenset[int]  # known and not checked: catalog indexes/TOAST, sequences, views
    unlogged: tuple[tuple[str, str], ...]  # user tables the WAL never shows


@dataclass(frozen=True)
class Touched:
    """What the WAL says may differ: user tables and catalog pages."""

    tables: frozenset[tuple[str, str]] = frozenset()
    pages: frozenset[tuple[str, int]] = frozenset()  # (catalog, block)
    #: Tables with more than :data:`MANY_BLOCKS` blocks written (emptied by TRUNCATE).
    large: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class WalBaseline:
    """Where the WAL stood at the baseline, and what the pages and file nodes held then."""

    lsn: str
    nodes: NodeMap
    pages: dict[str, dict[int, int]] = field(repr=False)  # catalog -> block -> visible rows


@dataclass
class WalReader:
    """A connection to the server's default database that reads its WAL."""

    dsn: str = field(repr=False)
    database_oid: int
    conn: psycopg.Connection | None = field(default=None, repr=False)

    @classmethod
    def open(cls, admin_dsn: str, database_oid: int, *, install: bool) -> WalReader | None:
        """A reader, or None when ``pg_walinspect`` is missing or not allowed."""
        reader = cls(admin_dsn, database_oid)
        try:
            reader.conn = connect(admin_dsn, autocommit=True)
            if install:
                reader.conn.execute(INSTALL)
            reader.written_since(reader.position())  # privileges and the function itself
        except psycopg.Error:
            reader.close()
            return None
        return reader

    def position(self) -> str:
        """The WAL insert position now (a baseline's start)."""
        assert self.conn is not None
        row = self.conn.execute(_INSERT_LSN).fetchone()
        assert row is not None
        return str(row[0])

    def written_since(self, start: str) -> set[tuple[int, int]]:
        """Every (file node, block) of the database's main forks in the WAL from ``start``."""
        conn = self._connection()
        db = str(self.database_oid)
        query = sql.SQL(_FLUSH_AND_READ).format(
            start=sql.Literal(start), like=sql.Literal(f"%/{db}/%")
        )
        cursor = conn.execute(query)
        while cursor.nextset():
            pass
        refs = cursor.fetchall()
        return {
            (int(node), int(block))
            for (text,) in refs
            for database, node, block in _BLOCK_REF.findall(text)
            if database == db
        }

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = connect(self.dsn, autocommit=True)
        return self.conn

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()


def read_node_map(conn: psycopg.Connection) -> NodeMap:
    """Every non-temporary relation's file node in ``conn``'s database, by what it is."""
    tables: dict[int, tuple[str, str]] = {}
    catalogs: dict[int, str] = {}
    quiet: set[int] = set()
    unlogged: set[tuple[str, str]] = set()
    for node, schema, name, kind, persistence, o_schema, o_name, o_kind in conn.execute(
        _NODES
    ).fetchall():
        node = int(node)
        owner = (str(o_schema), str(o_name)) if o_name else None
        if schema == "pg_catalog" and owner is None and kind == "r":
            catalogs[node] = str(name)
        elif schema == "information_schema" and kind == "r":
            continue  # not in the full scan either; written: the full scan decides
        elif kind in ("r", "p", "m") and not _system(str(schema)):
            tables[node] = (str(schema), str(name))
            if persistence == "u":
                unlogged.add((str(schema), str(name)))
        elif owner is not None and o_kind in ("r", "p", "m") and not _system(owner[0]):
            tables[node] = owner
        else:
            quiet.add(node)
    return NodeMap(tables, catalogs, frozenset(quiet), tuple(sorted(unlogged)))


def _system(schema: str) -> bool:
    return schema in ("pg_catalog", "information_schema") or schema.startswith("pg_toast")


def classify(blocks: Iterable[tuple[int, int]], nodes: NodeMap) -> Touched | None:
    """The tables and catalog pages ``blocks`` name; None when one is not in ``nodes``."""
    tables: dict[tuple[str, str], int] = {}
    pages: set[tuple[str, int]] = set()
    for node, block in blocks:
        if node in nodes.tables:
            table = nodes.tables[node]
            tables[table] = tables.get(table, 0) + 1
        elif node in nodes.catalogs:
            if nodes.catalogs[node] not in IGNORED_CATALOGS:
                pages.add((nodes.catalogs[node], block))
        elif node not in nodes.quiet:
            return None  # created, rewritten or truncated since the baseline
    large = frozenset(t for t, n in tables.items() if n > MANY_BLOCKS)
    return Touched(frozenset(tables), frozenset(pages), large)


_PAGE_COUNTS_PART = (
    "(SELECT coalesce(jsonb_object_agg(b, n), '{{}}') FROM (SELECT (ctid::text::point)[0]::int b,"
    " count(*) n FROM ONLY {} WHERE {} GROUP BY 1) s)"
)


def catalog_filter(catalog: str) -> sql.Composable:
    """A condition on the rows of ``catalog`` that belong to the check (temporary schemas
    stay in ``pg_namespace`` once used)."""
    if catalog == "pg_namespace":
        return sql.SQL("nspname !~ '^pg_(toast_)?temp_'")
    return sql.SQL("true")


def read_page_counts(conn: psycopg.Connection, nodes: NodeMap) -> dict[str, dict[int, int]]:
    """Visible rows per page of every catalog in ``nodes`` (the page check's baseline)."""
    names = sorted(set(nodes.catalogs.values()) - IGNORED_CATALOGS)
    if not names:
        return {}
    parts = [
        sql.SQL(_PAGE_COUNTS_PART).format(sql.Identifier("pg_catalog", c), catalog_filter(c))
        for c in names
    ]
    row = conn.execute(sql.SQL("SELECT {}").format(sql.SQL(", ").join(parts))).fetchone()
    assert row is not None
    return {
        name: {int(block): int(count) for block, count in counts.items()}
        for name, counts in zip(names, row, strict=True)
    }
