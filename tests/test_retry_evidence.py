"""Specs of the retry lab's verdicts, intervals, samples and adaptive repetitions (no server)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.lab import SAMPLE_COLUMNS
from perfkit.retry import adaptive, analysis, evidence
from perfkit.retry.experiments import ClientSpec, specs_for, summarize
from perfkit.retry.strategies import DelayedExponential, FixedDelay
from perfkit.stats import Estimate


def runs_frame(
    values: dict[str, Sequence[float]],
    *,
    scenario: str = "cold_start",
    param_s: float | None = None,
    attempts: dict[str, Sequence[int]] | None = None,
    seconds: float = 1.0,
) -> pd.DataFrame:
    """A synthetic ``runs`` frame: one row per value (overshoot in s)."""
    rows = []
    for label, overshoots in values.items():
        for rep, value in enumerate(overshoots):
            rows.append(
                {
                    "scenario": scenario,
                    "rep": rep,
                    "label": label,
                    "strategy": label,
                    "param_s": param_s if param_s is not None else math.nan,
                    "overshoot_s": value,
                    "time_to_connect_s": seconds,
                    "attempts": (attempts or {}).get(label, [2] * len(overshoots))[rep],
                    "connected": not math.isnan(value),
                    "failed": 1,
                }
            )
    return pd.DataFrame(rows)


FAST = [0.010, 0.011, 0.012, 0.009, 0.010, 0.011, 0.010, 0.012]
SLOW = [0.300, 0.310, 0.290, 0.305, 0.295, 0.300, 0.310, 0.298]


def test_a_separated_winner_is_named_in_the_verdict_row() -> None:
    runs = runs_frame({"fast": FAST, "slow": SLOW})
    verdicts = evidence.verdict_frame(runs, metrics=("overshoot_s",))
    row = verdicts.iloc[0]
    assert (row["status"], row["winner"], row["runner_up"]) == ("separated", "fast", "slow")
    assert row["n"] == 8 and row["text"].startswith("fast is fastest")


def test_overlapping_candidates_have_no_winner_and_an_n_to_separate() -> None:
    runs = runs_frame({"a": [0.10, 0.20, 0.15], "b": [0.12, 0.22, 0.18]})
    row = evidence.verdict_frame(runs, metrics=("overshoot_s",)).iloc[0]
    assert row["status"] == "indistinguishable" and row["winner"] is None
    assert row["n_to_separate"] > 3 and "indistinguishable at n=3" in row["text"]


def test_verdict_frame_has_the_documented_columns() -> None:
    runs = runs_frame({"a": FAST, "b": SLOW})
    assert tuple(evidence.verdict_frame(runs).columns) == evidence.VERDICT_COLUMNS


def test_verdict_text_of_overshoot_is_in_milliseconds() -> None:
    runs = runs_frame({"fast": FAST, "slow": SLOW})
    text = evidence.verdict_frame(runs, metrics=("overshoot_s",)).iloc[0]["text"]
    assert "10.5 ms" in text


def test_attempts_get_a_verdict_of_their_own() -> None:
    runs = runs_frame(
        {"few": FAST, "many": FAST},
        attempts={"few": [2] * 8, "many": [9, 10, 11, 9, 10, 9, 11, 10]},
    )
    verdicts = evidence.verdict_frame(runs).set_index("metric")
    assert verdicts.loc["attempts", "winner"] == "few"
    assert verdicts.loc["overshoot_s", "status"] == "indistinguishable"


def test_the_fitted_schedule_is_compared_with_naive_and_review_apart_from_the_named() -> None:
    runs = runs_frame({"naive": SLOW, "review": SLOW, "exponential": SLOW, "fitted": FAST})
    comparisons = evidence.comparisons_of(runs)
    assert comparisons[0].labels == ("naive", "review", "exponential")
    assert comparisons[1].labels == ("fitted", "naive", "review")
    assert comparisons[1].name == "fitted vs naive, review"


def test_every_outage_length_is_its_own_comparison() -> None:
    runs = pd.concat(
        [
            runs_frame({"a": FAST, "b": SLOW}, scenario="outage", param_s=1.0),
            runs_frame({"a": SLOW, "b": FAST}, scenario="outage", param_s=5.0),
        ]
    )
    verdicts = evidence.verdict_frame(runs, metrics=("overshoot_s",)).set_index("param_s")
    assert verdicts.loc[1.0, "winner"] == "a" and verdicts.loc[5.0, "winner"] == "b"


def test_runs_that_gave_up_are_left_out_of_the_overshoot_samples() -> None:
    runs = runs_frame({"a": [0.1, math.nan, 0.2], "b": [0.3, 0.4, 0.5]})
    samples = evidence.samples_by_label(runs, evidence.Comparison(scenario="cold_start"))
    assert list(samples["a"]) == [0.1, 0.2]


def test_overlap_of_disjoint_intervals_is_zero() -> None:
    assert evidence.overlap(Estimate(1, 0, 2, 5), Estimate(4, 3, 5, 5)) == 0.0


def test_overlap_of_nested_intervals_is_the_inner_share() -> None:
    assert evidence.overlap(Estimate(1, 0, 4, 5), Estimate(2, 1, 3, 5)) == pytest.approx(0.5)


def test_contenders_are_the_leader_and_the_most_overlapping_first() -> None:
    rng = np.random.default_rng(0)
    samples = {
        "leader": rng.normal(1.0, 0.3, 4),
        "close": rng.normal(1.05, 0.3, 4),
        "far": rng.normal(1.6, 0.3, 4),
    }
    chosen = evidence.contenders(samples)
    assert chosen[0] == "leader" and chosen[1] == "close"


def test_a_separated_comparison_has_no_contenders() -> None:
    assert evidence.contenders({"fast": FAST, "slow": SLOW}) == []


def test_contenders_are_at_most_the_limit() -> None:
    samples = {name: [0.1, 0.2, 0.3] for name in "abcdef"}
    assert len(evidence.contenders(samples, limit=3)) == 3


def test_samples_frame_has_the_lab_contract_columns_and_one_row_per_run() -> None:
    runs = runs_frame({"naive": SLOW, "review": FAST})
    frame = evidence.samples_frame(runs, {"naive": "naive", "improved": "review"})
    assert tuple(frame.columns) == (*SAMPLE_COLUMNS, "run")
    overshoot = frame[frame["metric"] == "cold_start_overshoot"]
    assert overshoot.groupby("variant").size().to_dict() == {"improved": 8, "naive": 8}


def test_summary_carries_n_and_intervals_of_the_medians() -> None:
    summary = summarize(runs_frame({"a": FAST, "b": SLOW}), by=("scenario", "label"))
    row = summary.set_index("label").loc["a"]
    assert row["n"] == 8
    assert row["overshoot_ci_low_s"] <= row["overshoot_median_s"] <= row["overshoot_ci_high_s"]
    assert row["attempts_ci_low"] == row["attempts_ci_high"] == 2


# -- adaptive repetitions ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


MEANS = {"a": 0.100, "b": 0.130, "c": 0.600}


class FakeLab:
    """Runs of known distributions (default: 'a' and 'b' are close, 'c' is far behind)."""

    def __init__(
        self, clock: FakeClock, seconds: float = 2.0, means: dict[str, float] | None = None
    ) -> None:
        self.means = means if means is not None else MEANS
        self.clock = clock
        self.seconds = seconds
        self.rng = np.random.default_rng(1)
        self.calls: list[tuple[str, ...]] = []

    def run(self, key: adaptive.Key, labels: Sequence[str], rnd: int) -> pd.DataFrame:
        self.calls.append(tuple(labels))
        self.clock.now += self.seconds
        noise = self.rng.normal(0, 0.01)  # one draw per round: equal means stay tied
        values = {label: [self.means[label] + noise] for label in labels}
        return runs_frame(values, seconds=0.5)


def first_runs(means: dict[str, float] = MEANS, n: int = 3) -> pd.DataFrame:
    noise = np.random.default_rng(0).normal(0, 0.01, n)
    return runs_frame({k: m + noise for k, m in means.items()}, seconds=0.5)


def test_extra_runs_go_to_the_overlapping_candidates_not_the_far_one() -> None:
    clock = FakeClock()
    fake = FakeLab(clock)
    runs = first_runs()
    comparisons = [evidence.Comparison(scenario="cold_start")]
    adaptive.spend_budget(runs, comparisons, fake.run, budget_s=6.0, clock=clock)
    assert fake.calls and all(set(call[:2]) == {"a", "b"} for call in fake.calls)


def test_the_budget_stops_extra_rounds_when_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adaptive, "REACH", math.inf)  # pursue even hopeless comparisons
    clock = FakeClock()
    means = {"a": 0.100, "b": 0.100, "c": 0.600}
    fake = FakeLab(clock, seconds=2.0, means=means)
    _, rows, reason = adaptive.spend_budget(
        first_runs(means),
        [evidence.Comparison(scenario="cold_start")],
        fake.run,
        budget_s=7.0,
        clock=clock,
    )
    assert reason == adaptive.BUDGET_SPENT
    assert clock.now <= 7.0 and len(rows) == 3


def test_candidates_that_showed_no_difference_get_no_extra_runs() -> None:
    fake = FakeLab(FakeClock())
    same = runs_frame({"a": [0.1, 0.2, 0.3], "b": [0.1, 0.2, 0.3]})
    _, rows, reason = adaptive.spend_budget(
        same, [evidence.Comparison(scenario="cold_start")], fake.run, budget_s=100.0
    )
    assert (rows, reason, fake.calls) == ([], adaptive.OUT_OF_REACH, [])


def test_rounds_stop_once_the_verdict_separates() -> None:
    clock = FakeClock()
    fake = FakeLab(clock)
    runs, rows, reason = adaptive.spend_budget(
        first_runs(),
        [evidence.Comparison(scenario="cold_start")],
        fake.run,
        budget_s=500.0,
        clock=clock,
    )
    assert reason == adaptive.SEPARATED
    assert evidence.verdict_frame(runs, metrics=("overshoot_s",)).iloc[0]["winner"] == "a"
    assert len(runs) == 9 + sum(r["clients"] for r in rows)


def test_no_budget_means_fixed_repetitions() -> None:
    fake = FakeLab(FakeClock())
    runs = first_runs()
    out, rows, reason = adaptive.spend_budget(
        runs, [evidence.Comparison(scenario="cold_start")], fake.run, budget_s=None
    )
    assert (len(out), rows, reason) == (len(runs), [], adaptive.NO_BUDGET)


def test_the_expected_cost_is_the_slowest_contender_plus_the_overhead() -> None:
    runs = runs_frame({"quick": [0.1], "slow": [0.1]})
    runs.loc[runs["label"] == "slow", "time_to_connect_s"] = 9.0
    key = ("cold_start", None)
    assert adaptive.expected_cost(runs, key, ["quick"], [2.0]) == pytest.approx(3.0)
    assert adaptive.expected_cost(runs, key, ["quick", "slow"], [2.0]) == pytest.approx(11.0)


def test_the_budget_frame_repeats_the_stop_reason_on_every_row() -> None:
    rows = [adaptive.budget_row(0, ("outage", 1.0), ["a", "b"], 3.0, 3.0, 10.0)]
    frame = adaptive.budget_frame(rows, adaptive.SEPARATED)
    assert tuple(frame.columns) == adaptive.BUDGET_COLUMNS
    assert list(frame["stop_reason"]) == [adaptive.SEPARATED]


# -- specs with Strategy objects --------------------------------------------------------


def test_a_spec_runs_a_strategy_object_under_its_label() -> None:
    fitted = DelayedExponential(first_delay=0.04, base=0.01, multiplier=1.0, cap=0.01)
    specs = specs_for({"fitted": fitted, "naive": "naive"})
    assert [s.label for s in specs] == ["fitted", "naive"]
    assert specs[0].resolve() is fitted and specs[0].strategy_name == "delayed_exponential"


def test_a_strategy_object_is_not_added_to_the_registry() -> None:
    from perfkit.retry.strategies import STRATEGIES

    before = dict(STRATEGIES)
    specs_for({"fitted": FixedDelay(delay=0.01)})
    assert before == STRATEGIES


def test_a_spec_of_an_unlabelled_object_is_labelled_by_its_kind() -> None:
    spec = ClientSpec(strategy=FixedDelay(delay=0.02, max_attempts=5))
    assert spec.label == "fixed"


def test_overrides_apply_to_a_strategy_object() -> None:
    spec = ClientSpec(strategy=FixedDelay(delay=0.02), overrides={"max_attempts": 3})
    assert spec.resolve().max_attempts == 3


def test_a_spec_refuses_what_is_neither_a_name_nor_a_strategy() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        ClientSpec(strategy=42)  # type: ignore[arg-type]


# -- the lab's pure helpers -------------------------------------------------------------


def attempts_frame(durations: Sequence[float], outcome: str = "ok") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scenario": "cold_start",
            "rep": 0,
            "label": "a",
            "param_s": math.nan,
            "t_event_s": [0.01 * (i + 1) for i in range(len(durations))],
            "duration_s": list(durations),
            "outcome": outcome,
        }
    )


def test_an_attempt_that_beat_the_probe_is_not_a_proxy_hang() -> None:
    runs = runs_frame({"a": [0.0]}).assign(ready_after_event_s=0.05)
    assert not analysis.proxy_hangs(attempts_frame([0.003]), runs)


def test_a_long_attempt_before_ready_is_a_proxy_hang() -> None:
    runs = runs_frame({"a": [0.0]}).assign(ready_after_event_s=1.5)
    assert analysis.proxy_hangs(attempts_frame([1.2]), runs)


def test_agreement_allows_one_probe_poll_of_resolution() -> None:
    runs = runs_frame({"a": FAST})
    predicted = pd.DataFrame(
        [
            {
                "strategy": "a",
                "median_overshoot": 0.018,
                "median_overshoot_low": 0.017,
                "median_overshoot_high": 0.019,
                "median_attempts": 2.0,
                "median_attempts_low": 2.0,
                "median_attempts_high": 2.0,
                "success_rate": 1.0,
            }
        ]
    )
    rows = analysis.agreement_rows(predicted, runs, scenario="cold_start", param_s=None)
    assert [r["agreement"] for r in rows] == [True, True]
