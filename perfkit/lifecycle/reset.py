"""Reset in place: put back the rows and sequence positions of a database where only those changed.

When :mod:`perfkit.lifecycle.cleancheck` finds a released database changed,
:func:`plan_reset` decides from per-relation details whether the change was
rows only: every relation still has the same ``oid``, ``relfilenode`` and
``pg_class`` row (no DDL, no TRUNCATE, no rewrite), no system catalog was
written, and the tables written are user tables (or their TOAST tables).
Then :func:`reset` empties those tables (``DELETE``; a table over
:data:`TRUNCATE_ROWS` live rows gets ``TRUNCATE``, which costs a new file but
no per-row work), copies their seed rows back from the :class:`Pristine`
copy read once from a fresh clone (``COPY`` in binary), and sets every moved
sequence back. It runs with ``session_replication_role = replica`` so triggers
and foreign keys do not fire on the restored rows (which were consistent in
the template), so it needs a role that may set it (a superuser; perfkit's own
servers run as one). Anything else (DDL, large objects, a table that was
truncated) returns ``None``: the database is recreated instead.

After a reset the caller flushes its own statistics
(``pg_stat_force_next_flush()``) and reads a new baseline: the reset's own
writes moved the counters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

__all__ = [
    "Pristine",
    "ResetAbandoned",
    "ResetPlan",
    "details",
    "plan_reset",
    "read_pristine",
    "reset",
]

#: Tables with more live rows than this are emptied with TRUNCATE instead of DELETE.
TRUNCATE_ROWS = 10_000

_DETAILS_QUERY = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relfilenode, c.xmin::text,
       pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
         + pg_stat_get_tuples_deleted(c.oid),
       CASE WHEN c.relkind = 'S' THEN pg_sequence_last_value(c.oid) END,
       coalesce((SELECT t.oid FROM pg_class t WHERE t.reltoastrelid = c.oid), 0),
       pg_stat_get_live_tuples(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT c.relisshared AND c.relpersistence <> 't'
"""
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
#: ANALYZE (autovacuum's too) writes these: not a change a test made.
_IGNORED = {"pg_statistic", "pg_statistic_ext_data"}


@dataclass(frozen=True)
class Relation:
    """One ``pg_class`` row as :func:`details` read it."""

    schema: str
    name: str
    kind: str
    identity: tuple[object, ...]  # relfilenode, pg_class xmin
    writes: int
    sequence_position: int | None
    toast_of: int  # for a TOAST table: the oid of its table, else 0
    live_rows: int

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def is_user_table(self) -> bool:
        return self.kind in ("r", "p") and self.schema not in _SYSTEM_SCHEMAS


@dataclass(frozen=True)
class Pristine:
    """Seed rows (binary COPY) per table with rows, and sequence positions, of a fresh clone."""

    rows: dict[tuple[str, str], bytes]
    sequences: dict[tuple[str, str], tuple[int, bool]]


@dataclass(frozen=True)
class ResetPlan:
    """Tables to empty and refill, sequences to set back."""

    tables: tuple[Relation, ...]
    sequences: tuple[Relation, ...]


def details(conn: psycopg.Connection) -> dict[int, Relation]:
    """Every non-temporary relation of the database by oid (read fresh from shared memory)."""
    with conn.transaction():
        conn.execute("SET LOCAL stats_fetch_consistency = none")
        rows = conn.execute(_DETAILS_QUERY).fetchall()
    return {
        int(r[0]): Relation(
            schema=r[1],
            name=r[2],
            kind=r[3],
            identity=(r[4], r[5]),
            writes=int(r[6]),
            sequence_position=r[7],
            toast_of=int(r[8]),
            live_rows=int(r[9]),
        )
        for r in rows
    }


def plan_reset(baseline: dict[int, Relation], now: dict[int, Relation]) -> ResetPlan | None:
    """The reset that undoes a rows-only change, or ``None`` when anything else changed."""
    if baseline.keys() != now.keys():
        return None  # a relation was created or dropped
    tables: list[Relation] = []
    sequences: list[Relation] = []
    for oid, before in baseline.items():
        after = now[oid]
        if after.identity != before.identity:
            return None  # DDL on it, TRUNCATE or a rewrite
        if after.sequence_position != before.sequence_position:
            sequences.append(after)
        if after.writes == before.writes or after.name in _IGNORED:
            continue
        owner = now.get(after.toast_of) if after.toast_of else None
        if owner is not None and owner.name in _IGNORED:
            continue
        if after.is_user_table:
            tables.append(after)
        elif owner is not None and owner.is_user_table:
            tables.append(owner)  # its TOAST table was written: the table's rows changed
        else:
            return None  # a system catalog was written (DDL, a large object, a comment...)
    unique = {(t.schema, t.name): t for t in tables}
    return ResetPlan(tuple(unique.values()), tuple(sequences))


def read_pristine(conn: psycopg.Connection) -> Pristine:
    """Read seed rows and sequence positions from a database nobody has used yet."""
    rows: dict[tuple[str, str], bytes] = {}
    sequences: dict[tuple[str, str], tuple[int, bool]] = {}
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        for relation in details(conn).values():
            key = (relation.schema, relation.name)
            if relation.is_user_table and relation.kind == "r":
                data = _copy_out(conn, relation.qualified)
                if data:
                    rows[key] = data
            elif relation.kind == "S" and relation.schema not in _SYSTEM_SCHEMAS:
                query = sql.SQL("SELECT last_value, is_called FROM {}").format(relation.qualified)
                value, called = conn.execute(query).fetchone() or (1, False)
                sequences[key] = (int(value), bool(called))
    return Pristine(rows, sequences)


class ResetAbandoned(Exception):
    """The reset's check said not to go on: its transaction was rolled back."""


def reset(
    conn: psycopg.Connection,
    plan: ResetPlan,
    pristine: Pristine,
    *,
    flush_stats: bool = True,
    then: sql.Composable | None = None,
    check: sql.Composable | None = None,
    sequences_from: Callable[[Sequence[Any]], tuple[Relation, ...] | None] | None = None,
) -> tuple[object, ...] | None:
    """Carry out ``plan`` on ``conn`` in one transaction, then (``flush_stats``) flush this
    session's statistics, for checks that read the counters.

    The statements go in as few round trips as COPY allows: the emptying in one,
    one ``COPY`` per table with seed rows, the sequences and the commit in one.
    ``check``: a query run after the emptying in that first round trip;
    ``sequences_from`` turns its row into the sequences to set back (replacing
    the plan's), or None to roll back and raise :class:`ResetAbandoned`.
    ``then``: a query run after the commit in the last round trip; its row is returned.
    """
    empty = [
        sql.SQL(
            "TRUNCATE ONLY {}" if t.live_rows > TRUNCATE_ROWS else "DELETE FROM ONLY {}"
        ).format(t.qualified)
        for t in plan.tables
    ]
    own = conn.autocommit  # else psycopg opened the transaction and commits it
    sequences = plan.sequences
    try:
        begin = [sql.SQL("BEGIN")] if own else []
        first = [sql.SQL("SET LOCAL session_replication_role = replica"), *empty]
        cursor = conn.execute(
            sql.SQL("; ").join([*begin, *first, *([check] if check is not None else [])])
        )
        if check is not None and sequences_from is not None:
            while cursor.nextset():
                pass
            found = sequences_from(cursor.fetchone() or ())
            if found is None:
                raise ResetAbandoned()
            sequences = found
        for table in plan.tables:
            seed = pristine.rows.get((table.schema, table.name))
            if seed:
                _copy_in(conn, table.qualified, seed)
        finish = _positions(sequences, pristine)
        after = [then] if then is not None else []
        if own:
            cursor = conn.execute(sql.SQL("; ").join([*finish, sql.SQL("COMMIT"), *after]))
            while cursor.nextset():
                pass
        else:
            if finish:
                conn.execute(finish[0])
            conn.commit()
            cursor = conn.execute(then) if then is not None else cursor
    except BaseException:
        if not conn.closed and not own:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
        elif not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        raise
    row = cursor.fetchone() if then is not None else None
    if flush_stats:
        with conn.transaction():
            conn.execute("SELECT pg_stat_force_next_flush()")
        # the flush happens when the session goes idle after that transaction
    return row


def _positions(sequences: Sequence[Relation], pristine: Pristine) -> list[sql.Composable]:
    """One ``SELECT setval(...), ...`` that puts ``sequences`` back (none: nothing)."""
    if not sequences:
        return []
    calls = [
        sql.SQL("setval({}::regclass, {}, {})").format(
            sql.Literal(f"{_quoted(s.schema)}.{_quoted(s.name)}"),
            *map(sql.Literal, pristine.sequences.get((s.schema, s.name), (1, False))),
        )
        for s in sequences
    ]
    return [sql.SQL("SELECT {}").format(sql.SQL(", ").join(calls))]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_out(conn: psycopg.Connection, table: sql.Identifier) -> bytes:
    if not _has_rows(conn, table):
        return b""
    chunks: list[bytes] = []
    query = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(table)
    with conn.cursor().copy(query) as copy:
        for chunk in copy:
            chunks.append(bytes(chunk))
    return b"".join(chunks)


def _has_rows(conn: psycopg.Connection, table: sql.Identifier) -> bool:
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM ONLY {})").format(table)).fetchone()
    return bool(row and row[0])


def _copy_in(conn: psycopg.Connection, table: sql.Identifier, data: bytes) -> None:
    query = sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(table)
    with conn.cursor().copy(query) as copy:
        copy.write(data)
