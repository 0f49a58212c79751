"""A stable DSN per worker: ``verified`` hands every test of a worker the same database.

With ``stable_dsn`` (``--perfkit-stable-dsn``) the first database a worker's
:class:`~perfkit.lifecycle.verified.VerifiedPool` hands out becomes its *home*.
When a test releases it, :meth:`StableHome.settle` runs on the test's path,
before the next test gets it:

1. ends the sessions that are not plainly idle (active or idle in a
   transaction: their uncommitted writes and row locks go with them), those
   holding advisory locks, and all of them when a live session holds a
   temporary table (a closing one is waited for); idle ones stay, so an
   application's cached engine or pool keeps them;
2. checks the database without the statistics counters (idle sessions may
   hold theirs back for seconds): :mod:`perfkit.lifecycle.stablecheck`, on
   the tables and catalog pages the WAL names (:mod:`perfkit.lifecycle.walcheck`)
   where the server lets perfkit read its WAL, else on every table and catalog;
3. unchanged: done; only rows or sequence positions changed: reset in place
   (:mod:`perfkit.lifecycle.reset`; when the WAL shows nothing but rows of known
   tables written, those tables are reset without a check first, and what the
   WAL does not show is read in the same round trip); anything else (DDL, TRUNCATE, a catalog
   write, prepared transactions, a session that would not end): dropped with
   every session and cloned again under the same name.

The next test's ``perfkit_db`` connection is opened when the test first asks
for it (a test that only takes the DSN never pays for one).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from perfkit.lifecycle import reset as resets
from perfkit.lifecycle import stablecheck, walcheck
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
        #: How the last settle decided: "quick" (nothing written), "wal" or "scan".
        self.last_check = ""
        self._checker = self._connect()
        self._wal_off = False
        self._wal = walcheck.WalReader.open(
            session.admin_dsn,
            self._database_oid(),
            install=session.shared_server.backend != "external",
        )
        self.baseline = stablecheck.read_baseline(self._checker, reader=self._wal)
        self._sequences = self._sequence_names()

    def _sequence_names(self) -> dict[int, tuple[str, str]]:
        """Every sequence of the home by oid (a test that makes one is recreated anyway)."""
        rows = self._checker.execute(_SEQUENCES).fetchall()
        return {int(oid): (str(schema), str(name)) for oid, schema, name in rows}

    def _connect(self) -> psycopg.Connection:
        """The checker's connection: its statements have fixed shapes, so plan each once."""
        return connect(self.dsn, autocommit=True, options="-c plan_cache_mode=force_generic_plan")

    @property
    def wal_available(self) -> bool:
        """Whether the server lets perfkit read its WAL (``pg_walinspect``)."""
        return self._wal is not None

    @property
    def reads_wal(self) -> bool:
        """Whether changes are found from the WAL (else by scanning every table and catalog)."""
        return self._wal is not None and not self._wal_off

    def use_wal(self, on: bool) -> None:
        """Find changes from the WAL (when the server lets perfkit read it) or by the full scan;
        for benchmarks that time both on one home. Takes a new baseline."""
        self._wal_off = not on
        self.baseline = stablecheck.read_baseline(self._checker, self.baseline, self._reader)

    @property
    def _reader(self) -> walcheck.WalReader | None:
        return self._wal if self.reads_wal else None

    def _database_oid(self) -> int:
        row = self._checker.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def settle(self) -> tuple[str, str]:
        """Make the home equal its template again; (event, why) for the records."""
        self.last_check = ""
        try:
            if self._checker.closed or self._checker.broken:
                self._checker = self._connect()
            left, quick = stablecheck.end_busy_sessions(self._checker)
            if left:
                return self._recreate(f"{left} session(s) did not end")
            if stablecheck.quick_clean(self._checker, self.baseline, quick):
                self.last_check = "quick"
                return "pool_reuse", ""
            touched = self._touched()
            if touched is not None and self._rows_only(touched):
                done = self._reset_touched(touched)
                if done is not None:
                    return done
            found, now = self._changes(touched)
            if found.other:
                return self._recreate("; ".join(found.other))
            truncated, after = False, None
            if not found.clean:
                done = self._reset(found, now)
                if done is None:
                    return self._recreate("rows changed; reset in place not possible")
                truncated, after = done
            # the reset put back exactly what the check found changed: only a TRUNCATE (a new
            # relfilenode) or a WAL the reader could not place changes more than the horizon
            self.baseline = (
                stablecheck.read_baseline(self._checker, self.baseline, self._reader)
                if truncated or (self.reads_wal and self.last_check == "scan")
                else stablecheck.moved_on(self.baseline, self._checker, self._reader, after)
            )
            if found.clean:
                return "pool_reuse", ""
            return "pool_reset", ", ".join(".".join(t) for t in found.tables)
        except psycopg.Error as exc:
            return self._recreate(f"the check failed: {type(exc).__name__}")

    def _touched(self) -> walcheck.Touched | None:
        """What the WAL says was written since the baseline (None: it cannot say)."""
        wal, reader = self.baseline.wal, self._reader
        if wal is None or reader is None:
            return None
        try:
            touched = walcheck.classify(reader.written_since(wal.lsn), wal.nodes)
        except psycopg.Error:  # the WAL since the baseline is gone, or the reader is
            return None
        if touched is not None:
            self.last_check = "wal"
        return touched

    def _rows_only(self, touched: walcheck.Touched) -> bool:
        """Whether the WAL shows nothing but rows of known, logged, small tables written."""
        assert self.baseline.wal is not None and self.baseline.touched is not None
        return (
            self.pristine is not None
            and not touched.pages
            and not touched.large
            and not self.baseline.wal.nodes.unlogged
            and touched.tables <= self.baseline.touched.tables
        )

    def _reset_touched(self, touched: walcheck.Touched) -> tuple[str, str] | None:
        """Empty and refill every table the WAL names, reading in the same round trip what the
        WAL does not show (sequences, the database's settings, prepared transactions); None
        when that reading says more than rows changed (the full path decides)."""
        baseline = self.baseline
        tables = tuple(_relation(s, n, "r") for s, n in sorted(touched.tables))
        moved: list[resets.Relation] = []

        def sequences_from(row: Sequence[Any]) -> tuple[resets.Relation, ...] | None:
            positions, database, prepared = row
            if database != baseline.detail.database or int(prepared):
                return None
            found = self._moved_sequences(positions)
            moved.extend(found or ())
            return found

        try:
            quick = self._run_reset(
                resets.ResetPlan(tables, ()),
                check=sql.SQL(stablecheck.STATE),
                sequences_from=sequences_from,
            )
        except resets.ResetAbandoned:
            return None
        if quick is None:
            return None
        self.baseline = stablecheck.moved_on(baseline, self._checker, self._reader, quick)
        if not tables and not moved:
            return "pool_reuse", ""
        return "pool_reset", ", ".join(".".join(t) for t in sorted(touched.tables))

    def _changes(
        self, touched: walcheck.Touched | None
    ) -> tuple[stablecheck.Verdict, stablecheck.Detail]:
        """What changed since the baseline: from the pages the WAL names, else a full scan."""
        if touched is not None:
            now = stablecheck.read_touched(self._checker, self.baseline, touched)
            if now is not None:
                return stablecheck.touched_verdict(self.baseline, now), now
        self.last_check = "scan"
        now = stablecheck.read_detail(self._checker, self.baseline.xmax, self.baseline.query)
        return stablecheck.verdict(self.baseline, now), now

    def _reset(
        self, found: stablecheck.Verdict, now: stablecheck.Detail
    ) -> tuple[bool, stablecheck.Quick] | None:
        """Reset the changed tables and sequences: whether one was truncated, and the quick
        check's reading just after (None: not done)."""
        sequences = self._moved_sequences(now.sequences)
        if sequences is None:
            return None
        tables = tuple(_relation(s, n, "r", now.tables[(s, n)][0]) for s, n in found.tables)
        quick = self._run_reset(resets.ResetPlan(tables, sequences))
        if quick is None:
            return None
        return any(t.live_rows > resets.TRUNCATE_ROWS for t in tables), quick

    def _moved_sequences(self, positions: str) -> tuple[resets.Relation, ...] | None:
        """The home's sequences whose position (``positions``: json by oid) is not the
        baseline's; None when one is a sequence the baseline did not have."""
        before, after = json.loads(self.baseline.detail.sequences), json.loads(positions)
        moved = [int(oid) for oid in after if before.get(oid) != after[oid]]
        if not set(moved) <= self._sequences.keys():
            return None
        return tuple(_relation(*self._sequences[oid], "S") for oid in moved)

    def _run_reset(self, plan: resets.ResetPlan, **options: Any) -> stablecheck.Quick | None:
        """:func:`~perfkit.lifecycle.reset.reset` on the checker, taking the next baseline's
        quick reading in its last round trip; None when it could not run (no seed rows, or
        not a superuser: recreate from now on). :class:`ResetAbandoned` passes through."""
        if self.pristine is None:
            return None
        try:
            row = resets.reset(
                self._checker,
                plan,
                self.pristine,
                flush_stats=False,  # the stable check reads no counters
                then=sql.SQL(stablecheck.QUICK),
                **options,
            )
        except psycopg.errors.InsufficientPrivilege:
            self.pristine = None
            return None
        return (
            stablecheck.as_quick(row) if row is not None else stablecheck.read_quick(self._checker)
        )

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
        self._checker = self._connect()
        if self._wal is not None:
            self._wal.database_oid = self._database_oid()
        self.baseline = stablecheck.read_baseline(self._checker, reader=self._reader)
        self._sequences = self._sequence_names()
        return "pool_dirty", why

    def close(self) -> None:
        _close(self._checker)
        if self._wal is not None:
            self._wal.close()


_PREPARED = "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()"
_SEQUENCES = """
SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S' AND c.relpersistence <> 't'
"""


def _relation(schema: str, name: str, kind: str, live_rows: int = 0) -> resets.Relation:
    return resets.Relation(
        schema=schema,
        name=name,
        kind=kind,
        identity=(),
        writes=0,
        sequence_position=None,
        toast_of=0,
        live_rows=live_rows,
    )
