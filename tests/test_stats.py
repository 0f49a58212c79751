"""perfkit.stats: bootstrap intervals, rank tests checked against brute force, Holm, Wilson."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from perfkit import stats
from perfkit.errors import ConfigError


def _brute_force_p(sums: np.ndarray, observed: float) -> float:
    below = np.mean(sums <= observed + 1e-9)
    above = np.mean(sums >= observed - 1e-9)
    return min(1.0, 2 * min(below, above))


def test_several_quantiles_share_one_bootstrap_with_single_quantile_results() -> None:
    values = np.random.default_rng(0).lognormal(size=30)
    several = stats.quantile_intervals(values, [0.5, 0.9], seed=3)
    assert several == (
        stats.quantile_interval(values, 0.5, seed=3),
        stats.quantile_interval(values, 0.9, seed=3),
    )


def test_empty_sample_gives_nan_estimates() -> None:
    assert stats.quantile_interval([]).n == 0
    assert np.isnan(stats.statistic_interval([], "mean").value)


def test_mean_interval_contains_the_mean() -> None:
    est = stats.statistic_interval([1.0, 2.0, 3.0, 4.0, 10.0], "mean")
    assert est.value == pytest.approx(4.0) and est.low < 4.0 < est.high


def test_statistic_names_map_to_quantiles() -> None:
    assert stats.quantile_of("median") == 0.5
    assert stats.quantile_of("p90") == pytest.approx(0.9)
    assert stats.quantile_of(0.25) == 0.25
    assert stats.quantile_of("mean") is None
    with pytest.raises(ConfigError, match="statistic"):
        stats.quantile_of("p200")


def test_ratio_interval_brackets_a_planted_ratio() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(0, 0.1, 40), rng.lognormal(np.log(1.3), 0.1, 40)
    est = stats.ratio_interval(a, b)
    assert est.value == pytest.approx(np.median(b) / np.median(a))
    assert 1.2 < est.low < 1.3 < est.high < 1.4


def test_paired_ratio_interval_is_narrower_under_shared_noise() -> None:
    rng = np.random.default_rng(2)
    shared = rng.lognormal(0, 0.5, 20)
    a, b = shared, shared * 1.1
    paired, unpaired = stats.ratio_interval(a, b, paired=True), stats.ratio_interval(a, b)
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 5


def test_ratio_of_a_zero_baseline_is_nan() -> None:
    assert np.isnan(stats.ratio_interval([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]).value)


def test_mann_whitney_matches_brute_force_with_ties() -> None:
    a, b = [1.0, 2.0, 2.0, 5.0], [2.0, 3.0, 5.0, 5.0, 7.0]
    ranks = stats.midranks(a + b)
    sums = np.array([ranks[list(c)].sum() for c in itertools.combinations(range(9), 4)])
    result = stats.mann_whitney(a, b)
    assert result.exact
    assert result.p_value == pytest.approx(_brute_force_p(sums, ranks[:4].sum()))
    assert result.effect == pytest.approx(0.8)  # P(a < b) + ½ P(a = b) over the 20 pairs


def test_mann_whitney_of_disjoint_samples_of_four_is_2_over_70() -> None:
    assert stats.mann_whitney([1, 2, 3, 4], [5, 6, 7, 8]).p_value == pytest.approx(2 / 70)


def test_mann_whitney_normal_approximation_agrees_with_exact_near_the_switch() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 30), rng.normal(0.6, 1, 30)
    exact = stats.mann_whitney(a, b)
    approx = stats.mann_whitney(np.append(a, 0.3), b)  # 61 values: normal approximation
    assert exact.exact and not approx.exact
    assert approx.p_value == pytest.approx(exact.p_value, rel=0.5)


def test_signed_rank_matches_brute_force() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [2.0, 4.0, 3.5, 6.0, 9.0, 5.0]
    d = np.subtract(b, a)
    ranks = stats.midranks(np.abs(d))
    sums = np.array(
        [
            sum(r for r, keep in zip(ranks, signs, strict=True) if keep)
            for signs in itertools.product([False, True], repeat=6)
        ]
    )
    result = stats.signed_rank(a, b)
    assert result.p_value == pytest.approx(_brute_force_p(sums, ranks[d > 0].sum()))


def test_signed_rank_of_identical_pairs_is_p_1() -> None:
    assert stats.signed_rank([1, 2, 3], [1, 2, 3]).p_value == 1.0


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx((0.03, 0.06, 0.06))
    assert stats.holm([0.5, 0.9]) == (1.0, 1.0)


def test_wilson_interval_of_3_in_10() -> None:
    est = stats.wilson_interval(3, 10)
    assert (est.value, round(est.low, 3), round(est.high, 3)) == (0.3, 0.108, 0.603)


def test_wilson_interval_rejects_more_successes_than_trials() -> None:
    with pytest.raises(ConfigError):
        stats.wilson_interval(4, 3)


def test_shift_interval_is_none_when_no_95_percent_interval_exists() -> None:
    assert stats.shift_interval([1.0, 2.0, 3.0], [5.0, 6.0, 7.0]) is None  # 3 and 3: P(U=0) = 1/20


def test_shift_interval_uses_the_extreme_differences_at_four_per_side() -> None:
    est = stats.shift_interval([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])
    assert est is not None and (est.value, est.low, est.high, est.n) == (4.0, 1.0, 7.0, 8)


def test_shift_interval_matches_the_published_critical_value_for_ten_and_ten() -> None:
    """Mann–Whitney two-sided 5 % critical U for m = n = 10 is 23: k = 24."""
    assert stats._moses_k(10, 10, 0.95) == 24


def test_four_runs_per_side_are_the_fewest_that_support_a_95_percent_interval() -> None:
    assert stats.runs_needed(0.95) == 4


def test_shift_interval_covers_the_true_shift_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    trials = 1000
    covered = 0
    for _ in range(trials):
        est = stats.shift_interval(rng.normal(0, 1, 5), rng.normal(0.3, 1, 5))
        assert est is not None
        covered += est.low <= 0.3 <= est.high
    assert covered / trials >= 0.95 - 3 * (0.05 * 0.95 / trials) ** 0.5


def test_paired_shift_interval_needs_six_pairs_at_95_percent() -> None:
    assert stats.pairs_needed(0.95) == 6
    assert stats.paired_shift_interval([1.0] * 5, [2.0] * 5) is None


def test_paired_shift_interval_spans_the_extreme_walsh_averages_at_six_pairs() -> None:
    d = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    est = stats.paired_shift_interval([0.0] * 6, d)
    assert est is not None and (est.low, est.high) == (1.0, 6.0) and est.value == 3.5


def test_paired_shift_interval_refuses_unequal_lengths() -> None:
    with pytest.raises(ConfigError, match="same length"):
        stats.paired_shift_interval([1.0, 2.0], [1.0])


def test_paired_shift_interval_covers_the_true_shift_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    trials, misses = 1000, 0
    for _ in range(trials):
        a = rng.normal(0, 1, 10)
        b = a + 1 + rng.standard_t(3, 10) * 0.3
        est = stats.paired_shift_interval(a, b)
        assert est is not None
        misses += not est.low <= 1 <= est.high
    assert misses / trials <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5


def test_pairing_cancels_a_per_pair_load_shift_that_hides_the_change_unpaired() -> None:
    rng = np.random.default_rng(12)
    load = rng.normal(0, 0.5, 8)  # each pair ran at its own machine load
    a = 10 + load + rng.normal(0, 0.02, 8)
    b = 10.3 + load + rng.normal(0, 0.02, 8)
    paired = stats.paired_shift_interval(a, b)
    unpaired = stats.shift_interval(a, b)
    assert paired is not None and unpaired is not None
    assert paired.low > 0 and unpaired.low < 0


def test_hierarchical_interval_counts_runs_not_samples() -> None:
    values = [1.0] * 100 + [2.0] * 100 + [3.0] * 100
    groups = ["a"] * 100 + ["b"] * 100 + ["c"] * 100
    est = stats.hierarchical_interval(values, groups, seed=1)
    assert est.n == 3 and est.value == 2.0


def test_hierarchical_interval_is_wide_when_runs_disagree_though_each_is_tight() -> None:
    rng = np.random.default_rng(3)
    shifts = [1.0, 1.3, 0.8, 1.1, 0.9]  # each run slowed as a whole by machine load
    values = np.concatenate([s + rng.normal(0, 0.001, 500) for s in shifts])
    groups = np.repeat(np.arange(5), 500)
    runs = stats.hierarchical_interval(values, groups, seed=1)
    pooled = stats.quantile_interval(values, 0.5, seed=1)
    assert runs.high - runs.low > 10 * (pooled.high - pooled.low)
    assert runs.low <= 0.9 and runs.high >= 1.1


def test_hierarchical_interval_gives_none_below_three_runs() -> None:
    est = stats.hierarchical_interval([1.0, 2.0, 3.0, 4.0], ["a", "a", "b", "b"])
    assert est.n == 2 and math.isnan(est.low) and math.isnan(est.high)


def test_per_group_reduces_each_run_to_its_statistic() -> None:
    got = stats.per_group([1.0, 3.0, 10.0, 30.0, 50.0], ["x", "x", "y", "y", "y"], "median")
    assert got.tolist() == [2.0, 30.0]


def test_exact_median_interval_needs_six_values_at_95_percent() -> None:
    assert stats.exact_median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    est = stats.exact_median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert est is not None and (est.low, est.high) == (1.0, 6.0)


def test_exact_median_interval_covers_the_median_at_least_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(13)
    trials, misses = 2000, 0
    for _ in range(trials):
        est = stats.exact_median_interval(rng.exponential(1.0, 9))
        assert est is not None
        misses += not est.low <= math.log(2) <= est.high
    assert misses / trials <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5
