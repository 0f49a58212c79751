"""Open-loop load (perfkit.pool.arrivals, latency, openloop, pgbench_rate, openloop_sweep)."""

from __future__ import annotations

import itertools
import math
import statistics
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import psycopg
import pytest

from perfkit.errors import ConfigError
from perfkit.pool import lab, measure
from perfkit.pool.arrivals import arrivals, within
from perfkit.pool.latency import RESOLUTION, LatencyHistogram
from perfkit.pool.openloop import OpenLoad, run_open_loop
from perfkit.pool.openloop_conclusions import CLOSED_HEADING, open_loop_lines
from perfkit.pool.openloop_plots import open_loop_latency
from perfkit.pool.openloop_sweep import find_knee, knee_of, label_closed, open_pool
from perfkit.pool.pgbench_rate import tally_logs
from perfkit.pool.settings import Query
from perfkit.postgres import PostgresServer
from perfkit.stats import rank_quantile_interval

matplotlib.use("Agg")

FAST = (Query(name="select1", sql="SELECT 1"),)


# -- arrival schedules ----------------------------------------------------------------


def test_poisson_arrivals_are_seeded() -> None:
    a = list(itertools.islice(arrivals(500.0, "poisson", seed=3), 100))
    b = list(itertools.islice(arrivals(500.0, "poisson", seed=3), 100))
    c = list(itertools.islice(arrivals(500.0, "poisson", seed=4), 100))
    assert a == b and a != c


def test_poisson_arrivals_have_mean_gap_one_over_the_rate() -> None:
    times = list(within(arrivals(1000.0, "poisson", seed=1), 20.0))
    gaps = np.diff([0.0, *times])
    assert abs(len(times) - 20_000) < 4 * 20_000**0.5  # Poisson count, 4 sd
    assert gaps.mean() == pytest.approx(1e-3, rel=0.03)
    assert gaps.std() == pytest.approx(1e-3, rel=0.05)  # exponential: sd = mean


def test_fixed_arrivals_are_evenly_spaced() -> None:
    times = list(within(arrivals(200.0, "fixed"), 1.0))
    assert len(times) == 200
    assert np.allclose(np.diff(times), 0.005)


def test_unknown_arrivals_fail_naming_the_choices() -> None:
    with pytest.raises(ConfigError, match="poisson"):
        next(arrivals(10.0, "bursty"))


def test_lab_refuses_unknown_arrivals_and_bad_limits_by_name() -> None:
    with pytest.raises(ConfigError, match="arrivals"):
        lab.Params.from_mapping({"backend": "local", "arrivals": "bursty"})
    with pytest.raises(ConfigError, match="latency_limit_ms"):
        lab.Params.from_mapping({"backend": "local", "latency_limit_ms": 0.0})


# -- the histogram ----------------------------------------------------------------------


def test_histogram_memory_does_not_grow_with_the_number_of_requests() -> None:
    h = LatencyHistogram()
    rng = np.random.default_rng(0)
    values = rng.exponential(0.01, size=200_000).tolist()
    h.record(0.001)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for v in values:
        h.record(v)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert h.count == 200_001
    assert after - before < 16_000  # constant: no per-request storage
    assert h.nbytes == LatencyHistogram().nbytes


def test_histogram_quantiles_match_the_exact_ones_within_its_resolution() -> None:
    x = np.random.default_rng(1).lognormal(-5, 1, size=50_000)
    h = LatencyHistogram()
    for v in x:
        h.record(float(v))
    for q in (0.5, 0.99, 0.999):
        exact, est = rank_quantile_interval(x, q), h.quantile(q)
        assert est.n == exact.n
        for a, b in ((est.value, exact.value), (est.low, exact.low), (est.high, exact.high)):
            assert a == pytest.approx(b, rel=2e-3, abs=2e-6)
    assert "3 significant digits" in RESOLUTION


def test_merged_histograms_count_every_thread() -> None:
    parts = [LatencyHistogram() for _ in range(3)]
    for i, h in enumerate(parts):
        for _ in range(10):
            h.record(0.001 * (i + 1))
    merged = LatencyHistogram().merge(parts)
    assert merged.count == 30 and merged.count_above(0.0025) == 10


# -- the runner on a real server ----------------------------------------------------------


@pytest.fixture
def stall_sequence(pg_server: PostgresServer) -> Iterator[str]:
    """A query that takes 300 ms on its 5th call and ~0 on the others."""
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE openloop_stall")
    yield "SELECT pg_sleep(CASE WHEN nextval('openloop_stall') = 5 THEN 0.3 ELSE 0 END)"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("DROP SEQUENCE openloop_stall")


@pytest.mark.local
@pytest.mark.parametrize("threads", [1, 16], ids=["in-dispatch-queue", "in-pool-queue"])
def test_requests_queued_behind_a_slow_one_count_their_wait_from_intended_start(
    pg_server: PostgresServer, stall_sequence: str, threads: int
) -> None:
    load = OpenLoad(
        rate=100.0,
        duration=1.0,
        arrivals="fixed",
        latency_limit_ms=10_000.0,
        threads=threads,
        mix=(Query(name="stall", sql=stall_sequence),),
    )
    result = run_open_loop(pg_server.dsn, open_pool(1), load)
    t = result.tally
    assert result.scheduled == 100 and t.on_time == 100
    # One 300 ms request on a pool of 1 holds back the ~29 arriving during it: those
    # arriving in its first 200 ms wait over 100 ms for the connection.
    assert t.latency.count_above(0.1) >= 15
    assert t.latency.max >= 0.3
    assert result.leaked == 0


@pytest.mark.local
def test_requests_without_a_connection_within_the_pool_timeout_count_as_failed(
    pg_server: PostgresServer,
) -> None:
    load = OpenLoad(
        rate=100.0,
        duration=0.5,
        arrivals="fixed",
        latency_limit_ms=10_000.0,
        threads=16,
        mix=(Query(name="slow", sql="SELECT pg_sleep(0.1)"),),
    )
    settings = open_pool(1).replace(timeout=0.05)
    t = run_open_loop(pg_server.dsn, settings, load).tally
    assert t.failed > 0
    assert t.failed + t.on_time + t.late == 50


@pytest.mark.local
def test_requests_over_the_limit_are_late_and_goodput_counts_only_on_time_ones(
    pg_server: PostgresServer,
) -> None:
    load = OpenLoad(
        rate=50.0,
        duration=0.5,
        arrivals="fixed",
        latency_limit_ms=15.0,
        threads=4,
        mix=(Query(name="slow", sql="SELECT pg_sleep(0.02)"),),
    )
    row = run_open_loop(pg_server.dsn, open_pool(2), load).row()
    assert row["late"] == row["completed"] == 25 and row["on_time"] == 0
    assert row["goodput_rps"] == 0.0 and row["achieved_rps"] > 0
    assert row["loop"] == "open"


# -- pgbench's log ------------------------------------------------------------------------


def test_pgbench_rate_log_counts_skipped_late_and_on_time(tmp_path: Path) -> None:
    log = tmp_path / "tx.1"
    log.write_text(
        "0 0 1500 0 1700000000 100 20\n"
        "0 1 80000 0 1700000000 200 30\n"
        "1 0 skipped 0 1700000000 300 60000\n"
        "1 1 failed 0 1700000000 400 0\n"
    )
    t = tally_logs([log], limit_ms=50.0)
    assert (t.on_time, t.late, t.skipped, t.errors) == (1, 1, 1, 1)
    assert t.latency.max == pytest.approx(0.08, rel=1e-3)


# -- knee, labels, conclusions, figure ---------------------------------------------------


def _row(client: str, conns: int, rate: float, p99: float, completed: int = 100) -> dict:
    return (
        {
            "loop": "open",
            "client": client,
            "connections": conns,
            "offered_rps": rate,
            "repeat": 0,
            "arrivals": "poisson",
            "latency_limit_ms": 50.0,
            "scheduled": 100,
            "completed": completed,
            "on_time": completed,
            "late": 0,
            "skipped": 100 - completed,
            "failed": 0,
            "achieved_rps": rate * completed / 100,
            "goodput_rps": rate * completed / 100,
        }
        | {
            f"latency_{k}_ms{s}": p99 * f * m
            for k, f in (("p50", 0.2), ("p99", 1.0), ("p999", 1.5))
            for s, m in (("", 1.0), ("_low", 0.9), ("_high", 1.1))
        }
        | {f"latency_{k}_ms_n": 100 for k in ("p50", "p99", "p999")}
    )


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        [
            _row("pool", 4, 100.0, 5.0),
            _row("pool", 4, 200.0, 20.0),
            _row("pool", 4, 300.0, 30.0, completed=90),  # not sustained (noise, say)
            _row("pool", 4, 400.0, 40.0),
            _row("pool", 4, 500.0, 60.0),  # p99 over the limit
            _row("pool", 4, 600.0, 70.0),  # and again: the knee lies below
            _row("pool", 4, 700.0, 20.0),  # a lucky run beyond it
            _row("pgbench", 4, 100.0, 4.5),
            _row("pgbench", 4, 200.0, 80.0),
            _row("pgbench", 4, 300.0, 90.0),
            _row("pgbench", 4, 400.0, 99.0),
        ]
    )


def test_knee_of_stops_at_two_consecutive_misses_and_forgives_one() -> None:
    rates = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert knee_of(rates, [True, False, True, False, False, True]) == (3.0, 1)
    assert knee_of(rates, [True, True, True, True, True, False]) == (5.0, 0)
    assert math.isnan(knee_of(rates, [False, False, True, True, True, True])[0])
    assert math.isnan(knee_of(rates, [False] * 6)[0])


def test_knee_is_the_highest_sustained_rate_and_counts_the_misses_below_it() -> None:
    knee = find_knee(_frame()).set_index("client")
    assert knee.loc["pool", "knee_rps"] == 400.0
    assert knee.loc["pool", "failed_below"] == 1
    assert knee.loc["pgbench", "knee_rps"] == 100.0
    assert knee.loc["pgbench", "failed_below"] == 0
    assert (knee["loop"] == "open").all()


def test_closed_loop_frames_are_labelled_closed() -> None:
    frames = label_closed({"runs": pd.DataFrame({"a": [1]}), "open_loop": _frame()})
    assert (frames["runs"]["loop"] == "closed").all()
    assert (frames["open_loop"]["loop"] == "open").all()


def test_conclusions_label_closed_and_open_loop_and_state_the_knee() -> None:
    frame = _frame()
    lines = open_loop_lines({"open_loop": frame, "open_knee": find_knee(frame)})
    assert lines[0].startswith("**Open loop**") and RESOLUTION in lines[0]
    assert "knee of psycopg_pool 400 req/s" in lines[1]
    assert "vs pgbench 4.5" in lines[1] and "(agree)" in lines[1] and "(differ)" in lines[1]
    assert CLOSED_HEADING.startswith("**Closed loop**")


def test_open_loop_figure_draws_both_clients_and_states_the_resolution() -> None:
    frame = _frame()
    fig = open_loop_latency(frame, find_knee(frame))
    texts = " ".join(t.get_text() for t in fig.texts)
    assert RESOLUTION in texts
    assert "open loop" in fig.axes[0].get_title()
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert any("pgbench" in label for label in labels)


# -- the lab's open-loop stage, for real ---------------------------------------------------


@pytest.mark.local
def test_quick_open_loop_stage_of_the_pool_lab_runs_pool_and_pgbench(
    pg_server: PostgresServer,
) -> None:
    params = lab.Params.from_mapping(
        {"backend": "local", "quick": True, "open_pool_sizes": [2], "offered_rates": [50, 150]}
    )
    frames = measure.run_open_loop_stage(pg_server, params, pd.DataFrame())
    ol, knee = frames["open_loop"], frames["open_knee"]
    assert sorted(ol["client"].unique()) == ["pgbench", "pool"]
    assert (ol["loop"] == "open").all() and set(ol["offered_rps"]) == {50.0, 150.0}
    assert (ol["completed"] > 0).all() and (ol["leaked"] == 0).all()
    assert statistics.median(ol["scheduled_rps"]) > 40
    assert set(knee["client"]) == {"pool", "pgbench"}
    assert open_loop_lines(frames)[1].startswith("Open loop, pool size 2")
