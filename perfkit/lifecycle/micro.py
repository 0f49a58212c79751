"""Micro-benchmarks: what one test pays for isolation, next to the raw SQL it is built on.

* template clone (acquire + release) vs a raw ``CREATE DATABASE ... TEMPLATE``;
* rollback (acquire + one insert + release) vs a raw insert + ``ROLLBACK``, and
  apart from it what the rollback guard's checks (``rollback_guard``) cost;
* warm-pool hand-out latency while tests of ``think_s`` each run.

Raw and strategy iterations are interleaved so both see the same noise.
Every function returns tidy rows: ``case``, ``i``, ``seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from perfkit.lifecycle import leakcheck
from perfkit.lifecycle.dbconnect import connect
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.strategies import WarmPool

Clock = Callable[[], float]
INSERT = f"INSERT INTO {leakcheck.PROBE_TABLE} (note) VALUES ('micro')".encode()

#: case -> (baseline case, goal as max ratio) for ratio goals.
RATIO_GOALS = {
    "template_cycle": ("raw_create", 2.0),
    "rollback_cycle": ("raw_insert_rollback", 2.0),
}
HANDOUT_GOAL_S = 0.005


def open_micro_session(settings: IsolationSettings) -> IsolationSession:
    """A session whose template also holds the probe table the benchmarks insert into."""
    return IsolationSession(settings, extra_sql=leakcheck.PROBE_SQL)


def template_clone(
    session: IsolationSession, iterations: int, *, clock: Clock = time.perf_counter
) -> list[dict[str, Any]]:
    """Raw CREATE DATABASE ... TEMPLATE (and DROP) vs the template strategy's cycle."""
    session.strategy("template")
    rows: list[dict[str, Any]] = []
    for i in range(iterations):
        name = session.namer.name("raw")
        t0 = clock()
        session.create_database(name)
        t1 = clock()
        session.drop_database(name)
        t2 = clock()
        lease = session.acquire("template", f"micro::{i}")
        session.release(lease)
        rows += [
            {"case": "raw_create", "i": i, "seconds": t1 - t0},
            {"case": "raw_drop", "i": i, "seconds": t2 - t1},
            {"case": "template_acquire", "i": i, "seconds": lease.acquire_s},
            {"case": "template_release", "i": i, "seconds": lease.release_s},
            {"case": "template_cycle", "i": i, "seconds": lease.acquire_s + lease.release_s},
        ]
    return rows


def rollback(
    session: IsolationSession, iterations: int, *, clock: Clock = time.perf_counter
) -> list[dict[str, Any]]:
    """Raw insert + ROLLBACK on a plain connection vs acquire + insert + release.

    The raw baseline runs in a database of its own (a clone of the template): an
    open connection to the rollback strategy's database is exactly what its
    guard reports as escaping the test's transaction.
    """
    session.strategy("rollback")
    raw_db = session.namer.name("raw")
    session.create_database(raw_db)
    try:
        return _rollback_rows(session, session.dsn_for(raw_db), iterations, clock)
    finally:
        session.drop_database(raw_db)


def _rollback_rows(
    session: IsolationSession, raw_dsn: str, iterations: int, clock: Clock
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with connect(raw_dsn) as raw:
        for i in range(iterations):
            t0 = clock()
            raw.execute(INSERT)
            raw.rollback()
            t1 = clock()
            lease = session.acquire("rollback", f"micro::{i}")
            assert lease.connection is not None
            t_insert = clock()
            lease.connection.execute(INSERT)
            insert_s = clock() - t_insert
            session.release(lease)
            t2 = clock()
            overhead = lease.acquire_s + lease.release_s
            rows += [
                {"case": "raw_insert_rollback", "i": i, "seconds": t1 - t0},
                {"case": "rollback_cycle", "i": i, "seconds": overhead + insert_s},
                {"case": "rollback_overhead", "i": i, "seconds": overhead},
                # the rollback guard's queries (before and after the test), outside the cycle
                {"case": "rollback_guard", "i": i, "seconds": t2 - t1 - overhead - insert_s},
            ]
    return rows


def warm_pool(
    session: IsolationSession,
    iterations: int,
    *,
    think_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Hand-out latency of the warm pool while each 'test' takes ``think_s``."""
    pool = session.strategy("warm-pool")
    assert isinstance(pool, WarmPool)
    pool.wait_full()  # measure the steady state, not the first fill
    first_record = len(session.records)
    rows: list[dict[str, Any]] = []
    for i in range(iterations):
        lease = session.acquire("warm-pool", f"micro::{i}")
        assert lease.connection is not None
        lease.connection.execute(INSERT)
        lease.connection.commit()
        sleep(think_s)
        session.release(lease)
        rows += [
            {"case": "pool_handout", "i": i, "seconds": lease.acquire_s},
            {"case": "pool_release", "i": i, "seconds": lease.release_s},
        ]
    clones = [r for r in session.records[first_record:] if r["event"] == "pool_clone"]
    rows += [{"case": "pool_clone", "i": i, "seconds": r["seconds"]} for i, r in enumerate(clones)]
    return rows


def run_all(settings: IsolationSettings, iterations: int, *, think_s: float = 0.05) -> pd.DataFrame:
    """All three benchmarks on one shared server; tidy frame ``case, i, seconds``."""
    with open_micro_session(settings) as session:
        rows = template_clone(session, iterations)
        rows += rollback(session, iterations)
        rows += warm_pool(session, iterations, think_s=think_s)
        server = session.shared_server.describe()
    frame = pd.DataFrame(rows)
    frame.attrs["server"] = server
    return frame


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Median/p90 per case, ratio to its raw baseline, and whether the goal was met."""
    stats = frame.groupby("case")["seconds"].agg(
        median_s="median", p90_s=lambda s: s.quantile(0.9), n="count"
    )
    rows = []
    for case, row in stats.iterrows():
        out: dict[str, Any] = {"case": case, **row.to_dict()}
        if case in RATIO_GOALS:
            base, limit = RATIO_GOALS[str(case)]
            ratio = row["median_s"] / stats.loc[base, "median_s"] if base in stats.index else None
            out.update(baseline=base, ratio=ratio, goal=f"<= {limit:g}x {base}")
            out["met"] = ratio is not None and ratio <= limit
        elif case == "pool_handout":
            out.update(goal=f"median < {HANDOUT_GOAL_S * 1e3:g} ms")
            out["met"] = row["median_s"] < HANDOUT_GOAL_S
        rows.append(out)
    return pd.DataFrame(rows)
