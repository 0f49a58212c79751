"""Pure parts of the pool lab: worker plans, summaries, recovery time, sweep case builders."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from perfkit.pool import REVIEW, Query, Workload
from perfkit.pool.records import Request, requests_frame, stats_frame
from perfkit.pool.schedule import WorkerPlan
from perfkit.pool.summary import churn, first_ok_after, recovery_time, service_gap, summarize
from perfkit.pool.sweeps import (
    SweepResult,
    aggregate_size,
    best_size,
    default_sizes,
    recovery_cases,
    rule_of_thumb,
    size_cases,
    spike_cases,
    timeout_cases,
)


def _req(start: float, *, wait: float = 0.001, error: str = "", stage: str = "") -> Request:
    hold = None if stage == "acquire" else 0.002
    sql = None if error else 0.001
    return Request(
        worker=0,
        seq=0,
        query="q",
        start=start,
        wait=wait,
        sql=sql,
        hold=hold,
        error=error,
        stage=stage,
    )


def test_worker_plan_is_deterministic_per_seed_and_worker() -> None:
    wl = Workload(think_time=0.01, seed=7)
    a = [WorkerPlan(workload=wl, worker=1).next() for _ in range(1)]
    p1, p2 = WorkerPlan(workload=wl, worker=1), WorkerPlan(workload=wl, worker=1)
    seq1 = [p1.next() for _ in range(50)]
    assert seq1 == [p2.next() for _ in range(50)]
    assert a[0] == seq1[0]
    other = WorkerPlan(workload=wl, worker=2)
    assert [other.next() for _ in range(50)] != seq1


def test_worker_plan_follows_weights_and_mean_think_time() -> None:
    mix = (Query(name="a", sql="SELECT 1", weight=3), Query(name="b", sql="SELECT 2", weight=1))
    plan = WorkerPlan(workload=Workload(mix=mix, think_time=0.02), worker=0)
    draws = [plan.next() for _ in range(4000)]
    share_a = sum(q.name == "a" for q, _ in draws) / len(draws)
    mean_think = sum(t for _, t in draws) / len(draws)
    assert 0.7 < share_a < 0.8
    assert 0.018 < mean_think < 0.022


def test_no_think_time_means_zero_pauses() -> None:
    plan = WorkerPlan(workload=Workload(), worker=0)
    assert all(plan.next()[1] == 0.0 for _ in range(10))


def test_summary_counts_add_up_and_split_errors_by_kind() -> None:
    reqs = [
        _req(0.0),
        _req(0.1),
        _req(0.2, error="PoolTimeout", stage="acquire", wait=3.0),
        _req(0.3, error="OperationalError", stage="query"),
    ]
    s = summarize(requests_frame(reqs, 0.0), elapsed_s=2.0)
    assert s["requests"] == 4 == s["successes"] + s["errors"]
    assert s["n_PoolTimeout"] == 1 and s["n_other_errors"] == 1
    assert s["n_acquire_errors"] == 1 and s["n_query_errors"] == 1
    assert s["throughput_rps"] == pytest.approx(1.0)
    assert s["wait_max_ms"] == pytest.approx(3000.0)


def test_failed_acquire_has_no_hold_time_but_counts_its_wait() -> None:
    df = requests_frame([_req(0.0, error="PoolTimeout", stage="acquire", wait=0.5)], 0.0)
    assert math.isnan(df.loc[0, "hold_ms"])
    assert df.loc[0, "total_ms"] == pytest.approx(500.0)
    assert not df.loc[0, "ok"]


def test_recovery_time_runs_to_first_success_after_last_failure() -> None:
    reqs = [
        _req(0.1),
        _req(1.0, error="OperationalError", stage="query"),
        _req(1.5, error="PoolTimeout", stage="acquire"),
        _req(2.0),
        _req(2.5),
    ]
    df = requests_frame(reqs, 0.0)
    expected = 2.0 + df.loc[3, "total_ms"] / 1000.0 - 1.0
    assert recovery_time(df, fault_s=1.0) == pytest.approx(expected)


def test_recovery_time_counts_a_request_that_waited_through_the_outage() -> None:
    df = requests_frame([_req(0.5), _req(1.1, wait=0.9), _req(1.2)], 0.0)
    # the request started at 1.1 blocked 0.9 s; the one at 1.2 finished sooner
    assert recovery_time(df, fault_s=1.0) == pytest.approx(1.2 + 0.003 - 1.0)
    slow_only = requests_frame([_req(1.1, wait=0.9)], 0.0)
    assert recovery_time(slow_only, fault_s=1.0) == pytest.approx(1.1 + 0.902 - 1.0)


def test_recovery_time_is_nan_without_success_after_the_fault() -> None:
    df = requests_frame([_req(2.0, error="PoolTimeout", stage="acquire")], 0.0)
    assert math.isnan(recovery_time(df, fault_s=1.0))


def test_service_gap_is_the_longest_stretch_without_a_success() -> None:
    df = requests_frame([_req(0.9, wait=0.0), _req(1.0, wait=0.5), _req(1.6, wait=0.0)], 0.0)
    # completions at 0.902, 1.502, 1.602
    assert service_gap(df, fault_s=1.0) == pytest.approx(0.6)
    none_after = requests_frame([_req(0.2)], 0.0)
    assert math.isnan(service_gap(none_after, fault_s=1.0))


def test_first_ok_after_counts_only_requests_started_after_the_time() -> None:
    df = requests_frame([_req(0.5, wait=2.0), _req(1.2), _req(1.3, error="X", stage="query")], 0.0)
    assert first_ok_after(df, 1.0) == pytest.approx(0.2 + 0.003)
    assert math.isnan(first_ok_after(df, 2.0))


def test_churn_counts_connections_opened_between_first_and_last_sample() -> None:
    samples = [
        (0.0, {"connections_num": 2, "pool_size": 2}),
        (30.0, {"connections_num": 12, "pool_size": 4, "connections_lost": 1}),
    ]
    c = churn(stats_frame(samples, 0.0), elapsed_s=30.0)
    assert c["connections_opened"] == 10
    assert c["reconnects_per_min"] == pytest.approx(20.0)
    assert c["max_pool_size"] == 4


def test_rule_of_thumb_and_size_grid() -> None:
    assert rule_of_thumb(2) == 5
    assert default_sizes(2) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert 9 in default_sizes(4, factor=1)


def test_size_cases_cover_each_worker_count_with_fixed_pools_and_a_baseline() -> None:
    cases = size_cases([1, 3], [2, 8], Workload())
    assert len(cases) == 6
    pooled = [c for c in cases if c.settings.pooled]
    assert all(c.settings.min_size == c.settings.max_size for c in pooled)
    assert {c.workload.workers for c in cases} == {2, 8}


def test_spike_cases_start_workers_after_an_idle_period() -> None:
    cases = spike_cases([0, 2], 8, Workload(), idle_before=0.7)
    assert [c.settings.min_size for c in cases] == [0, 2]
    assert all(c.workload.start_delay == 0.7 and c.settings.max_size == 8 for c in cases)


def test_timeout_cases_cross_timeouts_with_max_waiting() -> None:
    cases = timeout_cases([0.1, 1.0], [0, 4], Workload(workers=16))
    assert {(c.settings.timeout, c.settings.max_waiting) for c in cases} == {
        (0.1, 0),
        (0.1, 4),
        (1.0, 0),
        (1.0, 4),
    }


def test_recovery_cases_pair_check_on_and_off_and_skip_restart_without_server() -> None:
    cases = recovery_cases("dsn", Workload(), base=REVIEW, fault_at=0.5)
    assert [(c.tags["fault"], c.settings.check) for c in cases] == [
        ("terminate", False),
        ("terminate", True),
    ]
    with pytest.raises(ValueError, match="unknown fault"):
        recovery_cases("dsn", Workload(), base=REVIEW, fault_at=0.5, faults=("flood",))


def test_best_size_picks_highest_pooled_throughput() -> None:
    runs = pd.DataFrame(
        {
            "experiment": ["size"] * 4,
            "pool": ["size=2", "size=5", "size=5", "no-pool"],
            "rule": [False, True, True, False],
            "pooled": [True, True, True, False],
            "workers": [4, 4, 8, 4],
            "max_size": [2, 5, 5, 1],
            "throughput_rps": [100.0, 300.0, 500.0, 900.0],
        }
    )
    assert best_size(runs, workers=4) == (5, 300.0)
    assert best_size(runs) == (5, 500.0)


def test_size_repeats_are_reduced_to_medians() -> None:
    runs = pd.DataFrame(
        {
            "experiment": ["size"] * 6,
            "case": range(6),
            "repeat": [0, 0, 1, 1, 2, 2],
            "pool": ["size=1", "size=2"] * 3,
            "rule": [False] * 6,
            "pooled": [True] * 6,
            "workers": [4] * 6,
            "max_size": [1, 2] * 3,
            "throughput_rps": [10.0, 20.0, 30.0, 25.0, 11.0, 90.0],
        }
    )
    agg = aggregate_size(runs)
    assert agg["throughput_rps"].tolist() == [11.0, 25.0]
    assert agg["n_repeats"].tolist() == [3, 3]
    assert agg["max_size"].tolist() == [1, 2]
    assert pd.api.types.is_integer_dtype(agg["max_size"])
    assert best_size(runs) == (2, 25.0)


def test_size_cases_repeat_the_whole_grid() -> None:
    cases = size_cases([1, 2], [4], Workload(), repeats=3, no_pool=False)
    assert [c.tags["repeat"] for c in cases] == [0, 0, 1, 1, 2, 2]


def test_concat_renumbers_cases() -> None:
    one = SweepResult(
        runs=pd.DataFrame({"case": [0]}),
        requests=pd.DataFrame({"case": [0]}),
        stats=pd.DataFrame({"case": [0]}),
        events=pd.DataFrame({"case": [0]}),
    )
    both = SweepResult.concat([one, one])
    assert both.runs["case"].tolist() == [0, 1]
    assert both.requests["case"].tolist() == [0, 1]
