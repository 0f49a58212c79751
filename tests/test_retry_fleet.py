"""The fleet recommendation (perfkit.retry.fleet) and the first-retry delay it may choose."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from perfkit.errors import ConfigError
from perfkit.retry import (
    FirstRetryDelay,
    FleetRecommendation,
    FullJitter,
    RetryBudget,
    RetryTokenBucket,
    recommend_for_fleet,
)
from perfkit.retry.fleet import JITTERS, make_candidate

#: Costs of one connection as measure_setup_costs gives them on a 2-core machine.
COSTS = {
    "cores": 2.0,
    "server_cpu_per_connect_s": 0.003,
    "client_cpu_per_attempt_s": 0.0023,
    "connect_s": 0.0039,
    "refused_s": 0.00013,
}
N = 300


@pytest.fixture(scope="module")
def recommended() -> FleetRecommendation:
    return recommend_for_fleet(N, COSTS, seeds=3)


def test_the_recommendation_is_a_schedule_of_the_family(recommended: FleetRecommendation) -> None:
    assert recommended.jitter in {*JITTERS, "naive", "exponential", "full_jitter",
                                  "equal_jitter", "decorrelated_jitter"}  # fmt: skip
    assert recommended.schedule
    assert recommended.strategy.max_attempts is not None


def test_the_recommendation_is_no_worse_than_any_named_strategy_in_the_model(
    recommended: FleetRecommendation,
) -> None:
    table = recommended.comparison.set_index("strategy")
    mine = table.loc["recommended", "objective"]
    assert (mine <= table.drop(index="recommended")["objective"]).all()


def test_every_client_connects_under_the_recommendation(recommended: FleetRecommendation) -> None:
    assert recommended.comparison.set_index("strategy").loc["recommended", "gave_up"] == 0
    est = recommended.all_connected_s
    assert est.n == 3 and est.low <= est.value <= est.high


def test_the_sentence_names_the_fleet_the_schedule_and_naive(
    recommended: FleetRecommendation,
) -> None:
    text = recommended.sentence()
    assert text.startswith(f"for {N:,} clients against this server use ")
    assert "all connected after" in text and "for naive" in text


def test_a_weight_on_attempts_gives_no_more_attempts_per_client() -> None:
    free = recommend_for_fleet(100, COSTS, seeds=1)
    costly = recommend_for_fleet(100, COSTS, seeds=1, attempt_weight=1.0)
    assert costly.attempts_per_client.value <= free.attempts_per_client.value


def test_the_p90_objective_is_searched_too() -> None:
    rec = recommend_for_fleet(100, COSTS, seeds=1, objective="p90")
    table = rec.comparison.set_index("strategy")
    assert table.loc["recommended", "objective"] == pytest.approx(table.loc["recommended", "p90_s"])


def test_a_budget_candidate_carries_its_retry_budget() -> None:
    made = make_candidate("full+budget", (0.0, 0.05, 2.0, 1.0, 30.0, 400.0), 50)
    assert made is not None
    _, budget = made
    assert budget == RetryBudget(capacity=30.0, refill_per_s=400.0)


def test_a_budget_becomes_a_waiting_token_bucket(recommended: FleetRecommendation) -> None:
    budgeted = dataclasses.replace(
        recommended, budget=RetryBudget(capacity=30.0, refill_per_s=400.0)
    )
    bucket = budgeted.token_bucket()
    assert isinstance(bucket, RetryTokenBucket)
    assert (bucket.capacity, bucket.refill_per_s, bucket.on_empty) == (30.0, 400.0, "wait")
    assert "retry budget of 400 retries/s" in budgeted.describe() or budgeted.jitter not in JITTERS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objective": "fastest"}, "objective must be one of"),
        ({"seeds": 0}, "seeds must be >= 1"),
        ({"attempt_weight": -1.0}, "attempt_weight"),
    ],
)
def test_bad_arguments_fail_before_any_simulation(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        recommend_for_fleet(100, COSTS, **kwargs)


def test_a_scenario_may_not_set_what_the_search_sets() -> None:
    with pytest.raises(ConfigError, match="retry_budget itself"):
        recommend_for_fleet(100, COSTS, retry_budget=None)


def test_the_recommendation_flattens_to_one_row(recommended: FleetRecommendation) -> None:
    row = recommended.to_dict()
    assert row["n_clients"] == N and row["sentence"] == recommended.sentence()
    assert row["all_connected_s"] == recommended.all_connected_s.value
    assert row["strategy_max_attempts"] == recommended.strategy.max_attempts


def test_costs_without_the_models_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="server_cpu_per_connect_s"):
        recommend_for_fleet(100, {"cores": 2.0})


def test_a_first_retry_delay_comes_before_the_wrapped_schedule() -> None:
    inner = FullJitter(base=0.1, multiplier=2.0, cap=1.0)
    strategy = FirstRetryDelay(first_delay=0.7, then=inner, max_attempts=5)
    delays = strategy.delays(random.Random(3))
    again = inner.delays(random.Random(3))
    assert next(delays) == 0.7
    assert [next(delays) for _ in range(3)] == [next(again) for _ in range(3)]
    assert strategy.delay_bounds(1) == (0.7, 0.7)
    assert strategy.delay_bounds(3) == inner.delay_bounds(2)


def test_a_first_retry_delay_samples_its_first_column_fixed() -> None:
    strategy = FirstRetryDelay(first_delay=0.2, then=FullJitter(base=0.1, cap=1.0))
    sample = strategy.sample(np.random.default_rng(0), 50, 4)
    assert sample.shape == (50, 4)
    assert (sample[:, 0] == 0.2).all()
    assert (sample[:, 1:] <= 1.0).all()


def test_a_first_retry_delay_describes_itself_flat() -> None:
    described = FirstRetryDelay(first_delay=0.2, then=FullJitter()).describe()
    assert described["jitter"] == "full_jitter"
    assert {"first_delay", "base", "multiplier", "cap", "max_attempts"} <= set(described)
