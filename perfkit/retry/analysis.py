"""Worst cases of a strategy, without a server: how long can a retrying connect take?

Two failure modes bound the cost of giving up:

- ``refused``: every attempt fails at once (server down): total = the sleeps;
- ``hang``: every attempt runs into its connect timeout (server frozen or a
  black-holed address): total = sleeps + the timeouts.

:func:`worst_case` gives exact bounds over all jitter outcomes where a closed
form is easy (no deadline: per-delay bounds sum exactly, Polly V2's sum
telescopes) and the min/median/max of a seeded sample of complete runs of the
real :class:`~perfkit.retry.planner.RetryPlanner` on a fake clock (so the
deadline, gRPC's deadline scheduling and its own timeouts are honoured).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from perfkit.errors import ConfigError
from perfkit.retry.planner import AttemptPlan, GiveUp, RetryPlanner
from perfkit.retry.strategies import Strategy, get_strategy

Scenario = Literal["refused", "hang"]

#: The review's claim for its two loops: "15 s -> 500 ms worst case".
REVIEW_CLAIM_S = {"naive": 15.0, "review": 0.5}


def run_all_failing(
    strategy: Strategy,
    *,
    rng: random.Random,
    scenario: Scenario,
    connect_timeout: float | None,
    deadline: float | None = None,
) -> dict[str, float]:
    """One complete give-up run on a fake clock: attempts, total sleep, total time."""
    if strategy.max_attempts is None and deadline is None:
        raise ConfigError(
            f"{type(strategy).__name__} has no max_attempts: give a deadline to bound it"
        )
    if (
        scenario == "hang"
        and connect_timeout is None
        and strategy.attempt_timeout(1, 0.0, None) is None
    ):
        raise ConfigError("connect_timeout is None: a hang never ends (give a connect_timeout)")
    now = 0.0
    planner = RetryPlanner(
        strategy, rng=rng, start=now, connect_timeout=connect_timeout, deadline=deadline
    )
    sleep_total = 0.0
    while True:
        plan = planner.begin(now)
        if isinstance(plan, GiveUp):
            break
        assert isinstance(plan, AttemptPlan)
        if scenario == "hang" and plan.timeout is not None:
            now += plan.timeout
        decision = planner.after_failure(now)
        if isinstance(decision, GiveUp):
            break
        sleep_total += decision.seconds
        now += decision.seconds
    return {"attempts": planner.attempts, "sleep_s": sleep_total, "total_s": now}


def _exact_bounds(
    strategy: Strategy,
    scenario: Scenario,
    connect_timeout: float | None,
    deadline: float | None,
) -> dict[str, float]:
    """Exact (min, max) of total sleep and time, where the closed form is easy."""
    nan = {
        "sleep_min_exact": math.nan,
        "sleep_max_exact": math.nan,
        "total_min_exact": math.nan,
        "total_max_exact": math.nan,
    }
    if strategy.max_attempts is None:
        return nan
    n = strategy.max_attempts
    lo, hi = strategy.total_sleep_bounds(n - 1)
    if strategy.anchor == "attempt_start":
        # gRPC: attempt k may take max(backoff_k, MIN_CONNECT_TIMEOUT); after a
        # hang the next attempt starts at once; after a refusal at backoff_k.
        if scenario == "refused":
            t_lo, t_hi = lo, hi
        else:
            bounds = [strategy.delay_bounds(k) for k in range(1, n + 1)]
            t_lo = math.fsum(
                strategy.attempt_timeout(k, b[0], connect_timeout) or 0.0
                for k, b in enumerate(bounds, 1)
            )
            t_hi = math.fsum(
                strategy.attempt_timeout(k, b[1], connect_timeout) or 0.0
                for k, b in enumerate(bounds, 1)
            )
            lo = hi = 0.0
    else:
        per_attempt = 0.0 if scenario == "refused" else float(connect_timeout or 0.0)
        t_lo, t_hi = lo + n * per_attempt, hi + n * per_attempt
    if deadline is not None:
        # A run that would outlast the deadline ends exactly at it.
        t_lo, t_hi = min(t_lo, deadline), min(t_hi, deadline)
        if scenario == "hang" or t_hi >= deadline:
            return {**nan, "total_min_exact": t_lo, "total_max_exact": t_hi}
    return {
        "sleep_min_exact": lo,
        "sleep_max_exact": hi,
        "total_min_exact": t_lo,
        "total_max_exact": t_hi,
    }


def worst_case(
    strategy: Strategy | str,
    *,
    scenario: Scenario = "refused",
    connect_timeout: float | None = None,
    deadline: float | None = None,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Give-up cost of ``strategy``: exact bounds plus min/median/max of ``samples`` runs."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if samples < 1:
        raise ConfigError(f"samples must be >= 1, got {samples!r}")
    master = random.Random(seed)
    runs = [
        run_all_failing(
            strat,
            rng=random.Random(master.getrandbits(64)),
            scenario=scenario,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )
        for _ in range(samples)
    ]
    frame = pd.DataFrame(runs)
    out: dict[str, Any] = {
        "strategy": strategy if isinstance(strategy, str) else strat.kind,
        "kind": strat.kind,
        "scenario": scenario,
        "connect_timeout_s": connect_timeout,
        "deadline_s": deadline,
        "max_attempts": strat.max_attempts,
        "attempts_median": float(frame["attempts"].median()),
    }
    for col, label in (("sleep_s", "sleep"), ("total_s", "total")):
        out[f"{label}_min"] = float(frame[col].min())
        out[f"{label}_median"] = float(frame[col].median())
        out[f"{label}_max"] = float(frame[col].max())
    out.update(_exact_bounds(strat, scenario, connect_timeout, deadline))
    out["exact_is_tight"] = strat.bounds_are_tight
    return out


def worst_case_table(
    strategies: Sequence[str] | Mapping[str, Strategy],
    *,
    connect_timeout: float | None = 2.0,
    deadline: float | None = None,
    samples: int = 2000,
    seed: int = 0,
    scenarios: tuple[Scenario, ...] = ("refused", "hang"),
) -> pd.DataFrame:
    """:func:`worst_case` for each strategy and scenario, one row each.

    Unbounded strategies (gRPC) need a ``deadline``; without one they get
    ``deadline = 120 s`` here so their row still says something, and the
    column ``deadline_s`` shows it.
    """
    named = (
        dict(strategies)
        if isinstance(strategies, Mapping)
        else {name: get_strategy(name) for name in strategies}
    )
    rows = []
    for name, strat in named.items():
        limit = deadline if deadline is not None or strat.max_attempts else 120.0
        for scenario in scenarios:
            row = worst_case(
                strat,
                scenario=scenario,
                connect_timeout=connect_timeout,
                deadline=limit,
                samples=samples,
                seed=seed,
            )
            row["strategy"] = name
            rows.append(row)
    return pd.DataFrame(rows)


def review_claim(
    *, connect_timeout: float | None = 2.0, samples: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """The review's "15 s -> 500 ms worst case" against what its two loops really do."""
    rows = []
    for name, claim in REVIEW_CLAIM_S.items():
        strat = get_strategy(name)
        n = strat.max_attempts or 0
        no_jitter = math.fsum(strat.delay_bounds(k)[0] for k in range(1, n))
        for scenario in ("refused", "hang"):
            wc = worst_case(
                strat,
                scenario=scenario,
                connect_timeout=connect_timeout,
                samples=samples,
                seed=seed,
            )
            rows.append(
                {
                    "strategy": name,
                    "scenario": scenario,
                    "claimed_worst_s": claim,
                    "attempts": n,
                    "sleeps": n - 1,
                    "sleep_without_jitter_s": no_jitter,
                    "sleep_max_exact_s": wc["sleep_max_exact"],
                    "total_median_s": wc["total_median"],
                    "total_max_exact_s": wc["total_max_exact"],
                    "connect_timeout_s": connect_timeout,
                    "claim_ratio": wc["total_max_exact"] / claim,
                }
            )
    return pd.DataFrame(rows)


def delay_envelope(strategy: Strategy | str, *, n: int = 10) -> pd.DataFrame:
    """Per-delay exact bounds (k, min, max) for plotting the envelope."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    rows = [
        {"k": k, "min_s": b[0], "max_s": b[1]}
        for k in range(1, n + 1)
        for b in [strat.delay_bounds(k)]
    ]
    return pd.DataFrame(rows)


def sampled_delays(strategy: Strategy | str, *, n: int, k: int, seed: int = 0) -> np.ndarray:
    """``(n, k)`` sampled delays (numpy, vectorised) for histograms."""
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    return strat.sample(np.random.default_rng(seed), n, k)
