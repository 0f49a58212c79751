"""Adaptive repetitions: spend a time budget on the comparisons the runs cannot decide yet.

After a first round of fixed repetitions, :func:`spend_budget` repeats rounds (the
engine: :func:`perfkit.timebudget.spend`): each comparison
(:class:`~perfkit.retry.evidence.Comparison`) whose leader is not yet separated from
every other names its contenders (:func:`~perfkit.retry.evidence.contenders`: the leader
and the candidates whose intervals overlap its interval most); each scenario then runs
once more with just those labels, when the time left covers what such a run is expected
to cost, the scenarios whose verdicts need the fewest runs to separate first (a
comparison that would need far more runs than the time left affords, or whose candidates
showed no difference at all, is not pursued). It stops when every comparison is
separated (``"separated"``), when no undecided scenario fits in the time left (``"budget
spent"``), when the undecided ones are out of reach, or after ``max_rounds``; with no
budget it runs none (``"no time budget"``, or ``"separated"`` when nothing is
undecided). The ``budget`` frame records every round.

The expected cost of a run is the slowest contender's median time to connect
in that scenario (an outage's length included) plus the scenario's overhead
(server start, probe; measured as a round's wall time minus its slowest
client), so cheap scenarios are not starved by an expensive one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from perfkit import timebudget
from perfkit.retry.evidence import (
    Comparison,
    contenders_of,
    runs_needed,
    samples_by_label,
    scenario_runs,
    verdict_of,
)

Key = tuple[str, float | None]
#: Run one scenario once more with these labels in this round; return the new ``runs`` rows.
RunRound = Callable[[Key, Sequence[str], int], pd.DataFrame]

BUDGET_COLUMNS = (
    "round",
    "scenario",
    "param_s",
    "labels",
    "clients",
    "seconds",
    "spent_s",
    "budget_s",
    "stop_reason",
)
# The stop reasons, one set for every lab (:mod:`perfkit.timebudget`).
SEPARATED = timebudget.SEPARATED
BUDGET_SPENT = timebudget.BUDGET_SPENT
OUT_OF_REACH = timebudget.OUT_OF_REACH
MAX_ROUNDS = timebudget.MAX_ROUNDS
NO_BUDGET = timebudget.NO_BUDGET
#: A comparison is tried while its estimated runs to separate are at most this many
#: times the runs the time left affords (the estimate is rough at small n).
REACH = 2.0


def plan_round(
    runs: pd.DataFrame, comparisons: Sequence[Comparison], *, seed: int = 0
) -> dict[Key, tuple[list[str], float]]:
    """Per scenario: the labels the next round should run and the fewest extra runs its
    undecided comparisons are estimated to need (:func:`~perfkit.retry.evidence.runs_needed`)."""
    out: dict[Key, tuple[list[str], float]] = {}
    for comparison in comparisons:
        samples = samples_by_label(runs, comparison)
        verdict = verdict_of(samples, seed=seed)
        labels = contenders_of(verdict, list(samples))
        if labels:
            merged, need = out.get(comparison.key, ([], math.inf))
            merged += [label for label in labels if label not in merged]
            out[comparison.key] = (merged, min(need, runs_needed(verdict)))
    return out


def expected_cost(
    runs: pd.DataFrame, key: Key, labels: Sequence[str], overheads: Sequence[float]
) -> float:
    """Seconds one more run of ``labels`` in scenario ``key`` is expected to take."""
    sel = scenario_runs(runs, *key)
    times = sel.groupby("label")["time_to_connect_s"].median().dropna()
    known = [float(times[label]) for label in labels if label in times.index]
    fallback = float(times.max()) if len(times) else 0.0
    slowest = max(known) if len(known) == len(labels) else max([*known, fallback])
    overhead = float(np.median(overheads)) if len(overheads) else 0.0
    return overhead + slowest


def _slowest(new: pd.DataFrame) -> float:
    if new.empty or "time_to_connect_s" not in new.columns:
        return 0.0
    value = new["time_to_connect_s"].max()
    return 0.0 if value is None or math.isnan(value) else float(value)


def budget_row(
    rnd: int,
    key: Key,
    labels: Sequence[str],
    seconds: float,
    spent_s: float,
    budget_s: float | None,
) -> dict[str, Any]:
    """One row of the ``budget`` frame (the stop reason is filled in at the end)."""
    return {
        "round": rnd,
        "scenario": key[0],
        "param_s": key[1] if key[1] is not None else math.nan,
        "labels": ", ".join(labels),
        "clients": len(labels),
        "seconds": seconds,
        "spent_s": spent_s,
        "budget_s": budget_s if budget_s is not None else math.nan,
        "stop_reason": "",
    }


def budget_frame(rows: Sequence[dict[str, Any]], stop_reason: str) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(BUDGET_COLUMNS))
    frame["stop_reason"] = stop_reason
    return frame


def spend_budget(
    runs: pd.DataFrame,
    comparisons: Sequence[Comparison],
    run_round: RunRound,
    *,
    budget_s: float | None,
    spent_s: float = 0.0,
    overheads: dict[Key, list[float]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    seed: int = 0,
    max_rounds: int = 50,
) -> tuple[pd.DataFrame, list[dict[str, Any]], str]:
    """Extra rounds until the comparisons separate or ``budget_s`` (from 0, ``spent_s`` used) ends.

    Returns the runs with the new rows, one :func:`budget_row` per run made
    (rounds numbered from 1) and the stop reason (:mod:`perfkit.timebudget`).
    ``overheads`` (per scenario, seconds beyond the slowest client of earlier
    rounds) seed the cost estimates.
    """
    overheads = {k: list(v) for k, v in (overheads or {}).items()}
    state = {"runs": runs}

    def plan() -> list[timebudget.Step[tuple[Key, tuple[str, ...]]]]:
        now = state["runs"]
        wanted = plan_round(now, comparisons, seed=seed)
        steps = [
            timebudget.Step(
                (key, tuple(labels)),
                expected_cost(now, key, labels, overheads.get(key, [])),
                need,
            )
            for key, (labels, need) in wanted.items()
        ]
        # the most promising first: fewest runs to separate, then the cheapest
        return sorted(steps, key=lambda s: (s.need, s.cost_s))

    def run(step: timebudget.Step[tuple[Key, tuple[str, ...]]], rnd: int) -> None:
        key, labels = step.key
        t = clock()
        new = run_round(key, labels, rnd)
        overheads.setdefault(key, []).append(max(0.0, clock() - t - _slowest(new)))
        state["runs"] = pd.concat([state["runs"], new], ignore_index=True)

    spent, stop = timebudget.spend(
        plan,
        run,
        budget_s=budget_s,
        max_rounds=max_rounds,
        spent_s=spent_s,
        reach=REACH,
        clock=clock,
    )
    rows = [
        budget_row(s.round, s.step.key[0], s.step.key[1], s.seconds, s.spent_s, budget_s)
        for s in spent
    ]
    return state["runs"], rows, stop
