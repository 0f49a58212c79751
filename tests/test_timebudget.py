"""Specs of the shared time-budget engine on a fake clock (no lab)."""

from __future__ import annotations

from perfkit import timebudget
from perfkit.timebudget import Step


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _spend(rounds: list[list[Step[str]] | None], budget_s: float | None, **kwargs: object):
    """Plan the given rounds in turn (the last one repeats); every run takes its cost."""
    clock = FakeClock()
    ran: list[tuple[str, int]] = []

    def plan() -> list[Step[str]] | None:
        return rounds[min(len(ran), len(rounds) - 1)] if rounds else []

    def run(step: Step[str], rnd: int) -> None:
        ran.append((step.key, rnd))
        clock.now += step.cost_s

    spent, reason = timebudget.spend(
        plan, run, budget_s=budget_s, clock=clock, max_rounds=kwargs.pop("max_rounds", 5), **kwargs
    )
    return spent, reason, ran


def test_nothing_undecided_stops_as_separated_even_without_a_budget() -> None:
    assert _spend([[]], None)[1] == timebudget.SEPARATED
    assert _spend([None], 0.0)[1] == timebudget.NOTHING_TO_COMPARE


def test_no_budget_runs_nothing() -> None:
    spent, reason, ran = _spend([[Step("a", 1.0)]], 0.0)
    assert (spent, reason, ran) == ([], timebudget.NO_BUDGET, [])


def test_steps_that_do_not_fit_are_skipped_and_the_budget_ends_the_rounds() -> None:
    spent, reason, ran = _spend([[Step("big", 10.0), Step("small", 2.0)]], 5.0)
    assert ran == [("small", 1), ("small", 2)] and reason == timebudget.BUDGET_SPENT
    assert [s.spent_s for s in spent] == [2.0, 4.0]


def test_steps_needing_far_more_runs_than_affordable_are_out_of_reach() -> None:
    _, reason, ran = _spend([[Step("a", 1.0, need=100.0)]], 10.0, reach=2.0)
    assert (ran, reason) == ([], timebudget.OUT_OF_REACH)


def test_rounds_stop_at_max_rounds_or_when_the_last_one_separated() -> None:
    step = [Step("a", 1.0)]
    assert _spend([step], 100.0, max_rounds=3)[1] == timebudget.MAX_ROUNDS
    assert _spend([step, step, step, []], 100.0, max_rounds=3)[1] == timebudget.SEPARATED
