"""Was a test's database left unchanged? A one-round-trip check against a baseline, from the server.

:func:`read_state` reads, in one query, what any change to a database moves:

* per relation of the database (tables, indexes, TOAST, sequences and every
  local system catalog): ``oid``, ``relfilenode`` (TRUNCATE and rewrites give a
  new one), the ``xmin`` of its ``pg_class`` row (any DDL on it) and the
  cumulative tuple counters (inserted, updated, deleted; aborted writes
  count too). DDL of every kind writes system catalogs, so a new function,
  enum value, trigger state, grant, comment, policy or large object moves the
  counters of ``pg_proc``, ``pg_enum``, ``pg_trigger``, ``pg_class``,
  ``pg_description``, ``pg_policy`` or ``pg_largeobject``;
* each sequence's position (``pg_sequence_last_value``: ``nextval`` writes no
  tuple counter);
* database-level state kept in shared catalogs, whose counters other databases
  also move: the database's ``pg_database`` row (owner, connection limit, ACL,
  whether it accepts connections or is a template, tablespace, locale; not its
  name, which perfkit itself changes), its settings (``pg_db_role_setting``)
  and comment;
* when its statistics were last reset (``pg_stat_reset()`` inside a test must
  not make counters look unchanged) and when the server started (a crash
  recovery discards statistics).

When statistics reach the reader. Since PostgreSQL 15 a backend keeps its
counters in local memory and flushes them to shared memory when it goes idle
at least a second after its last flush (``PGSTAT_MIN_INTERVAL``; at most 60 s
later under lock contention) and always when it exits (a ``before_shmem_exit``
hook, which runs before the backend leaves the process array). So the caller
first ends every other session to the database and waits until each has left
``pg_stat_activity`` (:func:`end_other_sessions`): its counters are then in
shared memory. The reader sets
``stats_fetch_consistency = none`` for its own transaction, so it reads shared
memory directly rather than a cached snapshot. A session that cannot be ended
in time, or a prepared transaction left in the database, makes the verdict
"not clean".

What this check cannot see: a superuser session that set ``track_counts = off``
before writing (the counters do not move; perfkit's test role should not be a
superuser when a suite is not trusted), and cluster-wide state (roles,
tablespaces). :func:`perfkit.lifecycle.fingerprint.equals_template` is the
slow, complete comparison the tests use to check this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

__all__ = ["RELATIONS_CHANGED", "State", "end_other_sessions", "read_state", "unchanged"]

#: The reason :func:`unchanged` gives when relations (rows, sequences, DDL) moved; when it
#: is the only reason, :mod:`perfkit.lifecycle.reset` may be able to undo the change.
RELATIONS_CHANGED = "relations changed (rows, sequences, DDL or a rewrite)"

#: ``pg_statistic`` (and its TOAST table) is written by ANALYZE, autovacuum's too: not a
#: change a test made.
_IGNORED = """
SELECT oid FROM pg_class
 WHERE oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass)
UNION ALL
SELECT reltoastrelid FROM pg_class
 WHERE oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass)
"""

_STATE_QUERY = f"""
WITH db AS (SELECT * FROM pg_database WHERE datname = current_database())
SELECT
  (SELECT md5(string_agg(
      c.oid::text || ':' || c.relfilenode || ':' || c.xmin || ':'
      || pg_stat_get_tuples_inserted(c.oid) || ':' || pg_stat_get_tuples_updated(c.oid)
      || ':' || pg_stat_get_tuples_deleted(c.oid)
      || CASE WHEN c.relkind = 'S' THEN ':' || coalesce(pg_sequence_last_value(c.oid)::text, '-')
              ELSE '' END,
      ',' ORDER BY c.oid))
     FROM pg_class c
    WHERE NOT c.relisshared AND c.oid NOT IN ({_IGNORED})
      AND c.relpersistence <> 't'),
  (SELECT count(*) FROM pg_class c WHERE c.relpersistence = 't'),
  concat_ws('/', db.datdba, db.datconnlimit, db.datallowconn, db.datistemplate,
            db.dattablespace, db.datacl::text, db.datcollate, db.datctype, db.encoding),
  (SELECT string_agg(s.setrole::text || '=' || s.setconfig::text, ';' ORDER BY s.setrole)
     FROM pg_db_role_setting s WHERE s.setdatabase = db.oid),
  (SELECT description FROM pg_shdescription d
    WHERE d.objoid = db.oid AND d.classoid = 'pg_database'::regclass),
  pg_stat_get_db_stat_reset_time(db.oid)::text,
  pg_postmaster_start_time()::text,
  (SELECT count(*) FROM pg_prepared_xacts p WHERE p.database = current_database())
FROM db
"""

_TERMINATE = """
SELECT count(pg_terminate_backend(pid))
FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""
_REMAINING = """
SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class State:
    """What :func:`read_state` read: compare two with :func:`unchanged`."""

    relations: str
    temporary: int
    database_row: str
    settings: str | None
    comment: str | None
    stats_reset: str | None
    server_started: str
    prepared: int


def read_state(conn: psycopg.Connection) -> State:
    """Read the database's :class:`State` on ``conn`` (idle; left idle, nothing changed).

    Call it after :func:`end_other_sessions`: counters of sessions still
    running may not have reached shared memory yet.
    """
    with conn.transaction():
        conn.execute("SET LOCAL stats_fetch_consistency = none")
        row = conn.execute(_STATE_QUERY).fetchone()
    assert row is not None
    return State(
        relations=row[0],
        temporary=int(row[1]),
        database_row=row[2],
        settings=row[3],
        comment=row[4],
        stats_reset=row[5],
        server_started=row[6],
        prepared=int(row[7]),
    )


def unchanged(baseline: State, now: State) -> list[str]:
    """Why ``now`` is not provably the ``baseline`` database (empty: it is)."""
    reasons = []
    if now.relations != baseline.relations:
        reasons.append(RELATIONS_CHANGED)
    if now.temporary:
        reasons.append(f"{now.temporary} temporary relation(s) still exist")
    if now.database_row != baseline.database_row:
        reasons.append("the database was altered")
    if (now.settings, now.comment) != (baseline.settings, baseline.comment):
        reasons.append("database settings or comment changed")
    if now.stats_reset != baseline.stats_reset:
        reasons.append("statistics were reset")
    if now.server_started != baseline.server_started:
        reasons.append("the server restarted")
    if now.prepared:
        reasons.append(f"{now.prepared} prepared transaction(s) left")
    return reasons


def end_other_sessions(
    admin: psycopg.Connection,
    dbname: str,
    timeout_s: float = 5.0,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """End every session connected to ``dbname`` and wait until each has left.

    A backend leaves ``pg_stat_activity`` in an ``on_shmem_exit`` callback, after
    its statistics were flushed in a ``before_shmem_exit`` one, so "gone from
    ``pg_stat_activity``" means "counters in shared memory". This polls for that
    (1 ms, doubling to 20 ms) instead of ``pg_terminate_backend(pid, timeout)``,
    which sleeps 100 ms before its first look. ``admin`` must be in autocommit
    mode (each poll then reads fresh activity). Returns how many sessions were
    still there after ``timeout_s`` (treat the database as changed unless 0).
    """
    row = admin.execute(_TERMINATE, (dbname,)).fetchone()
    if not row or not row[0]:
        return 0
    deadline = clock() + timeout_s
    pause = 0.001
    while True:
        remaining = admin.execute(_REMAINING, (dbname,)).fetchone()
        left = int(remaining[0]) if remaining else 0
        if not left or clock() >= deadline:
            return left
        sleep(pause)
        pause = min(pause * 2, 0.02)
