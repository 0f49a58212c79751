"""Pools after a server outage of seconds (psycopg #1315, #370), on a server of the test's own."""

from __future__ import annotations

import logging
import math

import pytest

from perfkit.pool.runner import run_workload
from perfkit.pool.settings import REVIEW, Workload
from perfkit.pool.sweeps import long_outage_cases, long_outage_frame, run_cases
from perfkit.postgres import PostgresServer


@pytest.fixture(autouse=True)
def _quiet_pool_log() -> None:
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def test_a_recovering_setting_gets_a_finite_time_to_the_first_success(
    fresh_pg_server: PostgresServer,
) -> None:
    cases = long_outage_cases(
        fresh_pg_server,
        Workload(workers=2, think_time=0.01, seed=4),
        base=REVIEW,
        reconnect_timeouts=[30.0],
        outages=[3.0],
        fault_at=0.3,
        watch_s=3.0,
    )
    runs = run_cases(fresh_pg_server.dsn, cases, runner=run_workload).runs
    frame = long_outage_frame(runs)
    row = frame.iloc[0]
    assert len(frame) == 1
    assert row["faults_done_s"] >= 0.3 + 3.0  # the server was back only after the outage
    assert math.isfinite(row["first_ok_after_up_s"])
    assert 0 <= row["first_ok_after_up_s"] <= 3.0
    assert bool(row["recovered"]) is True
    assert row["leaked"] == 0
