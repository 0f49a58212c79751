"""Per-request records and the tidy frames a workload run produces.

A run yields three frames:

``requests`` (one row per request; every request is exactly one row, so
``requests == successes + errors`` by construction):
    ``worker``, ``seq``, ``query``, ``start_s`` (since the run's t0),
    ``wait_ms`` (inside ``getconn``, or ``connect`` without a pool),
    ``sql_ms`` (execute + fetch), ``hold_ms`` (from having the connection
    to having given it back; includes ``sql_ms``), ``total_ms``
    (``wait_ms + hold_ms``), ``ok``, ``stage`` (``""``, ``"acquire"`` or
    ``"query"``), ``error`` (exception class name or ``""``).
``stats`` (pool ``get_stats()`` sampled over time):
    ``t_s`` plus psycopg_pool's keys (``pool_min``, ``pool_max``,
    ``pool_size``, ``pool_available``, ``requests_waiting``, ``requests_num``,
    ``requests_queued``, ``requests_wait_ms``, ``requests_errors``,
    ``usage_ms``, ``returns_bad``, ``connections_num``, ``connections_ms``,
    ``connections_errors``, ``connections_lost``) and ``in_use``
    (``pool_size - pool_available``).
``events`` (actions injected during the run, e.g. killing server processes):
    ``t_s`` (action started), ``end_s`` (action returned), ``action``, ``ok``, ``error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

REQUEST_COLUMNS = (
    "worker",
    "seq",
    "query",
    "start_s",
    "wait_ms",
    "sql_ms",
    "hold_ms",
    "total_ms",
    "ok",
    "stage",
    "error",
)

STATS_KEYS = (
    "pool_min",
    "pool_max",
    "pool_size",
    "pool_available",
    "requests_waiting",
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
)

EVENT_COLUMNS = ("t_s", "end_s", "action", "ok", "error")


@dataclass(frozen=True, slots=True)
class Request:
    """One request's timings (seconds, from the runner's clock)."""

    worker: int
    seq: int
    query: str
    start: float
    wait: float
    sql: float | None
    hold: float | None
    error: str = ""
    stage: str = ""

    @classmethod
    def acquire_failed(
        cls, *, worker: int, seq: int, query: str, start: float, end: float, error: str
    ) -> Request:
        """A request that got no connection: ``error`` raised by getconn/connect at ``end``."""
        return cls(worker, seq, query, start, end - start, None, None, error, "acquire")

    @classmethod
    def completed(
        cls,
        *,
        worker: int,
        seq: int,
        query: str,
        start: float,
        got: float,
        done: float,
        sql: float | None,
        error: str,
    ) -> Request:
        """A request that held a connection from ``got`` to ``done`` (``error``: the query's)."""
        stage = "query" if error else ""
        return cls(worker, seq, query, start, got - start, sql, done - got, error, stage)

    def row(self, t0: float) -> dict[str, Any]:
        nan = math.nan
        hold_ms = nan if self.hold is None else self.hold * 1000.0
        return {
            "worker": self.worker,
            "seq": self.seq,
            "query": self.query,
            "start_s": self.start - t0,
            "wait_ms": self.wait * 1000.0,
            "sql_ms": nan if self.sql is None else self.sql * 1000.0,
            "hold_ms": hold_ms,
            "total_ms": self.wait * 1000.0 + (0.0 if self.hold is None else hold_ms),
            "ok": not self.error,
            "stage": self.stage,
            "error": self.error,
        }


def requests_frame(records: list[Request], t0: float) -> pd.DataFrame:
    """Tidy frame of requests sorted by start time."""
    df = pd.DataFrame([r.row(t0) for r in records], columns=list(REQUEST_COLUMNS))
    df["ok"] = df["ok"].astype(bool)
    return df.sort_values(["start_s", "worker"], kind="stable").reset_index(drop=True)


def stats_frame(samples: list[tuple[float, dict[str, int]]], t0: float) -> pd.DataFrame:
    """Tidy frame of pool stats samples (missing counters are 0)."""
    rows = []
    for t, stats in samples:
        row: dict[str, Any] = {"t_s": t - t0}
        for key in STATS_KEYS:
            row[key] = int(stats.get(key, 0))
        row["in_use"] = row["pool_size"] - row["pool_available"]
        rows.append(row)
    return pd.DataFrame(rows, columns=["t_s", *STATS_KEYS, "in_use"])


def events_frame(events: list[tuple[float, float, str, str]], t0: float) -> pd.DataFrame:
    """Tidy frame of injected actions (``error`` empty when the action worked)."""
    rows = [
        {"t_s": t - t0, "end_s": end - t0, "action": action, "ok": not error, "error": error}
        for t, end, action, error in events
    ]
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
