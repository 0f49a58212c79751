"""Specs of the cold-start model: predictions against analytic schedules and the retry loop; fit."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import psycopg
import pytest

from perfkit.errors import ConfigError, RetryError
from perfkit.postgres import ServerSettings
from perfkit.retry import (
    STRATEGIES,
    AttemptCosts,
    CappedExponential,
    DelayedExponential,
    FixedDelay,
    Strategy,
    connect_with_retry,
    fit,
    fit_schedule,
    predict,
    ready_time_samples,
)
from perfkit.retry.model import estimate_costs, ready_times_from_runs

FREE = AttemptCosts(refused_s=0.0, success_s=0.0)
JITTERED = [name for name, s in STRATEGIES.items() if s.delay_bounds(2)[0] != s.delay_bounds(2)[1]]
UNIFORM_BOOTS = list(np.random.default_rng(7).uniform(1.0, 1.5, 60))


def test_fixed_delay_overshoot_and_attempts_match_the_schedule_for_a_fixed_ready_time() -> None:
    # Attempts at 0, 0.5, 1.0, 1.5: the fourth is the first after 1.2.
    p = predict(FixedDelay(delay=0.5), [1.2], FREE, n=50, rng=1)
    assert p.overshoot_s == pytest.approx(np.full(50, 0.3))
    assert (p.attempts == 4).all() and p.connected.all()


@pytest.mark.parametrize(
    ("strategy", "ready", "overshoot", "attempts"),
    [
        (CappedExponential(base=0.1, multiplier=2, cap=5), 1.2, 0.3, 5),  # 0 .1 .3 .7 1.5
        (CappedExponential(base=0.1, multiplier=2, cap=0.3), 1.0, 0.2, 6),  # 0 .1 .3 .6 .9 1.2
        (DelayedExponential(first_delay=1.0, base=0.05, multiplier=1, cap=0.05), 1.12, 0.03, 5),
    ],
)
def test_deterministic_schedules_give_the_analytic_overshoot(
    strategy: Strategy, ready: float, overshoot: float, attempts: int
) -> None:
    p = predict(strategy, [ready], FREE, n=10, rng=0)
    assert p.overshoot_s == pytest.approx(np.full(10, overshoot))
    assert (p.attempts == attempts).all()


def test_refused_and_success_costs_push_later_attempts_back() -> None:
    # Attempts at 0, 0.51, 1.02, 1.53 (each refusal takes 10 ms); connected at 1.53 + 5 ms.
    costs = AttemptCosts(refused_s=0.01, success_s=0.005)
    p = predict(FixedDelay(delay=0.5), [1.2], costs, n=5, rng=0)
    assert p.overshoot_s == pytest.approx(np.full(5, 0.335))
    assert (p.attempts == 4).all()


@pytest.mark.parametrize("name", JITTERED)
def test_jittered_predictions_stay_within_the_analytic_bounds(name: str) -> None:
    strategy = STRATEGIES[name].with_(max_attempts=60)
    ready = 1.2
    lows = [strategy.total_sleep_bounds(j)[0] for j in range(60)]
    highs = [strategy.total_sleep_bounds(j)[1] for j in range(60)]
    # Attempt j + 1 starts after j sleeps: it can be the first past `ready` only if the
    # most it can have slept reaches it, and it must be once the least it can have does.
    fewest = next(j for j in range(60) if highs[j] >= ready) + 1
    most = next((j + 1 for j in range(60) if lows[j] >= ready), 60)
    p = predict(strategy, [ready], FREE, connect_timeout=None, deadline=None, n=4000, rng=3)
    assert p.connected.all()
    assert p.attempts.min() >= fewest and p.attempts.max() <= most
    assert p.overshoot_s.min() >= 0
    assert p.overshoot_s.max() <= highs[most - 1] - ready + 1e-9


def test_an_attempt_behind_the_docker_proxy_waits_for_the_boot_and_connects_at_once() -> None:
    costs = AttemptCosts.docker(success_s=0.004)
    p = predict(FixedDelay(delay=0.5), [1.2], costs, connect_timeout=2.0, n=20, rng=0)
    assert p.overshoot_s == pytest.approx(np.full(20, 0.004))
    assert (p.attempts == 1).all()


def test_a_proxied_attempt_whose_timeout_ends_before_the_boot_times_out_and_retries() -> None:
    # Attempt 1 hangs 0..1.0 and times out; sleep 0.5; attempt 2 at 1.5 waits until 1.7.
    costs = AttemptCosts.docker(success_s=0.004)
    p = predict(FixedDelay(delay=0.5), [1.7], costs, connect_timeout=1.0, n=20, rng=0)
    assert p.overshoot_s == pytest.approx(np.full(20, 0.004))
    assert (p.attempts == 2).all()


def test_only_attempts_within_the_hang_window_wait_for_the_boot() -> None:
    # Window 0.3 s before ready 1.2: attempts at 0 and 0.5 are refused, 1.0 waits.
    costs = AttemptCosts(refused_s=0.0, success_s=0.002, hang_window_s=0.3)
    p = predict(FixedDelay(delay=0.5), [1.2], costs, n=10, rng=0)
    assert p.overshoot_s == pytest.approx(np.full(10, 0.002))
    assert (p.attempts == 3).all()


def test_clients_that_run_out_of_attempts_give_up_and_pay_the_penalty() -> None:
    p = predict(FixedDelay(delay=0.1, max_attempts=3), [1.0], FREE, deadline=30.0, n=10, rng=0)
    assert not p.connected.any() and np.isnan(p.overshoot_s).all()
    assert (p.attempts == 3).all()
    assert p.objective(0.01) == pytest.approx(30.0 + 0.03)


def test_no_attempt_starts_after_the_deadline() -> None:
    p = predict(FixedDelay(delay=0.5), [5.0], FREE, deadline=1.2, n=10, rng=0)
    assert not p.connected.any()
    assert (p.attempts == 3).all()  # 0, 0.5, 1.0; the next would start at 1.5


def test_schedules_of_sub_millisecond_steps_are_walked_to_the_end() -> None:
    # 0.4 ms per attempt: about 1250 attempts, more than a 1 ms step bound allows for.
    costs = AttemptCosts(refused_s=0.0004, success_s=0.0)
    p = predict(FixedDelay(delay=0.0, max_attempts=None), [0.5], costs, deadline=2.0, n=5, rng=0)
    assert p.connected.all()
    assert set(p.attempts) <= {1251, 1252} and (p.overshoot_s < 0.0004).all()


def test_the_same_seed_gives_the_same_prediction() -> None:
    a = predict("full_jitter", UNIFORM_BOOTS, rng=11, n=2000)
    b = predict("full_jitter", UNIFORM_BOOTS, rng=11, n=2000)
    assert np.array_equal(a.overshoot_s, b.overshoot_s)
    assert np.array_equal(a.attempts, b.attempts)


def test_to_dict_has_medians_with_intervals_and_means() -> None:
    s = predict("naive", UNIFORM_BOOTS, rng=0, n=2000).to_dict()
    assert s["median_overshoot_low"] <= s["median_overshoot"] <= s["median_overshoot_high"]
    assert s["p90_attempts"] >= s["median_attempts"]
    assert 0 < s["mean_overshoot"] < 0.5 and s["success_rate"] == 1.0


def test_prediction_summary_is_a_few_lines_in_ms_with_intervals() -> None:
    p = predict("naive", UNIFORM_BOOTS, rng=0, n=2000)
    text = p.summary()
    lines = text.splitlines()
    assert len(lines) <= 5 and lines[0].startswith("naive: 2,000 simulated clients")
    o = p.median_overshoot
    whole_ms = f"median {o.value * 1000:.0f} ms [{o.low * 1000:.0f}, {o.high * 1000:.0f}]"
    assert whole_ms in text  # rounded to whole ms, with its interval
    assert f"attempts: median {p.median_attempts.value:g}" in text
    assert "connected: 100.0%" in text
    overshoot_line = text.split("overshoot after ready:")[1].splitlines()[0]
    assert "0." not in overshoot_line  # no raw seconds


def test_fit_summary_names_the_schedule_the_cap_and_the_prediction() -> None:
    result = fit(UNIFORM_BOOTS, rng=0, search_n=500, n=1000)
    text = result.summary()
    assert text.startswith(f"fitted schedule ({result.family}): ")
    assert f"at most {result.strategy.max_attempts:,} attempts" in text
    assert "fit in the 60 s deadline" in text and "overshoot after ready: median" in text
    row = result.to_dict()
    assert row["max_attempts"] == result.strategy.max_attempts
    assert row["median_overshoot"] == result.prediction.median_overshoot.value
    assert row["cap_reason"] in text


def test_fit_caps_max_attempts_asked_for_at_what_fits_in_the_deadline() -> None:
    allowed = fit(UNIFORM_BOOTS, rng=0, search_n=500, n=1000, deadline=10.0)
    capped = fit(UNIFORM_BOOTS, rng=0, search_n=500, n=1000, deadline=10.0, max_attempts=4080)
    assert allowed.strategy.max_attempts is not None
    if capped.strategy == allowed.strategy.with_(max_attempts=capped.strategy.max_attempts):
        assert capped.strategy.max_attempts == allowed.strategy.max_attempts < 4080
    assert capped.strategy.max_attempts is not None and capped.strategy.max_attempts < 4080
    assert "the 4,080 asked for would not fit" in capped.cap_reason
    assert "10 s deadline" in capped.cap_reason


def test_fit_keeps_a_max_attempts_that_fits_and_says_so() -> None:
    result = fit(UNIFORM_BOOTS, rng=0, search_n=500, n=1000, max_attempts=6)
    assert result.strategy.max_attempts == 6
    assert result.cap_reason.startswith("max_attempts=6 as asked (the 60 s deadline would allow")


# -- the model against the real retry loop (fake clock, fake server) -----------------


class FakeBoot:
    """Refuses until ``ready`` (or holds attempts, as a proxy does), on a fake clock."""

    def __init__(self, ready: float, costs: AttemptCosts) -> None:
        self.now = 0.0
        self.ready = ready
        self.costs = costs

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def connect(self, dsn: str, **kwargs: Any) -> Any:
        start, c = self.now, self.costs
        timeout = kwargs.get("connect_timeout") or math.inf
        if start < self.ready - c.hang_window_s:
            self.now += c.refused_s
            raise psycopg.OperationalError("connection refused")
        done = max(start, self.ready) + c.success_s
        if done > start + timeout:
            self.now = start + timeout
            raise psycopg.errors.ConnectionTimeout("connection timeout expired")
        self.now = done
        return _FakeConnection()


class _FakeConnection:
    def close(self) -> None:
        pass


def run_real_loop(
    monkeypatch: pytest.MonkeyPatch,
    strategy: Strategy,
    ready: float,
    costs: AttemptCosts,
    seed: int,
    connect_timeout: float | None = None,
) -> tuple[float, int]:
    """(overshoot, attempts) of connect_with_retry against a FakeBoot; NaN if it gave up."""
    boot = FakeBoot(ready, costs)
    monkeypatch.setattr(psycopg, "connect", boot.connect)
    try:
        conn, trace = connect_with_retry(
            "postgresql://u@127.0.0.1:1/d",
            strategy,
            clock=boot.clock,
            sleep=boot.sleep,
            rng=random.Random(seed),
            connect_timeout=connect_timeout,
            deadline=60.0,
        )
    except RetryError as exc:
        return math.nan, exc.trace.n_attempts
    conn.close()
    assert trace.connected_at is not None
    return trace.connected_at - ready, trace.n_attempts


@pytest.mark.parametrize(
    ("strategy", "costs"),
    [
        (FixedDelay(delay=0.5), AttemptCosts(refused_s=0.002, success_s=0.004)),
        (CappedExponential(base=0.1, multiplier=2, cap=5), AttemptCosts(refused_s=0.01)),
        (DelayedExponential(first_delay=0.9, base=0.04, multiplier=1.5, cap=0.2), FREE),  # gives up
        (FixedDelay(delay=0.25, max_attempts=8), AttemptCosts(refused_s=0.002)),
        (FixedDelay(delay=0.3), AttemptCosts.docker(success_s=0.004)),
    ],
)
def test_predictions_of_deterministic_schedules_equal_the_real_retry_loop(
    monkeypatch: pytest.MonkeyPatch, strategy: Strategy, costs: AttemptCosts
) -> None:
    for ready in (0.0, 0.05, 0.31, 1.2, 1.47, 2.5, 3.3):
        real = run_real_loop(monkeypatch, strategy, ready, costs, seed=0, connect_timeout=2)
        p = predict(strategy, [ready], costs, connect_timeout=2, deadline=60.0, n=3, rng=0)
        assert p.overshoot_s[0] == pytest.approx(real[0], abs=1e-9, nan_ok=True), ready
        assert p.attempts[0] == real[1], ready


@pytest.mark.parametrize("name", ["full_jitter", "decorrelated_jitter", "review"])
def test_predicted_jitter_distribution_matches_the_real_retry_loop(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    strategy = STRATEGIES[name].with_(max_attempts=40)
    costs = AttemptCosts(refused_s=0.001, success_s=0.003)
    boots = random.Random(4)
    readies = [boots.uniform(0.5, 1.5) for _ in range(400)]
    real = np.array(
        [run_real_loop(monkeypatch, strategy, r, costs, seed=i) for i, r in enumerate(readies)]
    )
    p = predict(strategy, readies, costs, connect_timeout=None, n=20_000, rng=5, bandwidth=0.0)
    assert not np.isnan(real).any() and p.connected.all()
    for column, predicted in ((0, p.overshoot_s), (1, p.attempts.astype(float))):
        se = real[:, column].std() / math.sqrt(len(real))
        assert abs(real[:, column].mean() - predicted.mean()) < 4 * se + 1e-9


def test_a_fitted_schedule_drives_the_real_retry_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    strategy = fit_schedule(UNIFORM_BOOTS, rng=0, search_n=500, n=500)
    overshoot, attempts = run_real_loop(monkeypatch, strategy, 1.3, FREE, seed=0)
    assert 0 <= overshoot <= 0.2 and attempts <= 15


# -- fitting ------------------------------------------------------------------------------


def test_fitted_schedule_beats_every_named_strategy_on_the_objective() -> None:
    costs = AttemptCosts(refused_s=0.0005, success_s=0.003)
    result = fit(UNIFORM_BOOTS, costs=costs, weight_attempts=0.01, rng=2, n=5000)
    for name, strategy in STRATEGIES.items():
        other = predict(strategy, UNIFORM_BOOTS, costs, n=5000, rng=2).objective(0.01)
        assert result.objective < other, name


def test_fitted_schedule_meets_50_ms_median_overshoot_within_15_attempts() -> None:
    result = fit(UNIFORM_BOOTS, weight_attempts=0.01, rng=0)
    p = result.prediction
    assert p.median_overshoot.value <= 0.050
    assert p.p90_attempts.value <= 15 and p.success_rate == 1.0


def test_fit_schedule_returns_a_strategy_with_attempts_enough_for_the_deadline() -> None:
    strategy = fit_schedule(UNIFORM_BOOTS, rng=0, search_n=500, n=500, deadline=10.0)
    assert isinstance(strategy, Strategy) and strategy.max_attempts is not None
    assert strategy.total_sleep_bounds(strategy.max_attempts - 1)[1] >= 10.0 - 1.0


def test_fit_is_deterministic_for_a_seed() -> None:
    a = fit(UNIFORM_BOOTS, rng=9, search_n=500, n=1000)
    b = fit(UNIFORM_BOOTS, rng=9, search_n=500, n=1000)
    assert a.strategy == b.strategy and a.objective == b.objective


def test_max_attempts_bounds_the_fitted_schedule() -> None:
    result = fit(UNIFORM_BOOTS, rng=0, search_n=500, n=1000, max_attempts=6)
    assert result.strategy.max_attempts == 6
    assert result.prediction.attempts.max() <= 6


# -- measured inputs ----------------------------------------------------------------------


def _lab_frames() -> tuple[Any, Any]:
    import pandas as pd

    keys = {"scenario": "cold_start", "param_s": None}
    rows = [  # rep, label, start after the event, duration, outcome
        (0, "a", 0.0, 0.001, "error"),
        (0, "a", 0.3, 0.002, "error"),
        (0, "a", 0.6, 0.41, "ok"),  # held by the proxy from 0.6 until ready at 1.0
        (0, "b", 0.0, 0.003, "error"),
        (0, "b", 1.1, 0.005, "ok"),
        (1, "a", 0.0, 2.0, "timeout"),  # held from 0.0, ready at 2.0
        (1, "a", 2.5, 0.007, "ok"),
    ]
    attempts = pd.DataFrame(
        [
            {**keys, "rep": r, "label": lb, "t_event_s": t, "duration_s": d, "outcome": o}
            for r, lb, t, d, o in rows
        ]
    )
    runs = pd.DataFrame(
        [
            {**keys, "rep": 0, "label": "a", "ready_after_event_s": 1.0},
            {**keys, "rep": 0, "label": "b", "ready_after_event_s": 1.0},
            {**keys, "rep": 1, "label": "a", "ready_after_event_s": 2.0},
        ]
    )
    return attempts, runs


def test_estimate_costs_reads_refusals_successes_and_the_hang_window_from_the_lab_frames() -> None:
    attempts, runs = _lab_frames()
    costs = estimate_costs(attempts, runs)
    assert costs.refused_s == pytest.approx(0.002)  # median of 1, 2, 3 ms
    assert costs.success_s == pytest.approx(0.006)  # median of 5, 7 ms (after ready)
    assert costs.hang_window_s == pytest.approx(1.2)  # median of 0.4 and 2.0


def test_estimate_costs_without_ready_times_is_a_config_error() -> None:
    attempts, _ = _lab_frames()
    with pytest.raises(ConfigError, match="ready_after_event_s"):
        estimate_costs(attempts)


def test_ready_times_from_runs_gives_one_value_per_boot() -> None:
    _, runs = _lab_frames()
    assert list(ready_times_from_runs(runs)) == [1.0, 2.0]


def test_ready_time_samples_measures_each_boot_of_a_local_server() -> None:
    times = ready_time_samples(2, settings=ServerSettings(backend="local"))
    assert times.shape == (2,)
    assert ((times > 0) & (times < 60)).all()


# -- bad arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ready_times": []},
        {"ready_times": [-1.0]},
        {"ready_times": [float("nan")]},
        {"n": 0},
        {"connect_timeout": 0},
        {"deadline": -1.0},
        {"strategy": "nope"},
        {"rng": "seed"},
        {"bandwidth": -0.1},
        {"costs": "free"},
        {"strategy": FixedDelay(max_attempts=None), "deadline": None},
    ],
)
def test_bad_predict_arguments_raise_config_error(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"strategy": "naive", "ready_times": [1.0], **kwargs}
    with pytest.raises(ConfigError):
        predict(args.pop("strategy"), args.pop("ready_times"), **args)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"refused_s": -0.1},
        {"success_s": float("inf")},
        {"hang_window_s": float("nan")},
        {"hang_window_s": True},
    ],
)
def test_bad_attempt_costs_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        AttemptCosts(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight_attempts": -1.0},
        {"families": ("bogus",)},
        {"families": "fixed"},
        {"max_attempts": 0},
        {"max_attempts": None, "deadline": None},
        {"search_n": 0},
    ],
)
def test_bad_fit_arguments_raise_config_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        fit([1.0, 1.2], **kwargs)
