"""A time budget: extra rounds for what is not yet separated, until a stop reason.

Labs that compare candidates (retry strategies, fixture strategies) run a first
round, then :func:`spend` repeats rounds. Each round the lab's ``plan`` names
the steps worth another run (the undecided comparisons' contenders), most
promising first, each with its expected cost in seconds and, optionally, the
runs it is estimated to need to separate. A step runs when the time left covers
its cost (and, with ``reach``, when the runs it needs are within ``reach`` times
what the time left affords). The rounds stop with one of:

- :data:`SEPARATED`: nothing is left undecided;
- :data:`NOTHING_TO_COMPARE`: fewer than two candidates ran;
- :data:`NO_BUDGET`: no time budget (fixed repetitions);
- :data:`BUDGET_SPENT`: no step of the next round fits in the time left;
- :data:`OUT_OF_REACH`: the steps that would fit need far more runs than it affords;
- :data:`MAX_ROUNDS`: ``max_rounds`` rounds ran and something is still undecided.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

SEPARATED = "separated"
NOTHING_TO_COMPARE = "fewer than two candidates to compare"
NO_BUDGET = "no time budget: fixed repetitions"
BUDGET_SPENT = "budget spent"
OUT_OF_REACH = "the undecided verdicts need more runs than the budget allows"
MAX_ROUNDS = "max rounds"
STOP_REASONS = (SEPARATED, NOTHING_TO_COMPARE, NO_BUDGET, BUDGET_SPENT, OUT_OF_REACH, MAX_ROUNDS)

K = TypeVar("K")


@dataclass(frozen=True)
class Step(Generic[K]):
    """One run the next round may make: what (``key``), its expected seconds, and the runs
    its comparison is estimated to need to separate (0: always worth trying)."""

    key: K
    cost_s: float
    need: float = 0.0


@dataclass(frozen=True)
class Spent(Generic[K]):
    """One step that ran: its round (from 1), seconds, and the budget used after it."""

    round: int
    step: Step[K]
    seconds: float
    spent_s: float


#: The next round's steps, most promising first ([]: all separated; None: nothing to compare).
Plan = Callable[[], Sequence[Step[K]] | None]
#: Run one step in the given round (the lab keeps what it measured).
Run = Callable[[Step[K], int], None]


def _final(steps: Sequence[Step[K]] | None) -> str:
    if steps is None:
        return NOTHING_TO_COMPARE
    return MAX_ROUNDS if steps else SEPARATED


def spend(
    plan: Plan[K],
    run: Run[K],
    *,
    budget_s: float | None,
    max_rounds: int,
    spent_s: float = 0.0,
    reach: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[Spent[K]], str]:
    """Rounds of ``plan``'s steps within ``budget_s`` (``spent_s`` of it already used).

    ``budget_s`` None or <= 0: no extra rounds (the stop reason still says when
    everything is already separated). Returns the steps that ran and the stop reason.
    """
    started = clock() - spent_s
    spent: list[Spent[K]] = []
    for rnd in range(1, max_rounds + 1):
        steps = plan()
        if not steps:
            return spent, _final(steps)
        if budget_s is None or budget_s <= 0:
            return spent, NO_BUDGET
        ran, out_of_reach = False, False
        for step in steps:
            left = budget_s - (clock() - started)
            if step.cost_s > left:
                continue
            if reach is not None and step.need > reach * left / max(step.cost_s, 1e-9):
                out_of_reach = True
                continue
            t = clock()
            run(step, rnd)
            seconds = clock() - t
            spent.append(Spent(rnd, step, seconds, clock() - started))
            ran = True
        if not ran:
            return spent, OUT_OF_REACH if out_of_reach else BUDGET_SPENT
    return spent, _final(plan())
