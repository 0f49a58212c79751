"""Specs of the retry planner's stop conditions, on a fake clock (no sleeping)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfkit.errors import ConfigError
from perfkit.retry import STRATEGIES, GiveUp, RetryPlanner, RetryTokenBucket, get_strategy
from perfkit.retry.planner import AttemptPlan, Sleep


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(planner: RetryPlanner, clock: FakeClock, attempt_cost: float = 0.0) -> list[object]:
    """Drive the planner with every attempt failing; return its decisions."""
    events: list[object] = []
    while True:
        plan = planner.begin(clock.now)
        events.append(plan)
        if isinstance(plan, GiveUp):
            return events
        clock.now += min(attempt_cost, plan.timeout) if plan.timeout is not None else attempt_cost
        decision = planner.after_failure(clock.now)
        events.append(decision)
        if isinstance(decision, GiveUp):
            return events
        clock.now += decision.seconds


def test_gives_up_after_max_attempts_without_a_final_sleep() -> None:
    clock = FakeClock()
    events = run(RetryPlanner(get_strategy("review"), rng=random.Random(0), start=0.0), clock)
    plans = [e for e in events if isinstance(e, AttemptPlan)]
    sleeps = [e for e in events if isinstance(e, Sleep)]
    assert len(plans) == 10 and len(sleeps) == 9
    assert events[-1] == GiveUp(reason="max_attempts")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@given(
    seed=st.integers(0, 2**32),
    deadline=st.floats(0.01, 60.0),
    cost=st.floats(0.0, 3.0),
    connect_timeout=st.one_of(st.none(), st.floats(0.05, 5.0)),
)
@settings(max_examples=40, deadline=None)
def test_deadline_is_never_exceeded_and_no_attempt_starts_after_it(
    name: str, seed: int, deadline: float, cost: float, connect_timeout: float | None
) -> None:
    clock = FakeClock()
    planner = RetryPlanner(
        STRATEGIES[name],
        rng=random.Random(seed),
        start=0.0,
        connect_timeout=connect_timeout,
        deadline=deadline,
    )
    starts: list[float] = []
    while True:
        plan = planner.begin(clock.now)
        if isinstance(plan, GiveUp):
            break
        starts.append(clock.now)
        assert plan.timeout is not None and clock.now + plan.timeout <= deadline + 1e-9
        clock.now += min(cost, plan.timeout)
        decision = planner.after_failure(clock.now)
        if isinstance(decision, GiveUp):
            break
        clock.now += decision.seconds
    assert clock.now <= deadline + 1e-9
    assert all(s < deadline for s in starts)


def test_a_sleep_crossing_the_deadline_is_truncated_and_then_the_planner_gives_up() -> None:
    clock = FakeClock()
    planner = RetryPlanner(get_strategy("naive"), rng=random.Random(0), start=0.0, deadline=1.2)
    events = run(planner, clock)
    sleeps = [e for e in events if isinstance(e, Sleep)]
    assert [s.seconds for s in sleeps] == pytest.approx([0.5, 0.5, 0.2])
    assert sleeps[-1].truncated and sleeps[-1].planned == 0.5
    assert events[-1] == GiveUp(reason="deadline")
    assert clock.now == pytest.approx(1.2)


def test_connect_timeout_is_cut_to_the_time_left_before_the_deadline() -> None:
    planner = RetryPlanner(
        get_strategy("naive"), rng=random.Random(0), start=10.0, connect_timeout=5.0, deadline=3.0
    )
    plan = planner.begin(11.0)
    assert isinstance(plan, AttemptPlan) and plan.timeout == pytest.approx(2.0)


def test_without_deadline_the_callers_connect_timeout_is_used() -> None:
    planner = RetryPlanner(
        get_strategy("naive"), rng=random.Random(0), start=0.0, connect_timeout=1.5
    )
    plan = planner.begin(0.0)
    assert isinstance(plan, AttemptPlan) and plan.timeout == 1.5


def test_grpc_next_attempt_starts_backoff_after_the_previous_attempt_started() -> None:
    planner = RetryPlanner(get_strategy("grpc"), rng=random.Random(0), start=0.0)
    plan = planner.begin(0.0)
    assert isinstance(plan, AttemptPlan) and plan.timeout == 20.0
    decision = planner.after_failure(0.3)  # the refusal took 0.3 s of the 1 s backoff
    assert isinstance(decision, Sleep) and decision.seconds == pytest.approx(0.7)


def test_grpc_retries_at_once_when_the_attempt_outlasted_its_backoff() -> None:
    planner = RetryPlanner(get_strategy("grpc"), rng=random.Random(0), start=0.0)
    planner.begin(0.0)
    decision = planner.after_failure(20.0)
    assert isinstance(decision, Sleep) and decision.seconds == 0.0


def test_token_bucket_refusal_makes_the_planner_give_up() -> None:
    clock = FakeClock()
    bucket = RetryTokenBucket(capacity=2, refill_per_s=0.001, clock=clock)
    events = run(
        RetryPlanner(get_strategy("naive"), rng=random.Random(0), start=0.0, token_bucket=bucket),
        clock,
    )
    assert events[-1] == GiveUp(reason="token_bucket")
    assert sum(isinstance(e, AttemptPlan) for e in events) == 3  # first try + 2 retries with tokens


def test_waiting_token_bucket_stretches_sleeps_to_the_refill_rate() -> None:
    clock = FakeClock()
    bucket = RetryTokenBucket(capacity=1, refill_per_s=1.0, on_empty="wait", clock=clock, initial=0)
    planner = RetryPlanner(
        get_strategy("naive", max_attempts=4), rng=random.Random(0), start=0.0, token_bucket=bucket
    )
    events = run(planner, clock)
    sleeps = [e.seconds for e in events if isinstance(e, Sleep)]
    assert sleeps == pytest.approx([1.0, 1.0, 1.0])  # 0.5 s planned, 1 token/s allowed


def test_one_token_bucket_is_shared_by_many_planners() -> None:
    clock = FakeClock()
    bucket = RetryTokenBucket(capacity=3, refill_per_s=0.001, clock=clock)
    outcomes = []
    for seed in range(5):
        planner = RetryPlanner(
            get_strategy("naive"), rng=random.Random(seed), start=0.0, token_bucket=bucket
        )
        planner.begin(0.0)
        outcomes.append(planner.after_failure(0.0))
    assert [isinstance(o, Sleep) for o in outcomes] == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("field", "value"),
    [("connect_timeout", 0), ("deadline", -1.0), ("deadline", float("inf")), ("deadline", True)],
)
def test_bad_stop_settings_are_config_errors_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryPlanner(get_strategy("naive"), rng=random.Random(0), start=0.0, **{field: value})
