"""Adaptive repetitions for the lifecycle lab: spend a time budget where the verdict is open.

The question the budget serves: which isolating shared strategy runs the suite fastest
(serial wall time)? After the first round of the matrix, :func:`spend_budget` repeats
rounds (the engine: :func:`perfkit.timebudget.spend`). Each round runs the suite once
more under the contenders, that is the leader and every strategy that the rank test has
not yet separated from it (:func:`perfkit.verdicts.decide`). It stops with ``separated``
once the leader is separated from every other, or with ``budget spent`` when the next
round's expected cost would overrun the budget. That cost is the contenders' median wall
times plus the measured per-run overhead. It also stops after ``max_rounds``
(``separated`` if that last round separated it). Every round and the reason for stopping
are recorded in the ``budget`` frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from perfkit import timebudget
from perfkit.lifecycle.registry import ISOLATING_SHARED
from perfkit.verdicts import Verdict, decide

#: Run the suite once more under these strategies (round number given); return new runs rows.
RunRound = Callable[[Sequence[str], int], pd.DataFrame]

ISOLATING = ISOLATING_SHARED
BUDGET_COLUMNS = ("round", "strategies", "seconds", "spent_s", "budget_s", "stop_reason")
# The stop reasons, one set for every lab (:mod:`perfkit.timebudget`).
SEPARATED = timebudget.SEPARATED
BUDGET_SPENT = timebudget.BUDGET_SPENT
MAX_ROUNDS = timebudget.MAX_ROUNDS
NO_BUDGET = timebudget.NO_BUDGET
NOTHING_TO_COMPARE = timebudget.NOTHING_TO_COMPARE


def suite_times(runs: pd.DataFrame, workers: int) -> dict[str, list[float]]:
    """Wall times of the passing runs of each isolating strategy at ``workers``."""
    ok = runs[(runs["exit_code"] == 0) & (runs["workers"] == workers)]
    ok = ok[ok["strategy"].isin(ISOLATING)]
    return {str(name): [float(x) for x in g["wall_s"]] for name, g in ok.groupby("strategy")}


def contenders(verdict: Verdict, times: dict[str, list[float]]) -> list[str]:
    """The leader and every strategy not yet separated from it (all when n is too small)."""
    if verdict.best is None:
        return sorted(times)
    open_ = [c.other for c in verdict.comparisons if not c.separated]
    if verdict.status == "insufficient":
        open_ = [name for name in times if name != verdict.best]
    return [verdict.best, *open_]


def spend_budget(
    runs: pd.DataFrame,
    *,
    budget_s: float,
    workers: int,
    run_round: RunRound,
    overhead_s: float = 1.0,
    max_rounds: int = 10,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[pd.DataFrame, pd.DataFrame, Verdict | None]:
    """Run rounds until the fastest strategy is separated or the budget is spent.

    Returns all runs (the first round's and the new ones), the ``budget`` frame
    and the last verdict (None when fewer than two strategies ran).
    """
    state: dict[str, Any] = {"runs": runs, "verdict": None}

    def plan() -> list[timebudget.Step[tuple[str, ...]]] | None:
        times = suite_times(state["runs"], workers)
        if len(times) < 2:
            state["verdict"] = None
            return None
        verdict = state["verdict"] = decide(times, lower_is_better=True)
        if verdict.status == "separated":
            return []
        names = contenders(verdict, times)
        cost = sum(float(pd.Series(times[n]).median()) + overhead_s for n in names)
        return [timebudget.Step(tuple(names), cost)]

    def run(step: timebudget.Step[tuple[str, ...]], number: int) -> None:
        state["runs"] = pd.concat([state["runs"], run_round(step.key, number)], ignore_index=True)

    spent, reason = timebudget.spend(
        plan, run, budget_s=budget_s, max_rounds=max_rounds, clock=clock
    )
    rows = [
        {
            "round": s.round,
            "strategies": ", ".join(s.step.key),
            "seconds": s.seconds,
            "spent_s": s.spent_s,
            "budget_s": budget_s,
        }
        for s in spent
    ]
    budget = pd.DataFrame(rows, columns=list(BUDGET_COLUMNS))
    if budget.empty:
        budget = pd.DataFrame(
            [{"round": 0, "strategies": "", "seconds": 0.0, "spent_s": 0.0, "budget_s": budget_s}],
            columns=list(BUDGET_COLUMNS),
        )
    budget["stop_reason"] = reason
    return state["runs"], budget, state["verdict"]
