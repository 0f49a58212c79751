"""Specs of the retry lab's parameter handling (no server needed)."""

from __future__ import annotations

import pytest

from perfkit.errors import ConfigError
from perfkit.retry import conclusions, lab, measure


def config(**changes: object) -> lab.Params:
    return lab.Params.from_mapping(changes)


def test_defaults_compare_every_registered_strategy() -> None:
    cfg = config()
    assert cfg.strategies == tuple(lab.STRATEGIES)
    assert cfg.outage_s == (1.0, 5.0) and cfg.client_counts == (10, 100)


def test_quick_mode_shrinks_every_sweep() -> None:
    cfg = config(quick=True)
    assert cfg.repetitions == 2 and len(cfg.strategies) == 4
    assert cfg.client_counts == (20,) and cfg.outage_s == (1.0,)


def test_unknown_strategy_name_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match=r"'strategies'.*unknown retry strategy 'linear'"):
        config(strategies=["naive", "linear"])


def test_unknown_herd_strategy_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="herd_strategies"):
        config(herd_strategies=["nope"])


def test_negative_outage_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="outage_s"):
        config(outage_s=[1.0, -2.0])


def test_non_integer_client_count_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="client_counts"):
        config(client_counts=[10, 2.5])


def test_ill_typed_parameter_fails_in_validation() -> None:
    with pytest.raises(ConfigError, match="repetitions"):
        config(repetitions="5")


def test_unknown_parameter_fails_in_validation() -> None:
    with pytest.raises(ConfigError, match="outage_seconds"):
        config(outage_seconds=[1.0])


def test_bad_backend_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="backend"):
        config(backend="external")


def test_hang_specs_compare_with_and_without_a_connect_timeout() -> None:
    labels = [s.label for s in measure.hang_specs(config(connect_timeout=3.0))]
    assert "naive / no timeout" in labels and "naive / 3 s" in labels
    assert "grpc / own (>= 20 s)" in labels


def test_budget_herd_runs_by_default_but_not_in_quick_mode() -> None:
    assert config().herd_budget_per_s == 50.0
    assert config(quick=True).herd_token_rate is None
    assert config(herd_budget_per_s=0.0).herd_token_rate is None


def test_a_time_budget_applies_by_default() -> None:
    assert config().time_budget_s == 75.0
    assert config(quick=True).time_budget_s == 20.0


def test_a_zero_time_budget_means_fixed_repetitions() -> None:
    assert config(time_budget_s=0.0).time_budget is None


def test_negative_time_budget_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="time_budget_s"):
        config(time_budget_s=-1.0)


def test_negative_attempt_weight_fails_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match="attempt_weight_s"):
        config(attempt_weight_s=-0.1)


def test_the_fitted_schedule_is_described_in_milliseconds() -> None:
    row = {
        "kind": "delayed_exponential",
        "first_delay": 0.045,
        "base": 0.01,
        "multiplier": 1.0,
        "cap": 0.01,
        "max_attempts": 5000,
    }
    text = conclusions.describe_schedule(row)
    assert "first retry after 45.0 ms" in text and "every 10.0 ms" in text
