"""A backoff recommended for a fleet: the schedule that reconnects N clients soonest.

:func:`recommend_for_fleet` searches the schedule family

- jitter kind: ``none`` (capped exponential), ``full``, ``equal`` or ``decorrelated``;
- ``base``, ``multiplier`` (not for decorrelated jitter, whose growth is 3), ``cap``;
- a first-retry delay (``first_delay``, 0 for none:
  :class:`~perfkit.retry.strategies.FirstRetryDelay`, or
  :class:`~perfkit.retry.strategies.DelayedExponential` without jitter);
- a shared retry budget (:class:`~perfkit.retry.contention.RetryBudget`: burst and refill per
  second) or none,

for the least ``objective + attempt_weight * attempts per client``, where the
objective is the time from the server being ready until all clients are
connected (``"all_connected"``) or until 90 % are (``"p90"``), simulated by the
contention model (:func:`~perfkit.retry.contention.simulate_contended`) for
``n_clients`` clients against a server with the measured ``costs``
(:func:`~perfkit.retry.setupcost.measure_setup_costs`). A client that gives up
counts as connecting at twice the deadline, and each one that does adds to
``all_connected``, so a schedule that loses clients never wins.

The search: a coarse grid (every jitter kind x base x cap x first delay, plus
the named strategies' own shapes, without a budget) scored on ``search_seeds``
seeds (common random numbers: every candidate sees the same draws), then a
compass search (:func:`perfkit.retry.model.pattern_search`) from the best three,
and from the best with a retry budget added. The winner and the named
strategies are then simulated on ``seeds`` fresh seeds (not the search's, so
the winner's numbers are not flattered by the search); their intervals are
bootstrap intervals over those seeds (n = seeds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.retry.contention import ContentionSettings, RetryBudget, simulate_contended
from perfkit.retry.model import pattern_search, schedule_text
from perfkit.retry.simulate import SimResult
from perfkit.retry.strategies import (
    CappedExponential,
    DecorrelatedJitter,
    DelayedExponential,
    EqualJitter,
    FirstRetryDelay,
    FullJitter,
    Strategy,
    get_strategy,
)
from perfkit.retry.token_bucket import RetryTokenBucket
from perfkit.stats import Estimate, mean_interval

Objective = Literal["all_connected", "p90"]
OBJECTIVES: tuple[str, ...] = ("all_connected", "p90")
JITTERS = {
    "none": CappedExponential,
    "full": FullJitter,
    "equal": EqualJitter,
    "decorrelated": DecorrelatedJitter,
}
#: How each jitter kind turns the schedule's delay d into the delay slept.
JITTER_WORDS = {
    "none": "no jitter",
    "full": "full jitter (each delay drawn from [0, d])",
    "equal": "equal jitter (each delay drawn from [d/2, d])",
    "decorrelated": "decorrelated jitter (each delay drawn from [base, 3 x the last], capped)",
}
NAMED = ("naive", "exponential", "full_jitter", "equal_jitter", "decorrelated_jitter")
#: Seeds of the final evaluation start here, away from the search's 0, 1, ...
EVAL_SEED0 = 1000
#: The deadline a client that gives up is charged twice of, when the scenario has none.
DEFAULT_DEADLINE_S = 60.0
BUDGET = "+budget"
# Parameter vector: (first_delay, base, multiplier, cap, budget capacity, budget refill/s).
Params = tuple[float, ...]


@dataclass(frozen=True, eq=False, kw_only=True)
class FleetRecommendation:
    """The schedule recommended for ``n_clients``, its predicted numbers and the named ones'."""

    n_clients: int
    objective: Objective
    attempt_weight: float
    strategy: Strategy
    #: The jitter kind searched (none, full, equal, decorrelated), or the named strategy's
    #: name when a named strategy beat the search's winner on the evaluation seeds.
    jitter: str
    schedule: str
    budget: RetryBudget | None
    all_connected_s: Estimate
    p90_s: Estimate
    attempts_per_client: Estimate
    #: One row per strategy (the recommendation first, then the named ones), per-seed means.
    comparison: pd.DataFrame
    evaluated: int
    search_s: float
    seeds: tuple[int, ...]
    costs: Mapping[str, float]

    def token_bucket(self) -> RetryTokenBucket | None:
        """The shared retry budget as the real clients' token bucket (waiting when empty)."""
        if self.budget is None:
            return None
        return RetryTokenBucket(
            capacity=self.budget.capacity, refill_per_s=self.budget.refill_per_s, on_empty="wait"
        )

    def to_dict(self) -> dict[str, Any]:
        """Flat numbers and settings for a results frame (one row)."""
        out: dict[str, Any] = {
            "n_clients": self.n_clients,
            "objective": self.objective,
            "attempt_weight": self.attempt_weight,
            "jitter": self.jitter,
            "schedule": self.schedule,
            "budget_capacity": None if self.budget is None else self.budget.capacity,
            "budget_refill_per_s": None if self.budget is None else self.budget.refill_per_s,
            "seeds": len(self.seeds),
            "evaluated": self.evaluated,
            "search_s": self.search_s,
            "sentence": self.sentence(),
        }
        for name in ("all_connected_s", "p90_s", "attempts_per_client"):
            est: Estimate = getattr(self, name)
            out.update({name: est.value, f"{name}_low": est.low, f"{name}_high": est.high})
        return {**out, **{f"strategy_{k}": v for k, v in self.strategy.describe().items()}}

    def describe(self) -> str:
        """The schedule in words: jitter, delays, attempts and budget."""
        if self.jitter not in JITTERS:
            return f"the named strategy {self.jitter} ({self.schedule})"
        text = f"{JITTER_WORDS[self.jitter]}: {self.schedule}"
        if self.jitter == "decorrelated":
            text = text.replace(f" x{self.strategy.describe()['multiplier']:g}", " x<=3")
        if self.budget is not None:
            text += (
                f", sharing a retry budget of {self.budget.refill_per_s:,.0f} retries/s "
                f"(burst {self.budget.capacity:,.0f})"
            )
        return text

    def sentence(self, against: str = "naive") -> str:
        """``for 1,000 clients against this server use …; all connected after X s [lo, hi]
        vs Y s [lo, hi] for naive`` (and the best named strategy), simulated over n seeds."""
        rows = self.comparison.set_index("strategy")
        named = rows.drop(index="recommended")
        text = (
            f"for {self.n_clients:,} clients against this server use {self.describe()}; "
            f"all connected after {_seconds(_all_connected(rows.loc['recommended']))}"
        )
        if against in named.index:
            text += f" vs {_versus(named.loc[against], self.n_clients)} for {against}"
        best = named["objective"].idxmin() if len(named) else None
        if best is not None and best != against:
            text += f" ({_versus(named.loc[best], self.n_clients)} for {best}, the best named)"
        return text + f"; contention model, {len(self.seeds)} seeds"


def _all_connected(row: pd.Series) -> Estimate:
    return Estimate(row["all_connected_s"], row["all_connected_s_low"],
                    row["all_connected_s_high"], int(row["seeds"]))  # fmt: skip


def _versus(row: pd.Series, n_clients: int) -> str:
    if row["gave_up"] > 0:
        return f"{row['gave_up']:,.0f} of {n_clients:,} clients giving up"
    return _seconds(_all_connected(row))


def _seconds(est: Estimate) -> str:
    if math.isnan(est.value):
        return "never (some clients gave up)"
    return f"{est.value:.3g} s [{est.low:.3g}, {est.high:.3g}]"


# -- one candidate ------------------------------------------------------------


def _has_budget(family: str) -> bool:
    return family.endswith(BUDGET)


def _jitter(family: str) -> str:
    return family.removesuffix(BUDGET)


def make_candidate(
    family: str, params: Params, max_attempts: int
) -> tuple[Strategy, RetryBudget | None] | None:
    """The strategy and budget of a point of the family; None when it is out of range."""
    first, base, mult, cap, burst, refill = params
    if base <= 0 or first < 0 or mult < 1 or burst < 1 or refill <= 0:
        return None
    cap = max(cap, base)
    if mult <= 1.0 + 1e-9 or cap == base:
        mult, cap = 1.0, base
    kind = JITTERS[_jitter(family)]
    try:
        inner = kind(base=base, multiplier=mult, cap=cap, max_attempts=max_attempts)
        if first <= 0:
            strategy: Strategy = inner
        elif kind is CappedExponential:
            strategy = DelayedExponential(
                first_delay=first, base=base, multiplier=mult, cap=cap, max_attempts=max_attempts
            )
        else:
            strategy = FirstRetryDelay(first_delay=first, then=inner, max_attempts=max_attempts)
        budget = RetryBudget(capacity=burst, refill_per_s=refill) if _has_budget(family) else None
    except ConfigError:
        return None
    return strategy, budget


def _tidy(params: Params) -> Params:
    """Settings rounded for people: 1 ms, multipliers to 0.05, budgets to whole tokens."""
    first, base, mult, cap, burst, refill = params
    mult = 1.0 if mult < 1.025 else round(mult * 20) / 20
    return (round(first, 3), max(round(base, 3), 0.001), mult, round(cap, 3),
            float(max(1, round(burst))), float(max(1, round(refill))))  # fmt: skip


def neighbours(family: str, params: Params, step: float) -> list[Params]:
    """Each searched parameter up and down by the factor ``step`` (additive for first_delay;
    no multiplier for decorrelated jitter; the budget's two only with a budget)."""
    searched = [0, 1, 3]
    if _jitter(family) != "decorrelated":
        searched.append(2)
    if _has_budget(family):
        searched += [4, 5]
    out = []
    for i in searched:
        for up in (True, False):
            p = list(params)
            if i == 0:
                p[0] = max(0.0, p[0] + (step - 1) * (1 if up else -1) * max(p[0], 0.05))
            elif i == 2:
                p[2] = max(1.0, p[2] * step if up else p[2] / step)
            else:
                p[i] = p[i] * step if up else p[i] / step
            out.append(tuple(p))
    return out


@dataclass(frozen=True)
class _Outcome:
    """One simulated herd reduced to the search's numbers (seconds after ready)."""

    all_connected_s: float  # NaN if some client gave up
    p90_s: float
    attempts_per_client: float
    gave_up: int
    penalised: dict[str, float]


def outcome(result: SimResult, deadline: float) -> _Outcome:
    """The objective's numbers of one herd: penalised for clients that gave up."""
    s = result.settings
    after = result.connected_at - s.ready_s
    missing = np.isnan(after)
    gave_up = int(missing.sum())
    filled = np.where(missing, 2 * deadline, after)
    all_connected = float(filled.max()) + deadline * gave_up / s.n_clients
    p90 = float(np.quantile(filled, 0.9))
    return _Outcome(
        all_connected_s=math.nan if gave_up else float(after.max()),
        p90_s=float(np.quantile(after[~missing], 0.9)) if gave_up < s.n_clients else math.nan,
        attempts_per_client=len(result.attempt_time) / s.n_clients,
        gave_up=gave_up,
        penalised={"all_connected": all_connected, "p90": p90},
    )


class _Scorer:
    """Scores candidates on fixed seeds, with a cache (the search's evaluations)."""

    def __init__(
        self,
        n_clients: int,
        costs: Mapping[str, float],
        scenario: dict[str, Any],
        *,
        objective: Objective,
        weight: float,
        seeds: Sequence[int],
        max_attempts: int,
    ) -> None:
        self.n_clients, self.costs, self.scenario = n_clients, costs, scenario
        self.objective, self.weight, self.seeds = objective, weight, list(seeds)
        self.max_attempts = max_attempts
        self.cache: dict[tuple[str, Params], float] = {}
        self._settings: dict[RetryBudget | None, ContentionSettings] = {}

    def settings(self, budget: RetryBudget | None) -> ContentionSettings:
        if budget not in self._settings:
            self._settings[budget] = ContentionSettings.from_costs(
                self.costs, n_clients=self.n_clients, retry_budget=budget, **self.scenario
            )
        return self._settings[budget]

    @property
    def deadline(self) -> float:
        d = self.settings(None).deadline
        return DEFAULT_DEADLINE_S if d is None else float(d)

    def outcomes(
        self, strategy: Strategy | str, budget: RetryBudget | None, seeds: Sequence[int]
    ) -> list[_Outcome]:
        settings = self.settings(budget)
        return [
            outcome(simulate_contended(strategy, settings, seed=seed), self.deadline)
            for seed in seeds
        ]

    def __call__(self, family: str, params: Params) -> float:
        key = (family, tuple(round(p, 6) for p in params))
        if _jitter(family) == "decorrelated":
            key = (family, (*key[1][:2], 0.0, *key[1][3:]))
        if key not in self.cache:
            made = make_candidate(family, params, self.max_attempts)
            if made is None:
                self.cache[key] = math.inf
            else:
                self.cache[key] = self.objective_of(self.outcomes(*made, self.seeds))
        return self.cache[key]

    def objective_of(self, found: Sequence[_Outcome]) -> float:
        """Mean penalised objective + weight x mean attempts per client."""
        return float(
            np.mean([o.penalised[self.objective] for o in found])
            + self.weight * np.mean([o.attempts_per_client for o in found])
        )


# -- the search ---------------------------------------------------------------


def _grid(ready_s: float) -> list[tuple[str, Params]]:
    """Grid points: the named exponential strategies' own settings, and coarse ones."""
    out: list[tuple[str, Params]] = [
        ("none", (0.0, 0.1, 2.0, 5.0, 1.0, 1.0)),
        ("full", (0.0, 0.1, 2.0, 5.0, 1.0, 1.0)),
        ("equal", (0.0, 0.1, 2.0, 5.0, 1.0, 1.0)),
        ("decorrelated", (0.0, 0.1, 2.0, 5.0, 1.0, 1.0)),
    ]
    for jitter in JITTERS:
        for base in (0.01, 0.05, 0.25, 1.0):
            for cap in (0.5, 2.0, 8.0):
                for first in (0.0, ready_s):
                    out.append((jitter, (first, base, 2.0, max(cap, base), 1.0, 1.0)))
    return out


def _default_budget(n_clients: int, costs: Mapping[str, float]) -> tuple[float, float]:
    """A budget to start from: 5 % of the fleet at once, refilled at the server's capacity."""
    capacity_per_s = float(costs["cores"]) / max(float(costs["server_cpu_per_connect_s"]), 1e-6)
    return max(1.0, 0.05 * n_clients), capacity_per_s


def search(scorer: _Scorer, ready_s: float) -> tuple[float, str, Params]:
    """Grid, then compass search from the best three, and from the best with a budget."""
    scored = sorted(((scorer(f, p), f, p) for f, p in _grid(ready_s)), key=lambda x: x[0])
    best = scored[0]
    for start in scored[:3]:
        best = min(best, pattern_search(scorer, start, neighbours=neighbours), key=lambda x: x[0])
    _, family, params = best
    burst, refill = _default_budget(scorer.n_clients, scorer.costs)
    budgeted = (*params[:4], burst, refill)
    start = (scorer(family + BUDGET, budgeted), family + BUDGET, budgeted)
    with_budget = pattern_search(scorer, start, neighbours=neighbours)
    return min(best, with_budget, key=lambda x: x[0])


def _estimate(values: Sequence[float], seed: int) -> Estimate:
    if any(math.isnan(v) for v in values):
        return Estimate(math.nan, math.nan, math.nan, len(values))
    return mean_interval(values, seed=seed)


def _row(name: str, found: list[_Outcome], scorer: _Scorer) -> dict[str, Any]:
    row: dict[str, Any] = {"strategy": name, "seeds": len(found)}
    row["objective"] = scorer.objective_of(found)
    for metric in ("all_connected_s", "p90_s", "attempts_per_client"):
        est = _estimate([getattr(o, metric) for o in found], 0)
        row.update({metric: est.value, f"{metric}_low": est.low, f"{metric}_high": est.high})
    row["gave_up"] = float(np.mean([o.gave_up for o in found]))
    return row


def _check(
    n_clients: int, costs: Mapping[str, float], objective: str, weight: float, seeds: int
) -> None:
    validate.integer("n_clients", n_clients, minimum=1)
    validate.integer("seeds", seeds, minimum=1)
    validate.number("attempt_weight", weight)
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    needed = {"cores", "server_cpu_per_connect_s", "client_cpu_per_attempt_s", "connect_s",
              "refused_s"}  # fmt: skip
    if not isinstance(costs, Mapping) or needed - set(costs):
        raise ConfigError(
            f"costs must map {', '.join(sorted(needed))} (SetupCosts.to_dict()), got {costs!r}"
        )


def recommend_for_fleet(
    n_clients: int,
    costs: Mapping[str, float],
    *,
    objective: Objective = "all_connected",
    attempt_weight: float = 0.0,
    seeds: int = 3,
    search_seeds: int = 1,
    max_attempts: int = 100,
    named: Sequence[str] = NAMED,
    **scenario: Any,
) -> FleetRecommendation:
    """The schedule of the family (module docstring) that reconnects ``n_clients`` soonest.

    ``costs`` is :meth:`SetupCosts.to_dict` (or the same keys); ``attempt_weight`` is the
    seconds one attempt per client is worth; ``scenario`` goes to
    :meth:`ContentionSettings.from_costs` (``outage_s``, ``connect_timeout``, ``deadline``,
    ``max_connections``, ``client_processes``...). Every searched schedule stops after
    ``max_attempts`` tries. Deterministic.
    """
    _check(n_clients, costs, objective, attempt_weight, seeds)
    clash = sorted({"n_clients", "retry_budget"} & set(scenario))
    if clash:
        raise ConfigError(f"recommend_for_fleet sets {', '.join(clash)} itself; remove it")
    validate.integer("search_seeds", search_seeds, minimum=1)
    validate.integer("max_attempts", max_attempts, minimum=2)
    started = time.perf_counter()
    scorer = _Scorer(
        n_clients, costs, dict(scenario), objective=objective, weight=float(attempt_weight),
        seeds=range(search_seeds), max_attempts=max_attempts,
    )  # fmt: skip
    ready_s = scorer.settings(None).ready_s
    _, family, params = search(scorer, ready_s)
    made = make_candidate(family, _tidy(params), max_attempts)
    assert made is not None
    strategy, budget = made
    eval_seeds = tuple(range(EVAL_SEED0, EVAL_SEED0 + seeds))
    rows = [_row(name, scorer.outcomes(get_strategy(name), None, eval_seeds), scorer)
            for name in named]  # fmt: skip
    mine = _row("recommended", scorer.outcomes(strategy, budget, eval_seeds), scorer)
    best = min(rows, key=lambda r: r["objective"], default=None)
    if best is not None and best["objective"] < mine["objective"]:
        # the search's winner lost to a named strategy on fresh seeds: recommend that one
        strategy, budget, family = get_strategy(best["strategy"]), None, best["strategy"]
        mine = {**best, "strategy": "recommended"}
    comparison = pd.DataFrame([mine, *rows])
    first = mine
    return FleetRecommendation(
        n_clients=n_clients,
        objective=objective,
        attempt_weight=float(attempt_weight),
        strategy=strategy,
        jitter=_jitter(family),
        schedule=schedule_text(strategy),
        budget=budget,
        all_connected_s=Estimate(first["all_connected_s"], first["all_connected_s_low"],
                                 first["all_connected_s_high"], seeds),
        p90_s=Estimate(first["p90_s"], first["p90_s_low"], first["p90_s_high"], seeds),
        attempts_per_client=Estimate(first["attempts_per_client"],
                                     first["attempts_per_client_low"],
                                     first["attempts_per_client_high"], seeds),
        comparison=comparison,
        evaluated=len(scorer.cache),
        search_s=time.perf_counter() - started,
        seeds=eval_seeds,
        costs=dict(costs),
    )  # fmt: skip
