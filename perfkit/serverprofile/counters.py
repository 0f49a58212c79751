"""Cumulative server counters before and after a run, and their deltas.

Views read (those the server's version has): ``pg_stat_database`` (the
current database's row), ``pg_stat_bgwriter``, ``pg_stat_checkpointer``
(PostgreSQL 17+), ``pg_stat_wal`` (14+). Every numeric column is kept, so
the frames follow the server's version. :func:`delta` is pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from perfkit.serverprofile.sampler import MARKER
from perfkit.serverprofile.statements import connect

#: view -> (first server_version_num that has it, WHERE clause)
VIEWS: dict[str, tuple[int, str]] = {
    "pg_stat_database": (0, "WHERE datname = current_database()"),
    "pg_stat_bgwriter": (0, ""),
    "pg_stat_checkpointer": (170000, ""),
    "pg_stat_wal": (140000, ""),
}

Snapshot = dict[tuple[str, str], float]


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def snapshot(dsn: str) -> Snapshot:
    """``(view, column) -> value`` of every numeric column of :data:`VIEWS` on this server."""
    out: Snapshot = {}
    with connect(dsn) as conn:
        version = int(conn.info.server_version)
        for view, (since, where) in VIEWS.items():
            if version < since:
                continue
            with conn.cursor() as cur:
                cur.execute(f"{MARKER} SELECT * FROM {view} {where}")
                row = cur.fetchone()
                names = [d.name for d in cur.description or []]
            if row is None:
                continue
            for name, value in zip(names, row, strict=True):
                number = _numeric(value)
                if number is not None and name not in ("datid",):
                    out[(view, name)] = number
    return out


def delta(
    before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float]
) -> list[dict[str, Any]]:
    """``source, counter, value`` rows: after - before (NaN when a counter went back: a reset)."""
    rows = []
    for key, value in after.items():
        if key not in before:
            continue
        d = value - before[key]
        rows.append({"source": key[0], "counter": key[1], "value": d if d >= 0 else math.nan})
    return rows
