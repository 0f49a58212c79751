"""Verdicts: a winner only when the runs separate it, on known distributions over many seeds."""

from __future__ import annotations

import numpy as np
import pytest

from perfkit.errors import ConfigError
from perfkit.verdicts import decide

# Holm over 2 comparisons: raw p = 0.032 each (U = 2 at n = 5 vs 5), adjusted 0.063;
# the sample ranges (the bootstrap intervals of a median at n = 5) overlap.
BEST = [1.0, 2.0, 3.0, 4.0, 7.0]
CLOSE = [5.0, 6.0, 8.0, 9.0, 10.0]


def _lognormal(rng: np.random.Generator, median: float, n: int) -> np.ndarray:
    return rng.lognormal(np.log(median), 0.1, n)


def test_identical_distributions_are_indistinguishable_in_95_percent_of_seeds() -> None:
    # The rank test's exact size at n = 10 vs 10 is 4.3 %, so with 200 seeds the
    # binomial noise (about 1.4 points) is as large as the margin to 5 %: 1000 seeds.
    seeds = 1000
    named = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        verdict = decide({"a": _lognormal(rng, 1.0, 10), "b": _lognormal(rng, 1.0, 10)}, seed=seed)
        named += verdict.status == "separated"
    assert named / seeds <= 0.05


def test_a_20_percent_shift_at_n_30_is_detected_with_the_right_winner() -> None:
    seeds = 200
    right = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        verdict = decide(
            {"slow": _lognormal(rng, 1.2, 30), "fast": _lognormal(rng, 1.0, 30)}, seed=seed
        )
        right += verdict.status == "separated" and verdict.winner == "fast"
    assert right / seeds >= 0.90


def test_a_winner_is_never_the_slower_candidate() -> None:
    for seed in range(50):
        rng = np.random.default_rng(seed)
        verdict = decide(
            {"slow": _lognormal(rng, 1.2, 10), "fast": _lognormal(rng, 1.0, 10)}, seed=seed
        )
        assert verdict.winner in (None, "fast")


def test_two_candidates_need_no_correction() -> None:
    verdict = decide({"best": BEST, "close": CLOSE})
    assert verdict.status == "separated" and verdict.winner == "best"
    assert verdict.comparisons[0].p_adjusted == pytest.approx(0.0317, abs=1e-4)


def test_holm_correction_applies_over_best_vs_each_other() -> None:
    verdict = decide({"best": BEST, "close": CLOSE, "also_close": CLOSE})
    assert [c.p_value for c in verdict.comparisons] == pytest.approx([0.0317, 0.0317], abs=1e-4)
    assert list(verdict.p_values.values()) == pytest.approx([0.0635, 0.0635], abs=1e-4)
    assert verdict.status == "indistinguishable" and verdict.winner is None
    assert verdict.best == "best"
    assert "Holm-corrected over 2 comparisons" in verdict.text()


def test_holm_multiplies_the_smallest_p_by_the_number_of_comparisons() -> None:
    far = [20.0, 21.0, 22.0, 23.0, 24.0]
    verdict = decide({"best": BEST, "close": CLOSE, "far": far})  # 2 comparisons
    by_other = {c.other: c for c in verdict.comparisons}
    assert by_other["far"].p_adjusted == pytest.approx(2 * by_other["far"].p_value)
    assert by_other["close"].p_adjusted == pytest.approx(
        max(by_other["far"].p_adjusted, by_other["close"].p_value)
    )
    assert verdict.winner == "best"  # 0.016 and 0.032 both below 0.05 after Holm


def test_three_separated_candidates_name_the_fastest() -> None:
    rng = np.random.default_rng(1)
    samples = {name: _lognormal(rng, m, 20) for name, m in (("b", 2.0), ("a", 1.0), ("c", 3.0))}
    verdict = decide(samples)
    assert (verdict.status, verdict.winner, verdict.runner_up) == ("separated", "a", "b")
    assert [c.other for c in verdict.comparisons] == ["b", "c"]


def test_higher_is_better_picks_the_largest() -> None:
    verdict = decide(
        {"lo": [1, 2, 3, 4, 5, 6], "hi": [10, 11, 12, 13, 14, 15]}, lower_is_better=False
    )
    assert verdict.winner == "hi"
    assert verdict.text().startswith("hi is best:")


def test_n_to_separate_is_larger_for_smaller_effects() -> None:
    base = np.random.default_rng(3).lognormal(0.0, 0.2, 8)
    needed = []
    for effect in (0.02, 0.05, 0.15):
        verdict = decide({"a": base, "b": base * (1 + effect)})
        assert verdict.status == "indistinguishable"
        assert verdict.n_to_separate is not None and verdict.n_to_separate > 8
        needed.append(verdict.n_to_separate)
    assert needed[0] > needed[1] > needed[2]


def test_n_to_separate_is_none_once_separated() -> None:
    assert decide({"best": BEST, "close": CLOSE}).n_to_separate is None


def test_an_n_to_separate_estimate_is_roughly_borne_out() -> None:
    rng = np.random.default_rng(11)
    small = decide({"a": _lognormal(rng, 1.0, 4), "b": _lognormal(rng, 1.1, 4)})
    assert small.status == "indistinguishable" and small.n_to_separate is not None
    n = small.n_to_separate
    separated = sum(
        decide(
            {
                "a": _lognormal(np.random.default_rng(s), 1.0, n),
                "b": _lognormal(np.random.default_rng(s + 10_000), 1.1, n),
            }
        ).status
        == "separated"
        for s in range(40)
    )
    assert separated >= 20  # planned for 80 % power from a noisy n = 4 effect


def test_paired_runs_separate_what_unpaired_runs_cannot() -> None:
    rng = np.random.default_rng(0)
    repetition = rng.lognormal(0.0, 0.5, 12)  # each repetition's machine noise, shared
    a = repetition * rng.lognormal(0.0, 0.02, 12)
    b = repetition * 1.05 * rng.lognormal(0.0, 0.02, 12)
    assert decide({"a": a, "b": b}).status == "indistinguishable"
    paired = decide({"a": a, "b": b}, paired=True)
    assert (paired.status, paired.winner) == ("separated", "a")
    assert "Wilcoxon signed-rank" in paired.text()
    assert paired.comparisons[0].ratio.low > 1.0


def test_paired_samples_of_unequal_length_are_rejected() -> None:
    with pytest.raises(ConfigError, match="paired"):
        decide({"a": [1, 2, 3], "b": [1, 2]}, paired=True)


def test_a_single_run_is_insufficient() -> None:
    verdict = decide({"a": [1.0], "b": [1.0, 2.0, 3.0]})
    assert verdict.status == "insufficient" and verdict.winner is None
    assert "a has n=1" in verdict.text()


def test_identical_constant_samples_are_insufficient() -> None:
    verdict = decide({"a": [3.0, 3.0, 3.0], "b": [3.0, 3.0, 3.0]})
    assert verdict.status == "insufficient" and verdict.n_to_separate is None
    assert "same value" in verdict.text()


def test_tied_values_do_not_crash_the_rank_test() -> None:
    verdict = decide({"a": [1, 1, 2, 2, 2, 3], "b": [2, 2, 2, 3, 3, 3]})
    assert verdict.status in ("separated", "indistinguishable")
    assert 0 < verdict.comparisons[0].p_value <= 1


def test_missing_values_are_dropped() -> None:
    verdict = decide({"a": [1.0, float("nan"), 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    assert verdict.estimates["a"].n == 3


def test_separated_text_has_intervals_n_and_the_test() -> None:
    rng = np.random.default_rng(5)
    verdict = decide({"x": _lognormal(rng, 57, 8), "y": _lognormal(rng, 82, 8)})
    text = verdict.text(unit="ms")
    x, y = verdict.estimates["x"], verdict.estimates["y"]
    assert text.startswith(f"x is fastest: {x.value:.3g} ms [{x.low:.3g}, {x.high:.3g}] vs y")
    assert f"[{y.low:.3g}, {y.high:.3g}]" in text
    assert "n=8 each" in text and "Mann–Whitney p" in text


def test_indistinguishable_text_says_how_many_runs_would_separate() -> None:
    verdict = decide({"a": [1.0, 1.2, 0.9, 1.1], "b": [1.1, 1.25, 0.95, 1.15]})
    text = verdict.text()
    assert text.startswith("a and b are indistinguishable at n=4 (")
    assert f"about n≈{verdict.n_to_separate} runs each would separate them" in text


def test_text_scales_values() -> None:
    verdict = decide({"x": [0.010, 0.011, 0.012, 0.013, 0.014], "y": [0.1, 0.11, 0.12, 0.13, 0.14]})
    assert verdict.text(unit="ms", scale=1000).startswith("x is fastest: 12 ms [")


def test_decisions_are_reproducible_for_a_seed() -> None:
    rng = np.random.default_rng(2)
    samples = {"a": _lognormal(rng, 1.0, 9), "b": _lognormal(rng, 1.05, 9)}
    assert decide(samples, seed=4) == decide(samples, seed=4)


def test_mean_and_percentile_statistics_are_accepted() -> None:
    samples = {"a": [1, 2, 3, 4, 5, 6], "b": [11, 12, 13, 14, 15, 16]}
    assert decide(samples, statistic="mean").estimates["a"].value == pytest.approx(3.5)
    assert decide(samples, statistic="p90").winner == "a"


@pytest.mark.parametrize(
    ("samples", "kwargs", "match"),
    [
        ({"a": [1, 2]}, {}, "at least two candidates"),
        ({"a": [1, 2], "b": [3, 4]}, {"alpha": 1.5}, "alpha"),
        ({"a": [1, 2], "b": [3, 4]}, {"statistic": "mode"}, "statistic"),
        ({"a": ["x"], "b": [3, 4]}, {}, "must be numbers"),
    ],
)
def test_bad_arguments_are_config_errors(samples: dict, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        decide(samples, **kwargs)


def test_grouped_samples_are_decided_on_one_value_per_run() -> None:
    """500 requests from each of two runs per candidate: two runs, not 1,000 draws."""
    rng = np.random.default_rng(5)
    a = np.concatenate([rng.normal(m, 0.01, 500) for m in (1.0, 1.2)])
    b = np.concatenate([rng.normal(m, 0.01, 500) for m in (1.05, 1.25)])
    runs = np.repeat([0, 1], 500)
    pooled = decide({"a": a, "b": b})
    by_run = decide({"a": a, "b": b}, groups={"a": runs, "b": runs})
    assert pooled.status == "separated"
    assert by_run.status == "insufficient" or by_run.status == "indistinguishable"
    assert by_run.estimates["a"].n == 2


def test_groups_must_cover_every_candidate() -> None:
    with pytest.raises(ConfigError, match="no runs for 'b'"):
        decide({"a": [1.0, 2.0], "b": [1.0, 2.0]}, groups={"a": [0, 1]})
