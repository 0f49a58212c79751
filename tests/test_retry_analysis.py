"""Specs of the analytic worst case and of the review's claim check."""

from __future__ import annotations

import pytest

from perfkit.errors import ConfigError
from perfkit.retry import get_strategy
from perfkit.retry.analysis import review_claim, worst_case, worst_case_table


def test_review_config_sleeps_21_3_s_without_jitter_and_26_6_s_at_most() -> None:
    row = worst_case("review", scenario="refused", samples=200)
    assert row["sleep_min_exact"] == pytest.approx(21.3)
    assert row["sleep_max_exact"] == pytest.approx(26.625)
    assert 21.3 <= row["sleep_median"] <= 26.625


def test_hang_adds_one_connect_timeout_per_attempt() -> None:
    row = worst_case("naive", scenario="hang", connect_timeout=2.0, samples=10)
    assert row["total_max_exact"] == pytest.approx(15.0 + 31 * 2.0)
    assert row["total_median"] == pytest.approx(77.0)


def test_review_claim_table_shows_the_claim_is_off_by_more_than_forty_times() -> None:
    table = review_claim(connect_timeout=2.0, samples=100)
    refused = table[(table.strategy == "review") & (table.scenario == "refused")].iloc[0]
    assert refused["claimed_worst_s"] == 0.5
    assert refused["sleep_without_jitter_s"] == pytest.approx(21.3)
    assert refused["claim_ratio"] > 40


@pytest.mark.parametrize(
    "name", ["full_jitter", "equal_jitter", "decorrelated_jitter", "review", "polly_v2"]
)
def test_sampled_spread_lies_inside_the_exact_bounds(name: str) -> None:
    row = worst_case(name, scenario="hang", connect_timeout=1.0, samples=300, seed=3)
    assert row["total_min_exact"] - 1e-9 <= row["total_min"]
    assert row["total_max"] <= row["total_max_exact"] + 1e-9


def test_deadline_caps_every_total() -> None:
    row = worst_case("naive", scenario="hang", connect_timeout=2.0, deadline=10.0, samples=20)
    assert row["total_max"] == pytest.approx(10.0)
    assert row["total_max_exact"] == pytest.approx(10.0)


def test_same_seed_same_worst_case() -> None:
    a = worst_case("full_jitter", samples=100, seed=9)
    b = worst_case("full_jitter", samples=100, seed=9)
    assert a == b


def test_unbounded_strategy_without_deadline_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="deadline"):
        worst_case(get_strategy("grpc"), samples=1)


def test_hang_without_connect_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="connect_timeout"):
        worst_case("naive", scenario="hang", connect_timeout=None, samples=1)


def test_table_bounds_grpc_with_a_default_deadline() -> None:
    table = worst_case_table(["naive", "grpc"], connect_timeout=2.0, samples=20)
    grpc = table[table.strategy == "grpc"]
    assert set(grpc.scenario) == {"refused", "hang"}
    assert (grpc.deadline_s == 120.0).all()
    assert (grpc.total_max <= 120.0 + 1e-9).all()
