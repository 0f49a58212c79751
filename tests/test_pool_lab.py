"""Lab plumbing without a server: parameters -> config, tag filling, tables, conclusion text."""

from __future__ import annotations

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.pool import lab
from perfkit.pool.sweeps import cores, rule_of_thumb


def _params(**overrides: object) -> lab.Params:
    return lab.Params.from_mapping({"backend": "local", "out_dir": "data", **overrides})


def test_none_parameters_take_mode_defaults_and_quick_is_smaller() -> None:
    full = lab.LabConfig.from_params(_params())
    quick = lab.LabConfig.from_params(_params(quick=True))
    assert rule_of_thumb(cores()) in full.pool_sizes
    assert max(full.pool_sizes) == 4 * cores()
    assert quick.duration_s < full.duration_s
    assert len(quick.pool_sizes) <= len(full.pool_sizes)
    assert len(quick.worker_counts) < len(full.worker_counts)


def test_explicit_parameters_win_over_defaults() -> None:
    cfg = lab.LabConfig.from_params(_params(quick=True, pool_sizes=[3, 6], duration_s=0.2))
    assert cfg.pool_sizes == (3, 6) and cfg.duration_s == 0.2


def test_zero_workers_fail_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"Workload\.workers"):
        lab.LabConfig.from_params(_params(worker_counts=[4, 0]))


def test_negative_duration_fails() -> None:
    with pytest.raises(ConfigError, match="duration"):
        lab.LabConfig.from_params(_params(duration_s=-1.0))


def test_malformed_churn_pair_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="churn_pairs_s"):
        lab.LabConfig.from_params(_params(churn_pairs_s=[[1.0]]))
    with pytest.raises(ConfigError, match="churn_pairs_s"):
        lab.LabConfig.from_params(_params(churn_pairs_s=[[1.0, -2.0]]))


def test_spike_min_size_above_the_largest_pool_fails() -> None:
    with pytest.raises(ConfigError, match="spike_min_sizes"):
        lab.LabConfig.from_params(_params(pool_sizes=[1, 2], spike_min_sizes=[4]))


def test_non_int_sizes_fail() -> None:
    with pytest.raises(ConfigError, match="pool_sizes"):
        lab.LabConfig.from_params(_params(pool_sizes=[1.5]))


def test_fill_tags_gives_every_row_a_value() -> None:
    df = pd.DataFrame({"rule": [True, None], "fault": [None, "restart"]})
    out = lab.fill_tags(df)
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
    t = lab.table(runs, "presets")
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
    text = lab.conclusion_text(c)
    assert "5,000 req/s with a pool of 8" in text
    assert "25x below the best pool" in text
    assert "connections left on the server after the runs: 0" in text


def test_server_settings_keep_fast_defaults_and_allow_many_connections() -> None:
    s = lab.server_settings("local")
    assert s.server_settings["max_connections"] == "200"
    assert s.server_settings["fsync"] == "off"
    with pytest.raises(ConfigError, match="backend"):
        lab.server_settings("cloud")
