"""Lab plumbing without a server: parameters, tags, tables, intervals, conclusion text."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.pool import analysis, conclusions, lab, measure
from perfkit.pool.reference import ratio_estimate
from perfkit.pool.summary import throughput_bins
from perfkit.pool.sweeps import cores, long_outage_frame, rule_of_thumb
from perfkit.stats import Estimate


def _params(**overrides: object) -> lab.Params:
    return lab.Params.from_mapping({"backend": "local", "out_dir": "data", **overrides})


def test_none_parameters_take_mode_defaults_and_quick_is_smaller() -> None:
    full = _params()
    quick = _params(quick=True)
    assert rule_of_thumb(cores()) in full.pool_sizes
    assert max(full.pool_sizes) == 4 * cores()
    assert quick.duration_s < full.duration_s
    assert len(quick.pool_sizes) <= len(full.pool_sizes)
    assert len(quick.worker_counts) < len(full.worker_counts)


def test_explicit_parameters_win_over_defaults() -> None:
    cfg = _params(quick=True, pool_sizes=[3, 6], duration_s=0.2)
    assert cfg.pool_sizes == (3, 6) and cfg.duration_s == 0.2


def test_zero_workers_fail_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"Workload\.workers"):
        _params(worker_counts=[4, 0])


def test_negative_duration_fails() -> None:
    with pytest.raises(ConfigError, match="duration"):
        _params(duration_s=-1.0)


def test_malformed_churn_pair_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="churn_pairs_s"):
        _params(churn_pairs_s=[[1.0]])
    with pytest.raises(ConfigError, match="churn_pairs_s"):
        _params(churn_pairs_s=[[1.0, -2.0]])


def test_spike_min_size_above_the_largest_pool_fails() -> None:
    with pytest.raises(ConfigError, match="spike_min_sizes"):
        _params(pool_sizes=[1, 2], spike_min_sizes=[4])


def test_non_int_sizes_fail() -> None:
    with pytest.raises(ConfigError, match="pool_sizes"):
        _params(pool_sizes=[1.5])


def test_fill_tags_gives_every_row_a_value() -> None:
    df = pd.DataFrame({"rule": [True, None], "fault": [None, "restart"]})
    out = analysis.fill_tags(df)
    assert out["rule"].tolist() == [True, False]
    assert out["fault"].tolist() == ["", "restart"]


def test_table_shows_async_rows_with_presets() -> None:
    runs = pd.DataFrame(
        {
            "experiment": ["presets", "async", "size"],
            "pool": ["a", "b", "c"],
            "throughput_rps": [1.0, 2.0, 3.0],
        }
    )
    t = analysis.table(runs, "presets")
    assert t["pool"].tolist() == ["a", "b"]
    assert list(t.columns) == ["experiment", "pool", "throughput_rps"]


def test_conclusion_text_words_the_numbers() -> None:
    c = {
        "peak_throughput_rps": 5000.0,
        "peak_pool_size": 8,
        "peak_workers": 32,
        "cores": 2,
        "rule_of_thumb_size": 5,
        "rule_size_throughput_rps": 3600.0,
        "no_pool_throughput_rps": 200.0,
        "requests_total": 1000,
        "requests_add_up": True,
        "leaked_total": 0,
    }
    text = conclusions.conclusions(c)
    assert "5,000 req/s with a pool of 8" in text
    assert "25x below the best pool" in text
    assert "connections left on the server after the runs: 0" in text


def test_server_settings_keep_fast_defaults_and_allow_many_connections() -> None:
    s = measure.server_settings("local")
    assert s.server_settings["max_connections"] == "200"
    assert s.server_settings["fsync"] == "off"
    with pytest.raises(ConfigError, match="backend"):
        measure.server_settings("cloud")


def test_missing_pgbench_is_refused_when_the_params_are_built(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="no pgbench in bindir"):
        _params(quick=True, pgbench_bindir=str(tmp_path))


def test_missing_pgbench_is_fine_when_pgbench_is_off(tmp_path: Path) -> None:
    cfg = _params(quick=True, pgbench=False, pgbench_bindir=str(tmp_path))
    assert cfg.pgbench is False


def test_pgbench_runs_whole_seconds_at_least_as_long_as_the_pool_runs() -> None:
    assert _params(quick=True).pgbench_duration_s == 1
    assert _params(duration_s=2.5).pgbench_duration_s == 3


def test_unknown_outage_mode_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="outage_modes"):
        _params(outage_modes=["threads"])


def test_quick_mode_runs_one_long_outage_case_and_two_process_counts() -> None:
    cfg = _params(quick=True)
    assert len(cfg.outage_modes) * len(cfg.outages_s) * len(cfg.reconnect_timeouts_s) == 1
    assert cfg.process_counts == (1, 2)
    assert _params().process_counts == (1, 2, 4)


def test_throughput_bins_average_to_the_runs_throughput() -> None:
    requests = pd.DataFrame(
        {"start_s": [0.0, 0.1, 0.5, 0.9, 0.95], "total_ms": [10.0] * 5, "ok": [True] * 4 + [False]}
    )
    bins = throughput_bins(requests, elapsed_s=1.0, bin_s=0.25)
    assert len(bins) == 4
    assert bins.mean() == pytest.approx(4 / 1.0)


def test_ratio_of_estimates_has_an_interval_around_it() -> None:
    r = ratio_estimate(Estimate(90.0, 80.0, 100.0, 10), Estimate(100.0, 95.0, 105.0, 5))
    assert r.value == pytest.approx(0.9)
    assert r.low < 0.9 < r.high
    assert r.n == 5
    assert math.isnan(ratio_estimate(Estimate(1.0, 1.0, 1.0, 3), Estimate(0.0, 0, 0, 3)).value)


def test_long_outage_frame_calls_a_success_after_the_watch_window_not_recovered() -> None:
    runs = pd.DataFrame(
        {
            "experiment": ["long_outage", "long_outage", "size"],
            "first_ok_after_up_s": [0.4, math.nan, 0.0],
            "watch_s": [2.0, 2.0, math.nan],
        }
    )
    assert long_outage_frame(runs)["recovered"].tolist() == [True, False]


def _samples(metric: str, variant: str, unit: str, values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"metric": metric, "variant": variant, "unit": unit, "value": values})


def test_headlines_take_n_and_interval_from_the_samples() -> None:
    c = {"review_throughput_rps": 100.0, "review_wait_p99_ms": 5.0, "review_max_size": 5}
    samples = pd.concat(
        [
            _samples("pool_throughput", "naive", "rps", [90.0, 100.0, 110.0, 100.0]),
            _samples("pool_wait_p99", "naive", "ms", [float(x) for x in range(1, 201)]),
        ]
    )
    frame = analysis.headlines(c, samples).set_index("metric")
    assert frame.loc["pool_throughput", "n"] == 4
    assert (
        frame.loc["pool_throughput", "ci_low"] <= 100.0 <= frame.loc["pool_throughput", "ci_high"]
    )
    assert frame.loc["pool_wait_p99", "n"] == 200
    assert frame.loc["pool_wait_p99", "ci_low"] < frame.loc["pool_wait_p99", "ci_high"]


def test_conclusion_text_states_client_cpu_at_the_knee_and_whether_it_was_bound() -> None:
    c = {
        "peak_throughput_rps": 5000.0,
        "peak_pool_size": 8,
        "peak_workers": 32,
        "cores": 2,
        "rule_of_thumb_size": 5,
        "knee_client_cpu_pct": 97.0,
        "knee_client_cpu_low": 95.0,
        "knee_client_cpu_high": 99.0,
        "knee_client_cpu_n": 2,
        "knee_server_cpu_pct": 60.0,
        "knee_client_bound": True,
        "requests_total": 10,
        "requests_add_up": True,
        "leaked_total": 0,
    }
    text = conclusions.conclusions(c)
    assert "the client used 97 [95, 99] (n=2) % of one core" in text
    assert "client-bound: the Python client" in text


def test_conclusion_text_says_where_pool_and_pgbench_agree() -> None:
    compare = pd.DataFrame(
        [
            {
                "connections": 4,
                "pool_size": 4,
                "pool_rps": 950.0,
                "pool_low": 900.0,
                "pool_high": 1000.0,
                "pool_n": 10,
                "pgbench_rps": 1000.0,
                "pgbench_low": 950.0,
                "pgbench_high": 1050.0,
                "pgbench_n": 10,
                "ratio": 0.95,
                "ratio_low": 0.88,
                "ratio_high": 1.03,
                "gap_pct": 5.0,
                "agree": True,
            }
        ]
    )
    c = {"peak_throughput_rps": 1.0, "peak_pool_size": 1, "peak_workers": 1, "cores": 2}
    c |= {"rule_of_thumb_size": 5, "requests_total": 1, "requests_add_up": True}
    text = conclusions.conclusions(c | {"leaked_total": 0}, {"pgbench_compare": compare})
    assert "ratio 0.95 [0.88, 1.03] (n=10): they agree within 5 %" in text
    assert "agree within 5 % at every count" in text
