"""Was a database changed while the application's idle connections stay open? Without counters.

The stable-DSN mode of ``verified`` (:mod:`perfkit.lifecycle.stable`) keeps the
application's idle connections to the worker's database across tests, so the
tuple counters :mod:`perfkit.lifecycle.cleancheck` relies on cannot be trusted:
since PostgreSQL 15 a backend flushes its counters at most once a second and an
idle one may keep them pending for up to 10 s (``PGSTAT_IDLE_INTERVAL``). This
check reads the data itself instead, in two steps:

1. :func:`end_busy_sessions` ends the sessions that are not plainly idle (active,
   idle in a transaction: their uncommitted writes and row locks), those holding
   advisory locks and, when temporary relations exist, every other session
   (temporary tables belong to a session; they go when it exits).
2. :func:`quick_clean` (one short query): no transaction id was assigned
   anywhere in the cluster since the baseline (``pg_current_snapshot()``'s
   ``xmax`` did not move: every write, DDL and commit of a row needs one) and
   every sequence is where it was (``nextval`` may write without one). Then
   the database is unchanged.
3. Otherwise :func:`read_detail` scans, per user table and per local system
   catalog, the row count and whether any visible row is newer than the
   baseline (``age(xmin) <= age(baseline xmax)``: an insert or update gives
   the row a new ``xmin``, a delete lowers the count; aborted rows are not
   visible), plus ``pg_class`` (oid, relfilenode, xmin) of every relation
   (TRUNCATE, rewrites, DDL), the sequences, the database's shared-catalog
   state and prepared transactions. :func:`verdict` names what changed.

Temporary schemas (``pg_temp_N``) stay in ``pg_namespace`` once a session used
them: they are left out. ``pg_statistic`` is written by ANALYZE: left out.
What it cannot see: writes an application makes between tests (nothing of
the suite may run then), and the session state of the kept connections
(GUCs, prepared statements, ``LISTEN``): see the README.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

__all__ = [
    "Baseline",
    "Detail",
    "Verdict",
    "end_busy_sessions",
    "moved_on",
    "quick_clean",
    "read_baseline",
    "read_detail",
    "verdict",
]

_BUSY = """
SELECT a.pid,
       a.state NOT LIKE 'idle in transaction%' OR a.backend_xid IS NOT NULL OR temp.any
         OR EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory')
  FROM pg_stat_activity a,
       LATERAL (SELECT EXISTS (SELECT FROM pg_class c WHERE c.relpersistence = 't') AS any) temp
 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND (a.state IS DISTINCT FROM 'idle' OR a.backend_xid IS NOT NULL OR temp.any
        OR EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'))
"""
_TERMINATE = "SELECT count(pg_terminate_backend(p)) FROM unnest(%s::int[]) p"
_REMAINING = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])"

_QUICK = """
SELECT pg_snapshot_xmax(pg_current_snapshot())::text,
       (SELECT md5(coalesce(string_agg(c.oid || ':' || coalesce(pg_sequence_last_value(c.oid)::text,
               '-'), ',' ORDER BY c.oid), ''))
          FROM pg_class c WHERE c.relkind = 'S' AND c.relpersistence <> 't'),
       (SELECT count(*) FROM pg_class c WHERE c.relpersistence = 't')
"""
_CATALOGS = """
SELECT c.relname FROM pg_class c
 WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind = 'r' AND NOT c.relisshared
   AND c.relname NOT IN ('pg_statistic', 'pg_statistic_ext_data')
 ORDER BY c.relname
"""
_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND c.relpersistence <> 't'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
 ORDER BY n.nspname, c.relname
"""
_FIXED = """
(SELECT md5(string_agg(c.oid || ':' || c.relfilenode || ':' || c.xmin, ',' ORDER BY c.oid))
   FROM pg_class c WHERE c.relpersistence <> 't'),
(SELECT coalesce(jsonb_object_agg(c.oid, pg_sequence_last_value(c.oid)), '{}')::text
   FROM pg_class c WHERE c.relkind = 'S' AND c.relpersistence <> 't'),
(SELECT concat_ws('/', d.datdba, d.datconnlimit, d.datallowconn, d.datistemplate,
        d.dattablespace, d.datacl::text, d.datcollate, d.datctype,
        (SELECT string_agg(s.setrole || '=' || s.setconfig::text, ';' ORDER BY s.setrole)
           FROM pg_db_role_setting s WHERE s.setdatabase = d.oid),
        (SELECT description FROM pg_shdescription x
          WHERE x.objoid = d.oid AND x.classoid = 'pg_database'::regclass))
   FROM pg_database d WHERE d.datname = current_database()),
(SELECT count(*) FROM pg_prepared_xacts p WHERE p.database = current_database())
"""


@dataclass(frozen=True)
class Detail:
    """What :func:`read_detail` read (compare with :func:`verdict`)."""

    tables: dict[tuple[str, str], tuple[int, bool]]  # (schema, name) -> (rows, has newer rows)
    catalogs: dict[str, tuple[int, bool]]
    relations: str  # md5 of pg_class (oid, relfilenode, xmin)
    sequences: str  # json: oid -> last value
    database: str
    prepared: int


@dataclass(frozen=True)
class Baseline:
    """The database as it was when it equalled its template (or was last reset)."""

    xmax: str  # pg_current_snapshot()'s xmax (xid8 text) when it was read
    sequences: str  # md5 of the sequence positions (the quick check)
    detail: Detail
    query: sql.Composed = field(repr=False)


@dataclass(frozen=True)
class Verdict:
    """What changed: nothing, rows/sequences (``tables``, ``sequences``) or more (``other``)."""

    tables: tuple[tuple[str, str], ...] = ()
    sequences: bool = False
    other: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.tables or self.sequences or self.other)


def end_busy_sessions(
    conn: psycopg.Connection,
    timeout_s: float = 5.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """End the database's sessions that are not plainly idle; wait until they left.

    ``conn`` (autocommit) is connected to the database. Sessions idle in a
    read-only transaction (no transaction id: nothing to commit, no row locks)
    are ended but not waited for. Returns how many of the others were still
    there after ``timeout_s``.
    """
    rows = conn.execute(_BUSY).fetchall()
    if not rows:
        return 0
    conn.execute(_TERMINATE, ([int(r[0]) for r in rows],))
    pids = [int(pid) for pid, wait in rows if wait]
    if not pids:
        return 0
    deadline = clock() + timeout_s
    pause = 0.001
    while True:
        left_row = conn.execute(_REMAINING, (pids,)).fetchone()
        left = int(left_row[0]) if left_row else 0
        if not left or clock() >= deadline:
            return left
        sleep(pause)
        pause = min(pause * 2, 0.02)


def _quick(conn: psycopg.Connection) -> tuple[str, str, int]:
    row = conn.execute(_QUICK).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


def _detail_query(conn: psycopg.Connection) -> sql.Composed:
    """One query reading every user table's and local catalog's (rows, newer) pair."""
    tables = [(str(s), str(n)) for s, n in conn.execute(_USER_TABLES).fetchall()]
    catalogs = [str(r[0]) for r in conn.execute(_CATALOGS).fetchall()]
    parts = []
    for key, ident, where in [
        *((f"t:{s}.{n}", sql.Identifier(s, n), sql.SQL("")) for s, n in tables),
        *(
            (
                f"c:{c}",
                sql.Identifier("pg_catalog", c),
                sql.SQL(" WHERE nspname !~ '^pg_(toast_)?temp_'")
                if c == "pg_namespace"
                else sql.SQL(""),
            )
            for c in catalogs
        ),
    ]:
        parts.append(
            sql.SQL(
                "{} || '=' || (SELECT count(*) || ':' || coalesce(bool_or("
                "age(xmin) <= (SELECT age({}::text::xid))), false) FROM ONLY {}{})"
            ).format(sql.Literal(key), sql.Placeholder("b"), ident, where)
        )
    return sql.SQL("SELECT ARRAY[{}], {}").format(sql.SQL(", ").join(parts), sql.SQL(_FIXED))


def read_detail(conn: psycopg.Connection, baseline_xmax: str, query: sql.Composed) -> Detail:
    """Run a baseline's detail ``query``: rows newer than ``baseline_xmax`` count as changed."""
    xid32 = str(int(baseline_xmax) % (1 << 32))
    row = conn.execute(query, {"b": xid32}).fetchone()
    assert row is not None
    tables: dict[tuple[str, str], tuple[int, bool]] = {}
    catalogs: dict[str, tuple[int, bool]] = {}
    for item in row[0]:
        key, _, value = str(item).partition("=")
        count, _, newer = value.partition(":")
        pair = (int(count), newer == "true")
        if key.startswith("t:"):
            schema, _, name = key[2:].partition(".")
            tables[(schema, name)] = pair
        else:
            catalogs[key[2:]] = pair
    return Detail(tables, catalogs, str(row[1]), str(row[2]), str(row[3]), int(row[4]))


def read_baseline(conn: psycopg.Connection, previous: Baseline | None = None) -> Baseline:
    """The baseline of a database that equals its template now (``conn`` autocommit).

    ``previous``: the baseline of the same schema (after a reset in place, or a
    check that found nothing changed): its detail query is used again.
    """
    xmax, sequences, _ = _quick(conn)
    query = _detail_query(conn) if previous is None else previous.query
    detail = read_detail(conn, xmax, query)
    return Baseline(xmax=xmax, sequences=sequences, detail=detail, query=query)


def moved_on(baseline: Baseline, conn: psycopg.Connection) -> Baseline:
    """``baseline`` with today's transaction horizon, after a check found nothing changed."""
    xmax, sequences, _ = _quick(conn)
    return replace(baseline, xmax=xmax, sequences=sequences)


def quick_clean(conn: psycopg.Connection, baseline: Baseline) -> bool:
    """True when nothing can have changed since ``baseline`` (no xid assigned, sequences still)."""
    xmax, sequences, temporary = _quick(conn)
    return xmax == baseline.xmax and sequences == baseline.sequences and not temporary


def verdict(baseline: Baseline, now: Detail) -> Verdict:
    """Compare a :func:`read_detail` result with the baseline's."""
    before = baseline.detail
    other = []
    if now.relations != before.relations:
        other.append("relations created, dropped, altered, truncated or rewritten")
    changed_catalogs = [
        c
        for c, (rows, newer) in now.catalogs.items()
        if newer or before.catalogs.get(c) != (rows, False)
    ]
    if changed_catalogs or now.catalogs.keys() != before.catalogs.keys():
        other.append(f"system catalogs written ({', '.join(changed_catalogs[:5])})")
    if now.tables.keys() != before.tables.keys():
        other.append("user tables created or dropped")
    if now.database != before.database:
        other.append("the database or its settings were altered")
    if now.prepared:
        other.append(f"{now.prepared} prepared transaction(s) left")
    tables = tuple(
        key
        for key, (rows, newer) in now.tables.items()
        if newer or before.tables.get(key) != (rows, False)
    )
    return Verdict(tables=tables, sequences=now.sequences != before.sequences, other=tuple(other))
