"""``pg_stat_statements`` snapshots and their deltas: which statements the server ran.

:func:`enable` creates the extension in the lab's database when it can and
says why not when it cannot (the library not preloaded, no privilege, not
installed): the profiler then carries on without statement statistics.
:func:`snapshot` reads the current database's statements (the profiler's own,
marked with :data:`~perfkit.serverprofile.sampler.MARKER`, left out);
:func:`delta` subtracts two snapshots (pure).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import psycopg

from perfkit.serverprofile.sampler import APPLICATION_NAME, MARKER

KEY = ["userid", "dbid", "queryid"]
#: Cumulative columns of a snapshot (PostgreSQL 13+ names).
CUMULATIVE = ["calls", "total_exec_time", "rows", "shared_blks_hit", "shared_blks_read"]
#: Columns of a delta / the ``top_statements`` frame (times in ms, as the view gives them).
COLUMNS = ["query", "calls", "total_ms", "mean_ms", "rows", "shared_blks_hit", "shared_blks_read"]


def connect(dsn: str) -> psycopg.Connection[Any]:
    """A short-lived connection for a snapshot, named so that the sampler leaves it out."""
    return psycopg.connect(
        str(dsn), autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
    )


def enable(dsn: str, *, create: bool = True) -> str | None:
    """Make ``pg_stat_statements`` readable in ``dsn``'s database; None, or why it is not.

    ``create=False`` (someone else's server) only uses the extension if it is
    there: nothing is created.
    """
    try:
        with connect(dsn) as conn:
            if create:
                conn.execute(f"{MARKER} CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            elif not conn.execute(
                f"{MARKER} SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
            ).fetchone():
                return (
                    "pg_stat_statements is not installed in this database; statement "
                    "statistics are left out (perfkit creates no extension on an external "
                    "server: CREATE EXTENSION pg_stat_statements there to get them)"
                )
            conn.execute(f"{MARKER} SELECT 1 FROM pg_stat_statements LIMIT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"pg_stat_statements is not available on this server ({first}); statement "
            "statistics are left out (start PostgreSQL with "
            "shared_preload_libraries=pg_stat_statements to get them)"
        )
    return None


def snapshot(dsn: str) -> pd.DataFrame:
    """The current database's statements: :data:`KEY`, ``query`` and :data:`CUMULATIVE`."""
    cols = ", ".join(CUMULATIVE)
    sql = (
        f"{MARKER} SELECT userid::bigint, dbid::bigint, queryid, query, {cols} "
        "FROM pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE %s"
    )
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, (f"%{MARKER}%",))
        rows = cur.fetchall()
        names = [d.name for d in cur.description or []]
    return pd.DataFrame(rows, columns=names or [*KEY, "query", *CUMULATIVE])


def delta(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """What ran between two snapshots: :data:`COLUMNS`, one row per statement with calls.

    A statement missing from ``before`` counts from zero; one that went down
    (the statistics were reset) is left out.
    """
    if after.empty:
        return pd.DataFrame(columns=COLUMNS)
    merged = after.merge(before[[*KEY, *CUMULATIVE]], on=KEY, how="left", suffixes=("", "_0"))
    for col in CUMULATIVE:
        merged[col] = merged[col].astype(float) - merged[f"{col}_0"].fillna(0).astype(float)
    merged = merged[(merged["calls"] > 0) & (merged[CUMULATIVE] >= 0).all(axis=1)]
    out = pd.DataFrame(
        {
            "query": merged["query"].astype(str).str.replace(r"\s+", " ", regex=True),
            "calls": merged["calls"].astype(int),
            "total_ms": merged["total_exec_time"],
            "mean_ms": merged["total_exec_time"] / merged["calls"],
            "rows": merged["rows"].astype(int),
            "shared_blks_hit": merged["shared_blks_hit"].astype(int),
            "shared_blks_read": merged["shared_blks_read"].astype(int),
        }
    )
    return out.sort_values("total_ms", ascending=False, ignore_index=True)
