"""A cold-start model: predict a strategy's overshoot from measured ready times, and fit one.

Real cold-start runs rank strategies differently from run to run because a
client's overshoot (connected minus ready) is decided by where the boot lands
in its schedule. The model separates the two: measure the ready-time
distribution once (cheap: :func:`perfkit.retry.readiness.ready_time_samples`,
or the probe's ``ready_after_event_s`` of past runs), measure what an attempt
costs (:func:`estimate_costs`), then integrate over both by Monte Carlo.

One simulated client starts at ``t = 0`` against a server ready at ``R``
(resampled from the measured ready times, optionally smoothed) and walks its
schedule as :class:`~perfkit.retry.planner.RetryPlanner` does:

- an attempt at ``t >= R`` connects at ``t + success_s``;
- an attempt at ``t < R`` is refused after ``refused_s``, except within
  ``hang_window_s`` before ``R`` (Docker's port proxy accepts the TCP
  connection and holds it while PostgreSQL boots): then it connects at
  ``R + success_s`` if that is within its connect timeout, else it times out;
- after a failure the client sleeps its next delay (from the end of the
  attempt, or from its start for gRPC), within ``max_attempts`` and the
  ``deadline`` (no attempt starts after it, timeouts are cut to it).

Clients are simulated together, one attempt column at a time (numpy), so
10,000 clients of every named strategy take well under a second.
:func:`fit_schedule` searches fixed, capped exponential and delayed
exponential schedules for the least ``E[overshoot] + lambda * E[attempts]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.retry.strategies import (
    CappedExponential,
    DelayedExponential,
    FixedDelay,
    FullJitter,
    Strategy,
    get_strategy,
    strategy_name,
)
from perfkit.stats import Estimate, quantile_interval

#: Most attempt columns one prediction simulates (a zero-delay strategy is cut here).
MAX_ATTEMPTS = 5000
#: Smallest step assumed when bounding the number of attempts a client can make.
_MIN_STEP_S = 1e-3
#: Bootstrap resamples of the Monte Carlo intervals (their width is the simulation's error).
INTERVAL_RESAMPLES = 400
FAMILIES = ("fixed", "exponential", "delayed", "full_jitter")
DEFAULT_FAMILIES = ("fixed", "exponential", "delayed")

RngLike = np.random.Generator | int | None


def _rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ConfigError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")


def _optional_positive(label: str, value: float | None) -> float:
    """``value`` > 0 as a float, ``None`` as infinity."""
    return math.inf if value is None else validate.number(label, value, strict=True)


@dataclass(frozen=True, kw_only=True)
class AttemptCosts:
    """What one connection attempt costs the client, in seconds (see the module docstring).

    ``hang_window_s`` is 0 for a local server (attempts before ready are
    refused) and ``math.inf`` behind Docker's port proxy when every attempt
    made during the boot waits for the server.
    """

    refused_s: float = 0.0003
    success_s: float = 0.003
    hang_window_s: float = 0.0

    def __post_init__(self) -> None:
        validate.number("AttemptCosts.refused_s", self.refused_s)
        validate.number("AttemptCosts.success_s", self.success_s)
        h = self.hang_window_s
        if isinstance(h, bool) or not isinstance(h, int | float) or math.isnan(h) or h < 0:
            raise ConfigError(f"AttemptCosts.hang_window_s must be >= 0 (or inf), got {h!r}")

    @classmethod
    def docker(cls, *, refused_s: float = 0.0003, success_s: float = 0.003) -> AttemptCosts:
        """Costs behind Docker's port proxy: every attempt during the boot hangs."""
        return cls(refused_s=refused_s, success_s=success_s, hang_window_s=math.inf)


def _with_ready(attempts: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    if "ready_after_event_s" in attempts.columns:
        return attempts
    if runs is None or "ready_after_event_s" not in runs.columns:
        raise ConfigError(
            "estimate_costs needs each attempt's ready time: give the runs frame of the same "
            "experiment (column ready_after_event_s) or add that column to the attempts"
        )
    keys = [c for c in ("scenario", "rep", "label", "param_s") if c in attempts and c in runs]
    if not keys:
        raise ConfigError("attempts and runs share none of scenario, rep, label, param_s")
    ready = runs[[*keys, "ready_after_event_s"]].drop_duplicates(keys)
    return attempts.merge(ready, on=keys, how="left")


def estimate_costs(
    attempts: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    *,
    default: AttemptCosts | None = None,
) -> AttemptCosts:
    """Per-attempt costs from a lab's ``attempts`` frame (see :mod:`perfkit.retry.experiments`).

    Uses ``t_event_s`` (start relative to the event), ``duration_s`` and
    ``outcome`` of each attempt and the run's ``ready_after_event_s`` (a column
    of ``attempts`` or taken from ``runs``):

    - ``refused_s``: median duration of failed (``error``) attempts before ready;
    - ``success_s``: median duration of ``ok`` attempts started at or after ready;
    - ``hang_window_s``: median over runs of ready minus the earliest attempt
      that started after the event and before ready but did not fail at once
      (it hung, then timed out or connected); 0 when none did.

    Quantities with no matching attempts keep ``default``'s value.
    """
    base = default if default is not None else AttemptCosts()
    needed = {"t_event_s", "duration_s", "outcome"}
    missing = needed - set(attempts.columns)
    if missing:
        raise ConfigError(f"estimate_costs: the attempts frame lacks {sorted(missing)}")
    if attempts.empty:
        return base
    df = _with_ready(attempts, runs)
    df = df[df["ready_after_event_s"].notna()]
    before = df["t_event_s"] < df["ready_after_event_s"]
    refused = df.loc[before & (df["outcome"] == "error"), "duration_s"]
    success = df.loc[~before & (df["outcome"] == "ok"), "duration_s"]
    hung = df[before & (df["outcome"] != "error") & (df["t_event_s"] >= 0)]
    hang = base.hang_window_s
    if len(hung):
        keys = [c for c in ("scenario", "rep", "label", "param_s") if c in hung.columns]
        per_run = hung.groupby(keys, dropna=False).agg(
            first=("t_event_s", "min"), ready=("ready_after_event_s", "first")
        )
        hang = float((per_run["ready"] - per_run["first"]).median())
    return AttemptCosts(
        refused_s=float(refused.median()) if len(refused) else base.refused_s,
        success_s=float(success.median()) if len(success) else base.success_s,
        hang_window_s=hang,
    )


def ready_times_from_runs(runs: pd.DataFrame, scenario: str = "cold_start") -> np.ndarray:
    """The probe's ready times (s after the event) of a lab's ``runs`` frame, one per boot."""
    if "ready_after_event_s" not in runs.columns or "scenario" not in runs.columns:
        raise ConfigError("runs frame lacks the scenario / ready_after_event_s columns")
    rows = runs[runs["scenario"] == scenario]
    keys = [c for c in ("scenario", "rep", "param_s") if c in rows.columns]
    boots = rows.drop_duplicates(keys)["ready_after_event_s"].dropna()
    return boots.to_numpy(dtype=float)


# -- prediction ---------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class Prediction:
    """Simulated clients of one strategy: per-client arrays and their summaries.

    ``overshoot_s`` is NaN for clients that gave up. Intervals are
    percentile-bootstrap intervals of the simulated sample (its Monte Carlo
    error, not the uncertainty of the measured ready times).
    """

    strategy: str
    ready_s: np.ndarray
    overshoot_s: np.ndarray
    attempts: np.ndarray
    connected: np.ndarray
    give_up_penalty_s: float
    seed: int = 0

    @property
    def n(self) -> int:
        return int(self.attempts.size)

    @property
    def success_rate(self) -> float:
        return float(self.connected.mean()) if self.n else math.nan

    def _connected_overshoot(self) -> np.ndarray:
        return self.overshoot_s[self.connected]

    def overshoot_quantile(self, q: float) -> Estimate:
        return quantile_interval(
            self._connected_overshoot(), q, resamples=INTERVAL_RESAMPLES, seed=self.seed
        )

    def attempts_quantile(self, q: float) -> Estimate:
        return quantile_interval(
            self.attempts.astype(float), q, resamples=INTERVAL_RESAMPLES, seed=self.seed
        )

    @cached_property
    def median_overshoot(self) -> Estimate:
        return self.overshoot_quantile(0.5)

    @cached_property
    def p90_overshoot(self) -> Estimate:
        return self.overshoot_quantile(0.9)

    @cached_property
    def median_attempts(self) -> Estimate:
        return self.attempts_quantile(0.5)

    @cached_property
    def p90_attempts(self) -> Estimate:
        return self.attempts_quantile(0.9)

    @property
    def mean_overshoot(self) -> float:
        values = self._connected_overshoot()
        return float(values.mean()) if values.size else math.nan

    @property
    def mean_attempts(self) -> float:
        return float(self.attempts.mean()) if self.n else math.nan

    def objective(self, weight_attempts: float) -> float:
        """``E[overshoot] + weight * E[attempts]``; a client that gave up counts the penalty."""
        cost = np.where(self.connected, self.overshoot_s, self.give_up_penalty_s)
        return float(cost.mean() + weight_attempts * self.attempts.mean())

    def summary(self) -> str:
        """A few lines for people: overshoot in ms and attempts, medians [95 % intervals]."""
        gave_up = int(self.n - self.connected.sum())
        return "\n".join(
            [
                f"{self.strategy}: {self.n:,} simulated clients against the measured ready times",
                f"  overshoot after ready: median {_ms(self.median_overshoot)}, "
                f"p90 {_ms(self.p90_overshoot)}",
                f"  attempts: median {_count(self.median_attempts)}, "
                f"p90 {_count(self.p90_attempts)}",
                f"  connected: {self.success_rate:.1%}"
                + (f" ({gave_up:,} gave up before the deadline)" if gave_up else ""),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        """Flat numbers (seconds, attempts) for a table row."""
        out: dict[str, Any] = {"strategy": self.strategy, "n": self.n}
        for name in ("median_overshoot", "p90_overshoot", "median_attempts", "p90_attempts"):
            est: Estimate = getattr(self, name)
            out[name] = est.value
            out[f"{name}_low"] = est.low
            out[f"{name}_high"] = est.high
        out["mean_overshoot"] = self.mean_overshoot
        out["mean_attempts"] = self.mean_attempts
        out["success_rate"] = self.success_rate
        return out


def _ms(est: Estimate) -> str:
    """``62 ms [58, 66]`` (whole ms from 10 ms, one decimal below) or ``2.11 s [1.97, 2.2]``."""
    if math.isnan(est.value):
        return "n/a (no client connected)"
    if abs(est.value) >= 1.0:
        v, lo, hi = (f"{x:.3g}" for x in (est.value, est.low, est.high))
        return f"{v} s [{lo}, {hi}]"
    digits = 0 if abs(est.value) >= 0.010 else 1
    v, lo, hi = (f"{x * 1000:.{digits}f}" for x in (est.value, est.low, est.high))
    return f"{v} ms [{lo}, {hi}]"


def _count(est: Estimate) -> str:
    """``5 [5, 6]``: attempts (a median of counts may be a half)."""
    return f"{est.value:g} [{est.low:g}, {est.high:g}]"


def _sample_ready(
    ready_times: Sequence[float], n: int, rng: np.random.Generator, bandwidth: float | None
) -> np.ndarray:
    """``n`` ready times resampled from the measured ones, smoothed by a Gaussian kernel.

    ``bandwidth=None`` is Silverman's rule (0 for a single value or no spread).
    """
    data = np.asarray(validate.numbers("ready_times", list(ready_times)), dtype=float)
    if bandwidth is None:
        spread = float(data.std(ddof=1)) if data.size > 1 else 0.0
        iqr = float(np.subtract(*np.percentile(data, [75, 25]))) / 1.34
        scale = min(spread, iqr) if iqr > 0 else spread
        bandwidth = 0.9 * scale * data.size ** (-0.2)
    else:
        bandwidth = validate.number("bandwidth", bandwidth)
    out = data[rng.integers(0, data.size, size=n)]
    if bandwidth > 0:
        out = np.abs(out + rng.normal(0.0, bandwidth, size=n))  # reflected at 0
    return out


def _min_step(strategy: Strategy, k: int, costs: AttemptCosts) -> float:
    """The least time from attempt ``k``'s start to attempt ``k + 1``'s."""
    low = strategy.delay_bounds(k)[0]
    if strategy.anchor == "attempt_start":
        return max(low, costs.refused_s, _MIN_STEP_S)
    return max(low + costs.refused_s, _MIN_STEP_S)


def _n_columns(strategy: Strategy, horizon: float, costs: AttemptCosts) -> int:
    """Attempts a client can need: until its schedule surely passes ``horizon``."""
    limit = min(strategy.max_attempts or MAX_ATTEMPTS, MAX_ATTEMPTS)
    total, k = 0.0, 1
    while k < limit and total < horizon:
        total += _min_step(strategy, k, costs)
        k += 1
    return k


def _timeouts(
    strategy: Strategy, delays: np.ndarray, j: int, default: float | None
) -> np.ndarray | float:
    """Connect timeout of attempt ``j + 1`` per client (delay ``j + 1`` is its backoff)."""
    if type(strategy).attempt_timeout is Strategy.attempt_timeout:
        return math.inf if default is None else float(default)
    column = delays[:, j]
    values = [strategy.attempt_timeout(j + 1, float(b), default) for b in column]
    return np.array([math.inf if v is None else v for v in values])


def _walk(
    strat: Strategy,
    ready: np.ndarray,
    delays: np.ndarray,
    costs: AttemptCosts,
    connect_timeout: float | None,
    deadline_at: float,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Every client's schedule, one attempt column at a time (see the module docstring).

    Returns connect times (NaN: gave up), attempts made, and whether some
    client was still retrying when the columns ran out.
    """
    n, k = delays.shape
    t = np.zeros(n)
    active = np.ones(n, dtype=bool)
    connected_at = np.full(n, np.nan)
    attempts = np.zeros(n, dtype=np.int64)
    from_start = strat.anchor == "attempt_start"
    limit = strat.max_attempts if strat.max_attempts is not None else math.inf
    for j in range(k):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        ts, rs = t[idx], ready[idx]
        tmo = _timeouts(strat, delays, j, connect_timeout)
        tmo = np.minimum(tmo[idx] if isinstance(tmo, np.ndarray) else tmo, deadline_at - ts)
        attempts[idx] += 1
        waits = ts >= rs - costs.hang_window_s  # ready, or held by the port proxy
        done_at = np.maximum(ts, rs) + costs.success_s
        ok = waits & (done_at <= ts + tmo)
        connected_at[idx[ok]] = done_at[ok]
        fail_end = np.where(waits, ts + tmo, ts + np.minimum(costs.refused_s, tmo))
        d = delays[idx, j]
        wake = np.maximum(fail_end, ts + d) if from_start else fail_end + d
        t[idx] = wake
        active[idx] = ~ok & (wake < deadline_at) & (j + 1 < limit)
    return connected_at, attempts, bool(active.any())


def predict(
    strategy: Strategy | str,
    ready_times: Sequence[float],
    costs: AttemptCosts | None = None,
    *,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    n: int = 10_000,
    rng: RngLike = None,
    bandwidth: float | None = None,
) -> Prediction:
    """Simulate ``n`` clients of ``strategy`` against boots drawn from ``ready_times``.

    ``ready_times`` are seconds from the client's first attempt to the server
    being ready (e.g. ``ready_after_event_s``); they are resampled, smoothed
    by a Gaussian kernel of ``bandwidth`` seconds (Silverman's rule when None,
    0 for plain resampling). ``rng`` (a numpy Generator or a seed) draws the
    ready times and the jitter, so a seed gives the same prediction.
    """
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    if not isinstance(strat, Strategy):
        raise ConfigError(f"strategy must be a Strategy or a registered name, got {strategy!r}")
    costs = costs if costs is not None else AttemptCosts()
    if not isinstance(costs, AttemptCosts):
        raise ConfigError(f"costs must be an AttemptCosts, got {costs!r}")
    n = validate.integer("n", n, minimum=1)
    timeout_default = _optional_positive("connect_timeout", connect_timeout)
    deadline_at = _optional_positive("deadline", deadline)
    if strat.max_attempts is None and deadline is None:
        raise ConfigError(
            f"{type(strat).__name__} is unbounded (max_attempts=None): give a deadline"
        )
    gen = _rng(rng)
    seed = int(gen.integers(0, 2**31 - 1))
    ready = _sample_ready(ready_times, n, gen, bandwidth)
    never = costs.success_s > timeout_default  # no attempt can ever finish in time
    horizon = deadline_at if never else min(deadline_at, float(ready.max()) + _MIN_STEP_S)
    k = _n_columns(strat, horizon, costs)
    limit = min(strat.max_attempts or MAX_ATTEMPTS, MAX_ATTEMPTS)
    while True:
        delays = strat.sample(gen, n, k)
        connected_at, attempts, unfinished = _walk(
            strat, ready, delays, costs, connect_timeout, deadline_at
        )
        # The column bound assumes steps of at least 1 ms; a schedule of shorter
        # ones (zero-delay jitter, free refusals) may need more columns.
        if not unfinished or k >= limit:
            break
        k = min(2 * k, limit)
    penalty = deadline_at if math.isfinite(deadline_at) else float(ready.max())
    return Prediction(
        strategy=strategy_name(strat),
        ready_s=ready,
        overshoot_s=connected_at - ready,
        attempts=attempts,
        connected=~np.isnan(connected_at),
        give_up_penalty_s=penalty,
        seed=seed,
    )


def predict_many(
    strategies: Sequence[str] | dict[str, Strategy],
    ready_times: Sequence[float],
    costs: AttemptCosts | None = None,
    *,
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`predict` each strategy with the same seed; one summary row per strategy."""
    named = (
        dict(strategies)
        if isinstance(strategies, dict)
        else {s: get_strategy(s) for s in strategies}
    )
    rows = []
    for name, strat in named.items():
        p = predict(strat, ready_times, costs, rng=seed, **kwargs)
        rows.append({**p.to_dict(), "strategy": name})
    return pd.DataFrame(rows)


# -- fitting ------------------------------------------------------------------


@dataclass(frozen=True, eq=False, kw_only=True)
class Fit:
    """The best schedule found, its prediction and objective, and the search's size."""

    strategy: Strategy
    prediction: Prediction
    objective: float
    weight_attempts: float
    family: str
    label: str = "fitted"
    evaluated: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    #: Why the schedule stops after ``strategy.max_attempts`` (see :func:`attempts_cap`).
    cap_reason: str = ""

    def summary(self) -> str:
        """A few lines for people: the schedule, why its attempts stop where they do, the
        objective and the predicted overshoot and attempts."""
        head = f"{self.label} schedule ({self.family}): {schedule_text(self.strategy)}"
        lines = [head]
        if self.cap_reason:
            lines.append(f"  {self.cap_reason}")
        lines.append(
            f"  objective E[overshoot] + {self.weight_attempts:g} s x E[attempts] = "
            f"{self.objective * 1000:.1f} ms ({self.evaluated:,} schedules tried)"
        )
        predicted = self.prediction.summary().splitlines()[1:]
        return "\n".join([*lines, "  predicted:", *(f"  {line}" for line in predicted)])

    def to_dict(self) -> dict[str, Any]:
        """Flat numbers (seconds, attempts) and settings for a table row."""
        return {
            "label": self.label,
            "family": self.family,
            "objective": self.objective,
            **self.strategy.describe(),
            **{k: v for k, v in self.prediction.to_dict().items() if k != "strategy"},
            "cap_reason": self.cap_reason,
        }


def schedule_text(strategy: Strategy) -> str:
    """A schedule's delays in words, rounded (ms below 1 s): ``first retry after 1.2 s, then
    every 90 ms, at most 668 attempts``."""
    s = strategy.describe()
    parts = []
    if "first_delay" in s:
        parts.append(f"first retry after {_seconds(s['first_delay'])}")
    if "delay" in s:
        parts.append(f"every {_seconds(s['delay'])}")
    elif "base" in s:
        step = _seconds(s["base"])
        if s.get("multiplier", 1.0) == 1.0:
            parts.append(f"{'then ' if parts else ''}every {step}")
        else:
            parts.append(
                f"{'then ' if parts else ''}{step} x{s['multiplier']:g} up to {_seconds(s['cap'])}"
            )
    attempts = s.get("max_attempts")
    parts.append("no limit on attempts" if attempts is None else f"at most {attempts:,} attempts")
    return ", ".join(parts)


def _seconds(value: float) -> str:
    """``90 ms``, ``4.5 ms`` or ``1.2 s``."""
    if value >= 1.0:
        return f"{value:.3g} s"
    return f"{value * 1000:.3g} ms"


def attempts_cap(
    strategy: Strategy, deadline: float | None, costs: AttemptCosts, asked: int | None
) -> tuple[int, str]:
    """``max_attempts`` for a fitted schedule: what fits in the deadline, and why.

    A client whose every attempt is refused at once (``costs.refused_s``) walks
    its delays fastest; the attempts it can start before ``deadline`` bound any
    client's. ``asked`` (the caller's ``max_attempts``) is kept when it is lower.
    """
    if deadline is None:
        assert asked is not None
        return asked, f"max_attempts={asked:,} as asked (no deadline)"
    fits = _n_columns(strategy.with_(max_attempts=None), float(deadline), costs)
    if asked is not None and asked <= fits:
        return asked, (
            f"max_attempts={asked:,} as asked (the {deadline:g} s deadline would allow {fits:,})"
        )
    step = float(deadline) / max(fits - 1, 1)
    why = (
        f"max_attempts={fits:,}: as many attempts as fit in the {deadline:g} s deadline when "
        f"each is refused at once ({costs.refused_s * 1000:.1f} ms) and followed by its delay "
        f"(about {_seconds(step)} per attempt); the deadline, not the count, ends retrying"
    )
    if fits >= MAX_ATTEMPTS:
        why += f" (capped at perfkit's limit of {MAX_ATTEMPTS:,} simulated attempts)"
    if asked is not None:
        why += f"; the {asked:,} asked for would not fit"
    return fits, why


def _geom(lo: float, hi: float, num: int) -> list[float]:
    return [float(x) for x in np.geomspace(lo, hi, num)]


def _make(family: str, params: tuple[float, ...], max_attempts: int | None) -> Strategy | None:
    """A strategy of ``family`` with ``params``, or None when they are out of range."""
    try:
        if family == "fixed":
            return FixedDelay(delay=params[0], max_attempts=max_attempts)
        base, mult, cap = params[-3:]
        if base <= 0 or mult < 1:
            return None
        if cap <= base or mult == 1.0:  # a fixed step: say so with multiplier 1, cap = base
            cap, mult = base, 1.0
        if family == "exponential":
            return CappedExponential(base=base, multiplier=mult, cap=cap, max_attempts=max_attempts)
        if family == "full_jitter":
            return FullJitter(base=base, multiplier=mult, cap=cap, max_attempts=max_attempts)
        return DelayedExponential(
            first_delay=params[0], base=base, multiplier=mult, cap=cap, max_attempts=max_attempts
        )
    except ConfigError:
        return None


def _tidy(family: str, params: tuple[float, ...]) -> tuple[float, ...]:
    """Settings rounded for people: 0.1 ms, multipliers to 0.01 (1.0 when within 1 %)."""
    out = [round(p, 4) for p in params]
    if family != "fixed":
        mult = round(params[-2], 2)
        out[-2] = 1.0 if mult <= 1.01 else mult
        out[-3] = max(out[-3], 0.0001)
    return tuple(out)


def _grid(family: str, ready: np.ndarray) -> list[tuple[float, ...]]:
    steps = _geom(0.005, 2.0, 24)
    if family == "fixed":
        return [(d,) for d in steps]
    shapes: list[tuple[float, float, float]] = []
    for base in _geom(0.005, 1.0, 10):
        for mult in (1.0, 1.5, 2.0, 3.0):
            caps = [base] if mult == 1.0 else [c for c in _geom(0.05, 5.0, 5) if c > base]
            shapes += [(base, mult, cap) for cap in caps]
    if family != "delayed":
        return [s for s in shapes if s[1] > 1.0]
    q = np.quantile(ready, [0.0, 0.02, 0.05, 0.1, 0.25, 0.5])
    firsts = sorted({0.0, *(float(x) for x in q), *(float(x) * 0.9 for x in q)})
    return [(f, *s) for f in firsts for s in shapes if s[1] <= 2.0]


def _neighbours(family: str, params: tuple[float, ...], step: float) -> list[tuple[float, ...]]:
    """Move each parameter up and down by ``step`` (a factor; additive for first_delay)."""
    out = []
    for i, value in enumerate(params):
        for up in (True, False):
            p = list(params)
            is_first = family == "delayed" and i == 0
            is_mult = (family != "fixed") and i == len(params) - 2
            if is_first:
                p[i] = max(0.0, value + (step - 1) * (1 if up else -1) * max(value, 0.05))
            elif is_mult:
                p[i] = max(1.0, value * step if up else value / step)
            else:
                p[i] = value * step if up else value / step
            out.append(tuple(p))
    return out


def fit(
    ready_times: Sequence[float],
    *,
    costs: AttemptCosts | None = None,
    weight_attempts: float = 0.01,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    families: Sequence[str] = DEFAULT_FAMILIES,
    max_attempts: int | None = None,
    n: int = 10_000,
    search_n: int = 2000,
    rng: RngLike = 0,
    bandwidth: float | None = None,
    label: str = "fitted",
) -> Fit:
    """Search schedules for the least ``E[overshoot] + weight_attempts * E[attempts]``.

    ``weight_attempts`` (lambda) is the seconds of overshoot one attempt is
    worth. Families: ``fixed`` (a delay), ``exponential`` (capped exponential:
    first delay, multiplier, cap), ``delayed`` (a first delay aimed at the
    boot, then a capped exponential from a small step; ``multiplier=1`` is a
    fixed step) and ``full_jitter``. A coarse grid is refined by a pattern
    search, every candidate scored on the same ``search_n`` simulated boots
    (common random numbers), the winner re-predicted with ``n`` clients.
    ``max_attempts=None`` gives the fitted strategy enough attempts to reach
    the deadline. Deterministic for a given ``rng`` seed.
    """
    costs = costs if costs is not None else AttemptCosts()
    weight = validate.number("weight_attempts", weight_attempts)
    if isinstance(families, str) or not families or any(f not in FAMILIES for f in families):
        raise ConfigError(f"families must be a non-empty list of {', '.join(FAMILIES)}")
    if max_attempts is not None:
        validate.integer("max_attempts", max_attempts, minimum=1)
    if max_attempts is None and deadline is None:
        raise ConfigError("fit needs a deadline or max_attempts to bound the fitted schedule")
    validate.integer("search_n", search_n, minimum=1)
    seed = int(_rng(rng).integers(0, 2**31 - 1))
    ready_sample = _sample_ready(ready_times, search_n, np.random.default_rng(seed), bandwidth)
    budget = max_attempts if max_attempts is not None else MAX_ATTEMPTS
    common = {"connect_timeout": connect_timeout, "deadline": deadline, "bandwidth": 0.0}

    cache: dict[tuple[str, tuple[float, ...]], float] = {}

    def score(family: str, params: tuple[float, ...]) -> float:
        key = (family, tuple(round(p, 9) for p in params))
        if key not in cache:
            strat = _make(family, params, budget)
            if strat is None:
                cache[key] = math.inf
            else:
                p = predict(strat, ready_sample, costs, n=search_n, rng=seed, **common)
                cache[key] = p.objective(weight)
        return cache[key]

    scored = [(score(f, p), f, p) for f in families for p in _grid(f, ready_sample)]
    scored.sort(key=lambda x: x[0])
    best = scored[0]
    for start in scored[:3]:
        best = min(best, pattern_search(score, start), key=lambda x: x[0])
    _, family, params = best
    strat = _make(family, _tidy(family, params), budget)
    assert strat is not None
    cap, cap_reason = attempts_cap(strat, deadline, costs, max_attempts)
    strat = strat.with_(max_attempts=cap)
    prediction = predict(
        strat, ready_times, costs, n=n, rng=seed, bandwidth=bandwidth, **_stop(common)
    )
    return Fit(
        strategy=strat,
        prediction=prediction,
        objective=prediction.objective(weight),
        weight_attempts=weight,
        family=family,
        label=label,
        evaluated=len(cache),
        settings={"seed": seed, "search_n": search_n, "n": n, "families": tuple(families)},
        cap_reason=cap_reason,
    )


def _stop(common: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in common.items() if k != "bandwidth"}


Neighbours = Callable[[str, tuple[float, ...], float], list[tuple[float, ...]]]


def pattern_search(
    score: Callable[[str, tuple[float, ...]], float],
    start: tuple[float, str, tuple[float, ...]],
    *,
    neighbours: Neighbours | None = None,
) -> tuple[float, str, tuple[float, ...]]:
    """Compass search from ``start`` (value, family, params) for a lower ``score(family, p)``.

    Each round moves to the first better neighbour (``neighbours(family, params, step)``:
    each parameter up and down by the factor ``step``; :func:`fit`'s by default) until none
    is better, then shrinks the step (1.5, its square root, ... down to 1.01).
    """
    around = neighbours if neighbours is not None else _neighbours
    value, family, params = start
    step = 1.5
    while step > 1.01:
        moved = True
        while moved:
            moved = False
            for cand in around(family, params, step):
                v = score(family, cand)
                if v < value - 1e-12:
                    value, params, moved = v, cand, True
        step = math.sqrt(step)
    return value, family, params


def fit_schedule(ready_times: Sequence[float], **kwargs: Any) -> Strategy:
    """The fitted :class:`Strategy` of :func:`fit` (same arguments), for ``connect_with_retry``.

    Its ``max_attempts`` is what fits in the deadline (or the ``max_attempts`` asked for,
    when fewer fit); ``fit(...).summary()`` says which and why.
    """
    return fit(ready_times, **kwargs).strategy
