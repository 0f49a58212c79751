"""Leak detection: does a strategy really hide one test's state from the next?

Two consecutive leases under the same strategy: the first writes (a row in a
migrated table, a sequence step, a new table) and commits; the second looks.
Each kind of state a strategy lets through is reported; a strategy passes when
nothing it ``guarantees`` leaked. ``none`` (no isolation) is the negative control.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from perfkit.lifecycle.registry import strategy_class
from perfkit.lifecycle.session import IsolationSession

PROBE_TABLE = "perfkit_leak_probe"
NEW_TABLE = "perfkit_leak_new"
#: Appended to the migrations of a leak-check session.
PROBE_SQL = f"CREATE TABLE {PROBE_TABLE} (id bigserial PRIMARY KEY, note text NOT NULL);"


@dataclass(frozen=True, kw_only=True)
class LeakReport:
    """What leaked from one test into the next under ``strategy``."""

    strategy: str
    leaked: frozenset[str]
    guarantees: frozenset[str]

    @property
    def isolated(self) -> bool:
        """True when nothing the strategy guarantees leaked."""
        return not (self.leaked & self.guarantees)

    def as_row(self) -> dict[str, Any]:
        from perfkit.lifecycle.strategies import FACETS

        row: dict[str, Any] = {
            "strategy": self.strategy,
            "isolated": self.isolated,
            "leaked_any": bool(self.leaked),
        }
        for facet in FACETS:
            row[f"{facet}_leaked"] = facet in self.leaked
            row[f"{facet}_guaranteed"] = facet in self.guarantees
        return row


def write_state(conn: psycopg.Connection) -> None:
    """What the first test does: a row, a sequence step and a table, committed."""
    conn.execute(f"INSERT INTO {PROBE_TABLE} (note) VALUES ('written by the first test')")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {NEW_TABLE} (id int)")
    conn.commit()


def observe(conn: psycopg.Connection) -> frozenset[str]:
    """What the second test can see of the first one's state."""
    leaked: set[str] = set()
    row = conn.execute(f"SELECT count(*) FROM {PROBE_TABLE}").fetchone()
    if row and row[0]:
        leaked.add("rows")
    row = conn.execute(f"SELECT to_regclass('{NEW_TABLE}') IS NOT NULL").fetchone()
    if row and row[0]:
        leaked.add("schema")
    row = conn.execute(f"INSERT INTO {PROBE_TABLE} (note) VALUES ('probe') RETURNING id").fetchone()
    if row and row[0] != 1:
        leaked.add("sequences")
    conn.rollback()
    return frozenset(leaked)


def check(session: IsolationSession, name: str) -> LeakReport:
    """Run the write-then-observe pair under strategy ``name`` in ``session``.

    ``session`` must have been opened with ``extra_sql=PROBE_SQL``.
    """
    first = session.acquire(name, "leakcheck::write")
    try:
        assert first.connection is not None
        write_state(first.connection)
    finally:
        session.release(first)
    second = session.acquire(name, "leakcheck::observe")
    try:
        assert second.connection is not None
        leaked = observe(second.connection)
    finally:
        session.release(second)
    return LeakReport(strategy=name, leaked=leaked, guarantees=strategy_class(name).guarantees)


def check_all(session: IsolationSession, names: Iterable[str]) -> list[LeakReport]:
    """:func:`check` for each strategy, in order."""
    return [check(session, name) for name in names]
