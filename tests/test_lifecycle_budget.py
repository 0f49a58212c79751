"""The lifecycle lab's time budget: extra serial rounds until the fastest strategy separates."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from perfkit.lifecycle import budget

MEDIANS = {"rollback": 2.0, "truncate": 2.05, "template": 4.0}


def _runs(names: Sequence[str], seed: int, medians: dict[str, float] = MEDIANS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        [
            {
                "strategy": name,
                "workers": 1,
                "exit_code": 0,
                "wall_s": medians[name] * rng.lognormal(0, 0.02),
            }
            for name in names
        ]
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _spend(medians: dict[str, float], budget_s: float, *, max_rounds: int = 10):
    clock = FakeClock()
    asked: list[list[str]] = []

    def run_round(names: Sequence[str], number: int) -> pd.DataFrame:
        asked.append(list(names))
        clock.now += sum(medians[n] + 1.0 for n in names)
        return _runs(names, number, medians)

    runs, frame, verdict = budget.spend_budget(
        _runs(list(medians), 0, medians),
        budget_s=budget_s,
        workers=1,
        run_round=run_round,
        clock=clock,
        max_rounds=max_rounds,
    )
    return runs, frame, verdict, asked


def test_no_budget_runs_nothing_more_and_says_so() -> None:
    runs, frame, _, asked = _spend(MEDIANS, 0.0)
    assert asked == [] and len(runs) == 3
    assert frame["stop_reason"].tolist() == [budget.NO_BUDGET]


def test_rounds_continue_until_a_clear_leader_separates() -> None:
    medians = {"rollback": 2.0, "template": 4.0}
    _, frame, verdict, _ = _spend(medians, 1000.0)
    assert verdict is not None and verdict.winner == "rollback"
    assert frame["stop_reason"].iloc[0] == budget.SEPARATED


def test_a_strategy_already_separated_from_the_leader_is_not_run_again() -> None:
    _, _, _, asked = _spend(MEDIANS, 1000.0, max_rounds=8)
    assert "template" in asked[0]  # n=1 at first: every strategy is a contender
    assert all("template" not in names for names in asked[-2:])


def test_a_round_that_would_overrun_the_budget_is_not_started() -> None:
    runs, frame, _, asked = _spend(MEDIANS, 5.0)
    assert asked == [] and len(runs) == 3
    assert frame["stop_reason"].iloc[0] == budget.BUDGET_SPENT


def test_indistinguishable_strategies_stop_at_max_rounds_and_are_recorded() -> None:
    medians = {"rollback": 2.0, "truncate": 2.0}
    _, frame, verdict, asked = _spend(medians, 1000.0, max_rounds=3)
    assert len(asked) == 3 and frame["round"].tolist() == [1, 2, 3]
    assert frame["stop_reason"].iloc[0] == budget.MAX_ROUNDS
    assert verdict is not None and verdict.winner is None


def test_fewer_than_two_isolating_strategies_is_nothing_to_compare() -> None:
    runs = _runs(["rollback"], 0)
    _, frame, verdict = budget.spend_budget(
        runs, budget_s=100.0, workers=1, run_round=lambda names, n: runs
    )
    assert verdict is None and frame["stop_reason"].iloc[0] == budget.NOTHING_TO_COMPARE
