"""Was a database changed while the application's idle connections stay open? Without counters.

The stable-DSN mode of ``verified`` (:mod:`perfkit.lifecycle.stable`) keeps the
application's idle connections to the worker's database across tests, so the
tuple counters :mod:`perfkit.lifecycle.cleancheck` relies on cannot be trusted:
since PostgreSQL 15 a backend flushes its counters at most once a second and an
idle one may keep them pending for up to 10 s (``PGSTAT_IDLE_INTERVAL``). This
check reads the data itself instead:

1. :func:`end_busy_sessions` ends the sessions that are not plainly idle (active,
   idle in a transaction: their uncommitted writes and row locks), those holding
   advisory locks and, when temporary relations are still there once no
   session is closing (a session that just closed drops its own), every other
   session (temporary tables belong to a session; they go when it exits).
2. :func:`quick_clean` (read in the same statement): no transaction id was assigned
   anywhere in the cluster since the baseline (``pg_current_snapshot()``'s
   ``xmax`` did not move: every write, DDL and commit of a row needs one) and
   every sequence is where it was (``nextval`` may write without one). Then
   the database is unchanged.
3. Otherwise, where the server lets perfkit read its WAL, the tables and catalog
   pages written since the baseline are named by :mod:`perfkit.lifecycle.walcheck`
   and :func:`read_touched` reads only those (each page's visible rows: as many
   as at the baseline and none newer), plus the sequences, the database's
   shared-catalog state and prepared transactions (:data:`STATE`);
   :func:`touched_verdict` names what changed.
4. Else (no WAL reader, or a file the WAL names that the baseline does not
   know) :func:`read_detail` scans, per user table and per local system
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import psycopg
from psycopg import sql

from perfkit.lifecycle import walcheck

__all__ = [
    "QUICK",
    "STATE",
    "Baseline",
    "Detail",
    "Quick",
    "TouchedQuery",
    "Verdict",
    "as_quick",
    "end_busy_sessions",
    "moved_on",
    "quick_clean",
    "read_baseline",
    "read_detail",
    "read_quick",
    "read_touched",
    "touched_query",
    "touched_verdict",
    "verdict",
]

# the WAL position first: whatever is written after it is in the WAL from there
_QUICK_COLUMNS = """
pg_current_wal_insert_lsn()::text,
pg_snapshot_xmax(pg_current_snapshot())::text,
(SELECT md5(coalesce(string_agg(c.oid || ':' || coalesce(pg_sequence_last_value(c.oid)::text,
        '-'), ',' ORDER BY c.oid), ''))
   FROM pg_class c WHERE c.relkind = 'S' AND c.relpersistence <> 't'),
(SELECT count(*) FROM pg_class c WHERE c.relpersistence = 't')
"""
QUICK = f"SELECT {_QUICK_COLUMNS}"
_BUSY = f"""
SELECT {_QUICK_COLUMNS},
       coalesce(array_agg(a.pid) FILTER (WHERE a.busy), '{{}}'),
       coalesce(array_agg(a.pid) FILTER (WHERE a.busy AND (a.state NOT LIKE 'idle in transaction%'
                  OR a.backend_xid IS NOT NULL OR a.advisory)), '{{}}'),
       coalesce(array_agg(a.pid), '{{}}')
  FROM (SELECT a.pid, a.state, a.backend_xid, a.pid IN (SELECT pid FROM advisory) AS advisory,
               a.state IS DISTINCT FROM 'idle' OR a.backend_xid IS NOT NULL
                 OR a.pid IN (SELECT pid FROM advisory) AS busy
          FROM pg_stat_activity a
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
           AND a.backend_type = 'client backend') a
"""
_ADVISORY = "WITH advisory AS (SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory')"
#: Temporary relations left, and sessions that look like they are exiting: idle, but not
#: waiting for their client (a closing session drops its temporary relations first).
_TEMPORARY = """
SELECT (SELECT count(*) FROM pg_class c WHERE c.relpersistence = 't'),
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
           AND a.backend_type = 'client backend' AND a.state = 'idle'
           AND a.wait_event IS DISTINCT FROM 'ClientRead')
"""
_TERMINATE = "SELECT count(pg_terminate_backend(p)) FROM unnest(%s::int[]) p"
_REMAINING = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::int[])"


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
_RELATIONS = """
(SELECT md5(string_agg(c.oid || ':' || c.relfilenode || ':' || c.xmin, ',' ORDER BY c.oid))
   FROM pg_class c WHERE c.relpersistence <> 't')"""
_STATE = """
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
_FIXED = f"{_RELATIONS},{_STATE}"
#: The database's state the WAL does not show: sequence positions (json), the database's
#: own row and settings, prepared transactions.
STATE = f"SELECT {_STATE}"
_ROWS = (
    "{} || '=' || (SELECT count(*) || ':' || coalesce(bool_or("
    "age(xmin) <= (SELECT age({}::text::xid))), false) FROM ONLY {} WHERE {})"
)


@dataclass(frozen=True)
class Quick:
    """What the quick check reads: WAL position, transaction horizon, sequences, temporaries."""

    lsn: str
    xmax: str  # pg_current_snapshot()'s xmax (xid8 text)
    sequences: str  # md5 of the sequence positions
    temporary: int  # temporary relations in the database


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
    wal: walcheck.WalBaseline | None = None  # None: no WAL reader, the full scan decides
    touched: TouchedQuery | None = None  # the WAL check's statement (with ``wal``)


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
    temporary_grace_s: float = 0.003,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, Quick | None]:
    """End the database's sessions that are not plainly idle; wait until they left.

    ``conn`` (autocommit) is connected to the database. Sessions idle in a
    read-only transaction (no transaction id: nothing to commit, no row locks)
    are ended but not waited for. Temporary relations go when their session
    exits: a session that just closed drops them within milliseconds. They are
    waited for while a session looks like it is exiting (idle but not waiting
    for its client) and ``temporary_grace_s`` after that; then every other
    session is ended too (the one that holds them cannot be told apart). Returns how many of the
    sessions waited for were still there after ``timeout_s``, and the quick
    check's reading when nothing had to be ended (read in the same statement).
    """
    quick, busy, waited, _ = _sessions(conn)
    left = _end(conn, busy, waited, timeout_s, clock=clock, sleep=sleep)
    if left or not quick.temporary:
        return left, None if busy else quick
    # While a session is exiting, wait for it (up to ``timeout_s``); once none is, give the
    # temporary relations ``temporary_grace_s`` more, then end every session.
    start = clock()
    quiet_since = start
    pause = 0.0005
    while clock() - quiet_since < temporary_grace_s and clock() - start < timeout_s:
        sleep(pause)
        pause = min(pause * 2, 0.002)
        row = conn.execute(_TEMPORARY).fetchone()
        assert row is not None
        if not row[0]:
            return 0, None
        if row[1]:
            quiet_since = clock()
    _, _, _, everyone = _sessions(conn)
    return _end(conn, everyone, everyone, timeout_s, clock=clock, sleep=sleep), None


def _sessions(conn: psycopg.Connection) -> tuple[Quick, list[int], list[int], list[int]]:
    """(the quick reading, busy sessions, those to wait for, every other session)."""
    row = conn.execute(_ADVISORY + _BUSY).fetchone()
    assert row is not None
    return as_quick(row), list(row[4]), list(row[5]), list(row[6])


def _end(
    conn: psycopg.Connection,
    pids: list[int],
    waited: list[int],
    timeout_s: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> int:
    """Terminate ``pids``; how many of ``waited`` are still there after ``timeout_s``."""
    if not pids:
        return 0
    conn.execute(_TERMINATE, (pids,))
    if not waited:
        return 0
    deadline = clock() + timeout_s
    pause = 0.001
    while True:
        left_row = conn.execute(_REMAINING, (waited,)).fetchone()
        left = int(left_row[0]) if left_row else 0
        if not left or clock() >= deadline:
            return left
        sleep(pause)
        pause = min(pause * 2, 0.02)


def as_quick(row: Sequence[object]) -> Quick:
    """A row of :data:`QUICK` as a :class:`Quick`."""
    return Quick(str(row[0]), str(row[1]), str(row[2]), int(str(row[3])))


def read_quick(conn: psycopg.Connection) -> Quick:
    """The quick check's reading now."""
    row = conn.execute(QUICK).fetchone()
    assert row is not None
    return as_quick(row)


def _detail_query(conn: psycopg.Connection) -> sql.Composed:
    """One query reading every user table's and local catalog's (rows, newer) pair."""
    tables = [(str(s), str(n)) for s, n in conn.execute(_USER_TABLES).fetchall()]
    catalogs = [str(r[0]) for r in conn.execute(_CATALOGS).fetchall()]
    parts = [
        sql.SQL(_ROWS).format(sql.Literal(key), sql.Placeholder("b"), ident, where)
        for key, ident, where in [
            *((f"t:{s}.{n}", sql.Identifier(s, n), sql.SQL("true")) for s, n in tables),
            *(
                (f"c:{c}", sql.Identifier("pg_catalog", c), walcheck.catalog_filter(c))
                for c in catalogs
            ),
        ]
    ]
    return sql.SQL("SELECT ARRAY[{}], {}").format(sql.SQL(", ").join(parts), sql.SQL(_FIXED))


def read_detail(conn: psycopg.Connection, baseline_xmax: str, query: sql.Composed) -> Detail:
    """Run a baseline's detail ``query``: rows newer than ``baseline_xmax`` count as changed."""
    row = conn.execute(query, {"b": _xid32(baseline_xmax)}, prepare=True).fetchone()
    assert row is not None
    tables: dict[tuple[str, str], tuple[int, bool]] = {}
    catalogs: dict[str, tuple[int, bool]] = {}
    for item in row[0]:
        key, _, value = str(item).partition("=")
        pair = _pair(value)
        if key.startswith("t:"):
            schema, _, name = key[2:].partition(".")
            tables[(schema, name)] = pair
        else:
            catalogs[key[2:]] = pair
    return Detail(tables, catalogs, str(row[1]), str(row[2]), str(row[3]), int(row[4]))


def read_baseline(
    conn: psycopg.Connection,
    previous: Baseline | None = None,
    reader: walcheck.WalReader | None = None,
) -> Baseline:
    """The baseline of a database that equals its template now (``conn`` autocommit).

    ``previous``: the baseline of the same schema (after a reset in place, or a
    check that found nothing changed): its detail query is used again. With a
    ``reader`` the WAL position is read first (whatever is written after it is
    in the WAL), then the file nodes and every catalog page's row count.
    """
    quick = read_quick(conn)
    lsn = quick.lsn if reader is not None else None
    xmax, sequences = quick.xmax, quick.sequences
    query = _detail_query(conn) if previous is None else previous.query
    detail = read_detail(conn, xmax, query)
    wal = touched = None
    if lsn is not None:
        nodes = walcheck.read_node_map(conn)
        wal = walcheck.WalBaseline(lsn, nodes, walcheck.read_page_counts(conn, nodes))
        kept = previous.touched if previous is not None else None
        touched = kept if kept is not None else touched_query(detail)
    return Baseline(
        xmax=xmax, sequences=sequences, detail=detail, query=query, wal=wal, touched=touched
    )


def moved_on(
    baseline: Baseline,
    conn: psycopg.Connection,
    reader: walcheck.WalReader | None = None,
    quick: Quick | None = None,
) -> Baseline:
    """``baseline`` with today's transaction horizon (and WAL position), after a check found
    nothing changed or a reset put back what changed (``quick``: read just now, else read)."""
    quick = quick if quick is not None else read_quick(conn)
    wal = baseline.wal
    if wal is not None and reader is not None:
        wal = replace(wal, lsn=quick.lsn)
    return replace(baseline, xmax=quick.xmax, sequences=quick.sequences, wal=wal)


@dataclass(frozen=True)
class TouchedQuery:
    """Statements that check a set of tables and catalog pages, one per set of relations.

    A statement's text depends only on which tables and catalogs it reads (the
    pages are a parameter), so a suite's tests, which touch the same few sets
    over and over, reuse a handful of prepared statements with generic plans:
    nothing is planned per test, and only the relations read are opened.
    """

    tables: frozenset[tuple[str, str]]
    catalogs: frozenset[str]
    statements: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], sql.Composed] = field(
        default_factory=dict, repr=False, compare=False
    )

    def statement(
        self, tables: tuple[tuple[str, str], ...], catalogs: tuple[str, ...]
    ) -> sql.Composed:
        key = (tables, catalogs)
        if key not in self.statements:
            self.statements[key] = _touched_statement(tables, catalogs)
        return self.statements[key]


_PAGES = (
    "(SELECT array_to_string(array_agg(p || '=' || x.n || ':' || x.newer), ',')"
    " FROM unnest({}::int[]) p, LATERAL (SELECT count(*) n, coalesce(bool_or("
    "age(xmin) <= (SELECT age({}::text::xid))), false) newer FROM ONLY {}"
    " WHERE ctid >= ('(' || p || ',0)')::tid AND ctid < ('(' || (p + 1) || ',0)')::tid"
    " AND {}) x)"
)
_TABLE_ROWS = (
    "(SELECT count(*) || ':' || coalesce(bool_or("
    "age(xmin) <= (SELECT age({}::text::xid))), false) FROM ONLY {})"
)


def _touched_statement(
    tables: tuple[tuple[str, str], ...], catalogs: tuple[str, ...]
) -> sql.Composed:
    b = sql.Placeholder("b")
    table_parts = [sql.SQL(_TABLE_ROWS).format(b, sql.Identifier(s, n)) for s, n in tables]
    catalog_parts = [
        sql.SQL(_PAGES).format(
            sql.Placeholder(f"c{j}"), b, sql.Identifier("pg_catalog", c), walcheck.catalog_filter(c)
        )
        for j, c in enumerate(catalogs)
    ]
    return sql.SQL("SELECT ARRAY[{}]::text[], ARRAY[{}]::text[], {}").format(
        sql.SQL(", ").join(table_parts), sql.SQL(", ").join(catalog_parts), sql.SQL(_STATE)
    )


def touched_query(detail: Detail) -> TouchedQuery:
    """The :class:`TouchedQuery` of the tables and catalogs ``detail`` holds."""
    catalogs = frozenset(detail.catalogs) - walcheck.IGNORED_CATALOGS
    return TouchedQuery(frozenset(detail.tables), catalogs)


def read_touched(
    conn: psycopg.Connection, baseline: Baseline, touched: walcheck.Touched
) -> Detail | None:
    """Rows of the tables and catalog pages the WAL names (and of every unlogged table).

    ``tables`` holds (rows, newer) per table as :func:`read_detail` does;
    ``catalogs`` holds it per ``"catalog:block"``; the database's state,
    prepared transactions and sequence positions are read as in the full scan.
    None when the baseline does not know them (the full scan decides).
    """
    assert baseline.wal is not None and baseline.touched is not None
    shape = baseline.touched
    tables = tuple(sorted(set(touched.tables) | set(baseline.wal.nodes.unlogged)))
    pages: dict[str, list[int]] = {}
    for catalog, block in touched.pages:
        pages.setdefault(catalog, []).append(block)
    catalogs = tuple(sorted(pages))
    if not set(tables) <= shape.tables or not set(catalogs) <= shape.catalogs:
        return None
    params: dict[str, str] = {"b": _xid32(baseline.xmax)}
    # text, not lists: the same parameter types on every call keep one prepared statement
    params.update(
        {f"c{j}": "{" + ",".join(map(str, sorted(pages[c]))) + "}" for j, c in enumerate(catalogs)}
    )
    row = conn.execute(shape.statement(tables, catalogs), params, prepare=True).fetchone()
    assert row is not None
    found = {table: _pair(value) for table, value in zip(tables, row[0], strict=True)}
    catalog_rows = {
        f"{catalog}:{block}": _pair(pair)
        for catalog, value in zip(catalogs, row[1], strict=True)
        if value
        for block, _, pair in (item.partition("=") for item in value.split(","))
    }
    return Detail(found, catalog_rows, "", str(row[2]), str(row[3]), int(row[4]))


def _xid32(xmax: str) -> str:
    """A baseline's ``xid8`` horizon as the 32-bit ``xid`` that ``xmin`` is compared with."""
    return str(int(xmax) % (1 << 32))


def _pair(value: str) -> tuple[int, bool]:
    count, _, newer = value.partition(":")
    return int(count), newer == "true"


def touched_verdict(baseline: Baseline, now: Detail) -> Verdict:
    """Compare a :func:`read_touched` result with the baseline (its page counts for pages)."""
    assert baseline.wal is not None
    before = baseline.detail
    pages = baseline.wal.pages
    changed_pages = []
    for key, (rows, newer) in now.catalogs.items():
        catalog, _, block = key.rpartition(":")
        if newer or pages.get(catalog, {}).get(int(block), 0) != rows:
            changed_pages.append(catalog)
    other = []
    if changed_pages:
        other.append(f"system catalogs written ({', '.join(sorted(set(changed_pages))[:5])})")
    return _with_rows_and_state(before, now, other)


def _with_rows_and_state(before: Detail, now: Detail, other: list[str]) -> Verdict:
    """The verdict: ``other`` plus what the tables, sequences and database state say."""
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


def quick_clean(conn: psycopg.Connection, baseline: Baseline, quick: Quick | None = None) -> bool:
    """True when nothing can have changed since ``baseline`` (no xid assigned, sequences still).

    ``quick``: a reading taken just now (:func:`end_busy_sessions` gives one), else read.
    """
    now = quick if quick is not None else read_quick(conn)
    return now.xmax == baseline.xmax and now.sequences == baseline.sequences and not now.temporary


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
    return _with_rows_and_state(before, now, other)
