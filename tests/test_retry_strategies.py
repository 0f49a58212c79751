"""Specs of every retry strategy's schedule: bounds, caps, determinism, validation."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfkit.errors import ConfigError
from perfkit.retry import (
    STRATEGIES,
    AdditiveJitter,
    CappedExponential,
    DecorrelatedJitter,
    EqualJitter,
    FixedDelay,
    FullJitter,
    GrpcBackoff,
    PollyDecorrelatedJitterV2,
    get_strategy,
)

seeds = st.integers(min_value=0, max_value=2**32)
ALL = sorted(STRATEGIES)


def take(strategy, seed: int, n: int) -> list[float]:
    it = strategy.delays(random.Random(seed))
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("name", ALL)
@given(seed=seeds)
@settings(max_examples=50, deadline=None)
def test_every_delay_lies_within_its_exact_bounds(name: str, seed: int) -> None:
    strategy = STRATEGIES[name]
    for k, d in enumerate(take(strategy, seed, 30), start=1):
        lo, hi = strategy.delay_bounds(k)
        assert lo - 1e-12 <= d <= hi + 1e-12, (k, d, lo, hi)


@pytest.mark.parametrize("name", ALL)
@given(seed=seeds)
@settings(max_examples=30, deadline=None)
def test_same_seed_gives_the_same_schedule(name: str, seed: int) -> None:
    strategy = STRATEGIES[name]
    assert take(strategy, seed, 20) == take(strategy, seed, 20)


@pytest.mark.parametrize(
    "name", ["full_jitter", "equal_jitter", "decorrelated_jitter", "review", "polly_v2", "grpc"]
)
def test_jittered_strategies_differ_between_seeds(name: str) -> None:
    strategy = STRATEGIES[name]
    assert take(strategy, 1, 10) != take(strategy, 2, 10)


@pytest.mark.parametrize("name", ALL)
@given(seed=seeds)
@settings(max_examples=30, deadline=None)
def test_vectorised_sample_respects_the_same_bounds(name: str, seed: int) -> None:
    strategy = STRATEGIES[name]
    sample = strategy.sample(np.random.default_rng(seed), 50, 15)
    assert sample.shape == (50, 15)
    for k in range(1, 16):
        lo, hi = strategy.delay_bounds(k)
        assert (sample[:, k - 1] >= lo - 1e-12).all() and (sample[:, k - 1] <= hi + 1e-12).all()


@pytest.mark.parametrize(
    "name", ["full_jitter", "equal_jitter", "review", "polly_v2", "grpc", "decorrelated_jitter"]
)
def test_vectorised_sample_matches_the_scalar_schedule_in_distribution(name: str) -> None:
    strategy = STRATEGIES[name]
    vec = strategy.sample(np.random.default_rng(7), 4000, 6).sum(axis=1)
    scalar = np.array([sum(take(strategy, s, 6)) for s in range(4000)])
    assert abs(np.median(vec) - np.median(scalar)) < 0.05 * np.median(scalar) + 1e-3


@given(
    base=st.floats(0.001, 2.0),
    factor=st.floats(1.0, 4.0),
    cap_over_base=st.floats(1.0, 100.0),
    seed=seeds,
)
@settings(max_examples=100, deadline=None)
def test_exponential_family_never_exceeds_its_cap(
    base: float, factor: float, cap_over_base: float, seed: int
) -> None:
    cap = base * cap_over_base
    for cls in (CappedExponential, FullJitter, EqualJitter, DecorrelatedJitter):
        strategy = cls(base=base, multiplier=factor, cap=cap)
        assert max(take(strategy, seed, 60)) <= cap * (1 + 1e-12)


@given(seed=seeds)
@settings(max_examples=50, deadline=None)
def test_review_jitter_is_added_after_the_cap(seed: int) -> None:
    delays = take(AdditiveJitter(), seed, 12)
    assert all(5.0 <= d <= 6.25 for d in delays[6:])


def test_review_schedule_without_jitter_sums_to_21_3_seconds() -> None:
    strategy = get_strategy("review")
    lows = [strategy.delay_bounds(k)[0] for k in range(1, strategy.max_attempts)]
    assert lows == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert math.fsum(lows) == pytest.approx(21.3)


def test_naive_is_one_try_plus_thirty_retries_of_half_a_second() -> None:
    strategy = get_strategy("naive")
    assert strategy.max_attempts == 31
    assert strategy.schedule(random.Random(0)) == [0.5] * 30


def test_capped_exponential_doubles_until_the_cap() -> None:
    assert take(CappedExponential(base=0.1, cap=1.0), 0, 6) == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )


def test_capped_exponential_handles_huge_attempt_numbers_without_overflow() -> None:
    assert CappedExponential(base=0.1, cap=5.0).envelope(100_000) == 5.0


def test_decorrelated_jitter_starts_between_base_and_three_bases() -> None:
    for seed in range(200):
        first = take(DecorrelatedJitter(base=0.1, cap=5.0), seed, 1)[0]
        assert 0.1 <= first <= 0.3


def test_polly_v2_total_sleep_telescopes_to_its_exact_bounds() -> None:
    strategy = PollyDecorrelatedJitterV2(mean_first_delay=1.0)
    lo, hi = strategy.total_sleep_bounds(5)
    for seed in range(300):
        assert lo - 1e-9 <= sum(take(strategy, seed, 5)) <= hi + 1e-9


def test_polly_v2_fast_first_retries_immediately() -> None:
    strategy = PollyDecorrelatedJitterV2(mean_first_delay=1.0, fast_first=True)
    assert take(strategy, 3, 1) == [0.0]


def test_polly_v2_mean_delays_roughly_double() -> None:
    sample = PollyDecorrelatedJitterV2(mean_first_delay=1.0).sample(
        np.random.default_rng(0), 20000, 5
    )
    means = sample.mean(axis=0)
    assert 1.5 < means[2] / means[1] < 2.5 and 1.5 < means[3] / means[2] < 2.5


def test_grpc_first_backoff_is_exact_and_later_ones_jitter_by_twenty_percent() -> None:
    delays = take(GrpcBackoff(), 5, 4)
    assert delays[0] == 1.0
    assert 1.6 * 0.8 <= delays[1] <= 1.6 * 1.2


def test_grpc_gives_each_attempt_at_least_min_connect_timeout() -> None:
    strategy = GrpcBackoff()
    assert strategy.attempt_timeout(1, 1.0, None) == 20.0
    assert strategy.attempt_timeout(12, 100.0, 2.0) == 100.0


def test_grpc_backoff_is_capped_at_max_backoff_plus_jitter() -> None:
    delays = take(GrpcBackoff(), 11, 40)
    assert max(delays) <= 120.0 * 1.2


def test_get_strategy_applies_overrides() -> None:
    strategy = get_strategy("full_jitter", base=0.05, max_attempts=4)
    assert isinstance(strategy, FullJitter)
    assert (strategy.base, strategy.max_attempts) == (0.05, 4)


def test_unknown_strategy_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown retry strategy 'fibonacci'.*naive.*grpc"):
        get_strategy("fibonacci")


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no such setting"):
        get_strategy("naive", jitter=0.1)


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: FixedDelay(delay=-1), "delay"),
        (lambda: CappedExponential(base=0), "base"),
        (lambda: FullJitter(base=1.0, cap=0.5), "cap"),
        (lambda: EqualJitter(multiplier=0.5), "multiplier"),
        (lambda: AdditiveJitter(jitter_divisor=0), "jitter_divisor"),
        (lambda: PollyDecorrelatedJitterV2(mean_first_delay=-0.1), "mean_first_delay"),
        (lambda: GrpcBackoff(jitter=1.5), "jitter"),
        (lambda: GrpcBackoff(min_connect_timeout=0), "min_connect_timeout"),
        (lambda: FixedDelay(max_attempts=0), "max_attempts"),
        (lambda: FixedDelay(max_attempts=2.5), "max_attempts"),
        (lambda: FixedDelay(delay=float("nan")), "delay"),
    ],
)
def test_bad_settings_raise_config_error_naming_the_field(factory, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        factory()


def test_strategies_are_frozen_and_keyword_only() -> None:
    strategy = FixedDelay()
    with pytest.raises(AttributeError):
        strategy.delay = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        FixedDelay(0.5)  # type: ignore[misc]


def test_schedule_of_an_unbounded_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        GrpcBackoff().schedule(random.Random(0))


def test_describe_names_the_kind_and_settings() -> None:
    assert get_strategy("review").describe() == {
        "kind": "additive_jitter",
        "max_attempts": 10,
        "base": 0.1,
        "multiplier": 2.0,
        "cap": 5.0,
        "jitter_divisor": 4.0,
    }
