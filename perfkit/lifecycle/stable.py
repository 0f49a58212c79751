"""A stable DSN per worker: ``verified`` hands every test of a worker the same database.

With ``stable_dsn`` (``--perfkit-stable-dsn``) the first database a worker's
:class:`~perfkit.lifecycle.verified.VerifiedPool` hands out becomes its *home*.
When a test releases it, :meth:`StableHome.settle` runs on the test's path,
before the next test gets it:

1. ends the sessions that are not plainly idle (active or idle in a
   transaction: their uncommitted writes and row locks go with them), those
   holding advisory locks, and all of them when temporary relations exist;
   idle ones stay, so an application's cached engine or pool keeps them;
2. checks the database without the statistics counters (idle sessions may
   hold theirs back for seconds): :mod:`perfkit.lifecycle.stablecheck`;
3. unchanged: done; only rows or sequence positions changed: reset in place
   (:mod:`perfkit.lifecycle.reset`); anything else (DDL, TRUNCATE, a catalog
   write, prepared transactions, a session that would not end): dropped with
   every session and cloned again under the same name.

The next test's ``perfkit_db`` connection is opened when the test first asks
for it (a test that only takes the DSN never pays for one).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import psycopg
from psycopg import sql

from perfkit.lifecycle import reset as resets
from perfkit.lifecycle import stablecheck
from perfkit.lifecycle.dbconnect import connect
from perfkit.lifecycle.host import StrategyHost
from perfkit.lifecycle.strategies import _close_quietly as _close

__all__ = ["StableHome"]


class StableHome:
    """One worker's database, kept under one name and checked after every test."""

    def __init__(self, session: StrategyHost, name: str, pristine: resets.Pristine | None) -> None:
        self.session = session
        self.name = name
        self.dsn = session.dsn_for(name)
        self.pristine = pristine
        self.leased = False
        self._checker = connect(self.dsn, autocommit=True)
        self.baseline = stablecheck.read_baseline(self._checker)

    def settle(self) -> tuple[str, str]:
        """Make the home equal its template again; (event, why) for the records."""
        try:
            if self._checker.closed or self._checker.broken:
                self._checker = connect(self.dsn, autocommit=True)
            left = stablecheck.end_busy_sessions(self._checker)
            if left:
                return self._recreate(f"{left} session(s) did not end")
            if stablecheck.quick_clean(self._checker, self.baseline):
                return "pool_reuse", ""
            now = stablecheck.read_detail(self._checker, self.baseline.xmax, self.baseline.query)
            found = stablecheck.verdict(self.baseline, now)
            if found.other:
                return self._recreate("; ".join(found.other))
            if found.clean:  # transaction ids were used elsewhere: move the baseline on
                self.baseline = stablecheck.moved_on(self.baseline, self._checker)
                return "pool_reuse", ""
            truncated = self._reset(found, now)
            if truncated is None:
                return self._recreate("rows changed; reset in place not possible")
            # the reset put back exactly what the check found changed: only a TRUNCATE
            # (a new relfilenode) changes what the baseline holds beyond its horizon
            self.baseline = (
                stablecheck.read_baseline(self._checker, self.baseline)
                if truncated
                else stablecheck.moved_on(self.baseline, self._checker)
            )
            return "pool_reset", ", ".join(".".join(t) for t in found.tables)
        except psycopg.Error as exc:
            return self._recreate(f"the check failed: {type(exc).__name__}")

    def _reset(self, found: stablecheck.Verdict, now: stablecheck.Detail) -> bool | None:
        """Reset the changed tables and sequences; whether one was truncated (None: not done)."""
        if self.pristine is None:
            return None
        before = json.loads(self.baseline.detail.sequences)
        after = json.loads(now.sequences)
        moved = [int(oid) for oid in after if before.get(oid) != after[oid]]
        tables, sequences = _relations(self._checker, found.tables, moved)
        tables = tuple(replace(t, live_rows=now.tables[(t.schema, t.name)][0]) for t in tables)
        try:
            resets.reset(self._checker, resets.ResetPlan(tables, sequences), self.pristine)
        except psycopg.errors.InsufficientPrivilege:
            self.pristine = None  # not a superuser: recreate from now on
            return None
        return any(t.live_rows > resets.TRUNCATE_ROWS for t in tables)

    def _recreate(self, why: str) -> tuple[str, str]:
        """Drop the home with every session to it and clone it again under the same name.

        Transactions left prepared in it (which would keep it from being dropped)
        are rolled back first.
        """
        with contextlib.suppress(psycopg.Error):
            if not (self._checker.closed or self._checker.broken):
                for (gid,) in self._checker.execute(_PREPARED).fetchall():
                    self._checker.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
        _close(self._checker)
        self.session.drop_database(self.name)
        self.session.create_database(self.name)
        self._checker = connect(self.dsn, autocommit=True)
        self.baseline = stablecheck.read_baseline(self._checker)
        return "pool_dirty", why

    def close(self) -> None:
        _close(self._checker)


_PREPARED = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind, c.oid FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
    OR c.oid = ANY(%s::oid[])
"""


def _relations(
    conn: psycopg.Connection, tables: tuple[tuple[str, str], ...], sequences: list[int]
) -> tuple[tuple[resets.Relation, ...], tuple[resets.Relation, ...]]:
    """:class:`~perfkit.lifecycle.reset.Relation` rows for the tables and sequences to reset."""
    rows = conn.execute(
        _RELATIONS, ([s for s, _ in tables], [n for _, n in tables], sequences)
    ).fetchall()
    found = [
        (
            int(oid),
            resets.Relation(
                schema=schema,
                name=name,
                kind=kind,
                identity=(),
                writes=0,
                sequence_position=None,
                toast_of=0,
                live_rows=0,
            ),
        )
        for schema, name, kind, oid in rows
    ]
    wanted = set(tables)
    return (
        tuple(r for _, r in found if (r.schema, r.name) in wanted and r.kind == "r"),
        tuple(r for oid, r in found if oid in sequences and r.kind == "S"),
    )
