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

The lab's frames computed from its runs, pure functions of frames: connect
times, headlines, herd runs vs the simulation, and the model's predictions vs
the measured medians (``model_vs_real``, ``fitted``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from perfkit import headlines
from perfkit.errors import ConfigError
from perfkit.headlines import RUN_COLUMN
from perfkit.lab import SAMPLE_COLUMNS
from perfkit.retry import herd, model
from perfkit.retry.conclusions import FITTED
from perfkit.retry.evidence import scenario_runs
from perfkit.retry.planner import AttemptPlan, GiveUp, RetryPlanner
from perfkit.retry.probe import PROBE_INTERVAL_S
from perfkit.retry.simulate import SimSettings, simulate
from perfkit.retry.strategies import Strategy, get_strategy
from perfkit.stats import Estimate, quantile_interval

Scenario = Literal["refused", "hang"]

#: The review's claim for its two loops: "15 s -> 500 ms worst case".
REVIEW_CLAIM_S = {"naive": 15.0, "review": 0.5}
#: Headline variant -> the cold-start label behind it.
HEADLINE_LABELS = {"naive": "naive", "improved": "review"}
#: The analytic headlines' descriptions of the review's two loops.
ANALYTIC_LABELS = {
    "naive": "fixed 500 ms x 30 retries",
    "review": "review backoff (100 ms x2, cap 5 s, 10 tries, +25% jitter)",
}
#: Measured headline metric -> what its median is.
MEASURED_HEADLINES = {
    "cold_start_time_to_connect": "median time to connect",
    "cold_start_overshoot": "median connected minus server ready",
}
#: The headline metrics' directions: every one is a time, so lower is better. (Their values
#: are not :func:`perfkit.headlines.from_samples`'s: see :func:`headline_frame`.)
SPEC = {
    metric: headlines.HeadlineSpec(statistic="median", better="lower")
    for metric in ("connection_time", *MEASURED_HEADLINES)
}
#: Simulated clients per model prediction.
MODEL_CLIENTS = 10_000
#: An attempt before ready that neither failed nor ended sooner than this hung (a port proxy).
HANG_MIN_S = 0.1


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


# -- the lab's frames: connect times, headlines, herd vs simulation, the model --------


def connect_time_table(runs: pd.DataFrame, worst: pd.DataFrame | None) -> pd.DataFrame:
    """Per strategy: cold-start medians plus the analytic give-up totals (for the report)."""
    cold = runs[runs["scenario"] == "cold_start"]
    table = (
        cold.groupby("label")
        .agg(
            runs=("connected", "size"),
            connected=("connected", "sum"),
            time_to_connect_median_s=("time_to_connect_s", "median"),
            time_to_connect_max_s=("time_to_connect_s", "max"),
            overshoot_median_s=("overshoot_s", "median"),
            attempts_median=("attempts", "median"),
        )
        .reset_index()
        .rename(columns={"label": "strategy"})
    )
    if worst is None or worst.empty:  # the analytic stage did not run
        return table
    pivot = worst.pivot_table(index="strategy", columns="scenario", values="total_max")
    median = worst.pivot_table(index="strategy", columns="scenario", values="total_median")
    for scenario in ("refused", "hang"):
        if scenario in pivot.columns:
            table[f"worst_case_{scenario}_max_s"] = table["strategy"].map(pivot[scenario])
            table[f"worst_case_{scenario}_median_s"] = table["strategy"].map(median[scenario])
    return table


def empty_samples() -> pd.DataFrame:
    """The ``samples`` frame of a run that measured no cold start (no rows)."""
    return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN])


def headline_frame(claim: pd.DataFrame | None, samples: pd.DataFrame) -> pd.DataFrame:
    """Analytic worst cases (exact: n=0, labelled analytic), then the measured cold-start
    medians of ``samples`` with their n and 95 % intervals.

    Not :func:`perfkit.headlines.from_samples`: the worst cases are the review's
    configuration computed (no samples), and the medians keep an interval at every
    n (a quick run has n=2, where ``from_samples`` gives none); the values match.
    """
    items: list[headlines.Headline] = []
    if claim is None or claim.empty:  # the analytic stage did not run
        claim = pd.DataFrame(columns=["strategy", "scenario", "sleep_max_exact_s"])
    refused = claim[claim["scenario"] == "refused"].set_index("strategy")
    for variant, name in HEADLINE_LABELS.items():
        if name in refused.index:
            items.append(
                headlines.Headline(
                    metric="connection_time",
                    variant=variant,
                    value=float(refused.loc[name, "sleep_max_exact_s"]),
                    unit="s",
                    label=f"{ANALYTIC_LABELS[name]}: worst case before giving up "
                    "(server down, analytic)",
                    better=SPEC["connection_time"].better,
                )
            )
    for variant, name in HEADLINE_LABELS.items():
        for metric, text in MEASURED_HEADLINES.items():
            values = samples[(samples["metric"] == metric) & (samples["variant"] == variant)]
            est = measured_median(values["value"], 0) if len(values) else None
            if est is None or math.isnan(est.value):
                continue
            items.append(
                headlines.Headline(
                    metric=metric,
                    variant=variant,
                    value=est.value,
                    unit="s",
                    label=f"{name}: {text} during a cold start (measured)",
                    n=est.n,
                    ci_low=est.low,
                    ci_high=est.high,
                    better=SPEC[metric].better,
                )
            )
    return headlines.headline_frame(items)


def _herd_sim_settings(
    r: pd.Series, attempts: pd.DataFrame, calibration: Mapping[str, float], *, deadline: float
) -> SimSettings:
    """Simulation settings for one real herd run, calibrated from its own attempts."""
    first = attempts[
        (attempts["label"] == r["label"])
        & (attempts["n_clients"] == r["n_clients"])
        & (attempts["attempt"] == 1)
    ]
    spread = float(first["start"].max() - first["start"].min()) if len(first) else 0.0
    # Failed attempts before the server was ready: instant refusals on the local
    # backend, slower through Docker's port proxy; the model uses their median.
    run_attempts = attempts[
        (attempts["label"] == r["label"]) & (attempts["n_clients"] == r["n_clients"])
    ]
    ready_after = float(r["ready_after_event_s"] or 0.0)
    before_ready = run_attempts[run_attempts["t_event_s"] < ready_after]
    early = before_ready[before_ready["outcome"] == "error"]
    refused = float(early["duration_s"].median()) if len(early) else calibration["refused_s"]
    # Through Docker's port proxy, attempts made while PostgreSQL boots are not refused:
    # they wait for it. The window starts at the earliest such attempt after the restart.
    waited = before_ready[(before_ready["outcome"] != "error") & (before_ready["t_event_s"] >= 0)]
    hang = ready_after - float(waited["t_event_s"].min()) if len(waited) else 0.0
    return SimSettings.calibrated(
        {**calibration, "refused_s": refused},
        n_clients=int(r["n_clients"]),
        outage_s=float(r["outage_s"]),
        boot_s=ready_after or 0.05,
        hang_s=hang,
        max_connections=int(r["max_connections"]) - 1,  # the sampler holds one
        backlog=min(4096, 2 * int(r["max_connections"])),  # PostgreSQL's listen() backlog
        connect_timeout=r["connect_timeout_s"],
        deadline=deadline,
        start_spread_s=spread,
    )


def sim_compare(
    herd_frames: Mapping[str, pd.DataFrame],
    calibration: Mapping[str, float],
    *,
    deadline: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every real herd run with calibrated settings; summaries and rates side by side."""
    real = herd_frames["herd"]
    real_labels: list[str] = []
    attempts = herd_frames["herd_attempts"]
    rows, rates = [], []
    for _, r in real.iterrows():
        if r.get("budget_per_s") is not None and not pd.isna(r.get("budget_per_s")):
            continue  # the model has no token bucket
        settings = _herd_sim_settings(r, attempts, calibration, deadline=deadline)
        sim = simulate(r["strategy"], settings, seed=seed)
        real_labels.append(str(r["label"]))
        s = sim.summary()
        for key in herd.SIM_METRICS:
            rows.append(
                {
                    "label": r["label"],
                    "strategy": r["strategy"],
                    "n_clients": int(r["n_clients"]),
                    "metric": key,
                    "real": float(r[key]),
                    "sim": float(s[key]),
                }
            )
        starts, counts = sim.rate()
        rates.append(
            pd.DataFrame(
                {
                    "label": r["label"],
                    "n_clients": int(r["n_clients"]),
                    "source": "sim",
                    "t_bin_s": starts,
                    "attempts": counts,
                }
            )
        )
    real_rates = herd.rate_frame(attempts[attempts["label"].isin(set(real_labels))])
    real_rates["source"] = "real"
    return pd.DataFrame(rows), pd.concat([real_rates, *rates], ignore_index=True)


def proxy_hangs(attempts: pd.DataFrame, runs: pd.DataFrame) -> bool:
    """Whether attempts made before the server was ready hung instead of failing at once.

    Docker's port proxy accepts the connection and holds it while PostgreSQL
    boots; on the local backend an attempt is refused at once, and an attempt
    that merely beat the readiness probe (by up to one poll) connects quickly.
    So: some attempt started after the event and before ready, did not fail,
    and took at least :data:`HANG_MIN_S`.
    """
    needed = {"t_event_s", "duration_s", "outcome"}
    if attempts.empty or not needed <= set(attempts.columns):
        return False
    keys = [c for c in ("scenario", "rep", "label", "param_s") if c in attempts and c in runs]
    ready = runs[[*keys, "ready_after_event_s"]].drop_duplicates(keys)
    df = attempts.merge(ready, on=keys, how="inner")
    hung = df[
        (df["t_event_s"] >= 0)
        & (df["t_event_s"] < df["ready_after_event_s"])
        & (df["outcome"] != "error")
        & (df["duration_s"] >= HANG_MIN_S)
    ]
    return not hung.empty


def measured_costs(attempts: pd.DataFrame, runs: pd.DataFrame, *, cold: bool) -> model.AttemptCosts:
    """Per-attempt costs for the model from a scenario's attempts.

    Without hung attempts (:func:`proxy_hangs`) there is no hang window. With
    them, a cold start is Docker-style (every attempt during the boot hangs:
    the proxy is up from the launch), an outage keeps the measured window.
    """
    costs = model.estimate_costs(attempts, runs)
    if not proxy_hangs(attempts, runs):
        return dataclasses.replace(costs, hang_window_s=0.0)
    if cold:
        return model.AttemptCosts.docker(refused_s=costs.refused_s, success_s=costs.success_s)
    return costs


def measured_median(values: pd.Series, seed: int) -> Estimate:
    return quantile_interval(values.dropna().to_numpy(dtype=float), 0.5, seed=seed)


def agreement_rows(
    predicted: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    scenario: str,
    param_s: float | None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Predicted vs measured medians (overshoot, attempts) per label, with intervals.

    ``agreement``: the predicted median lies within the measured median's 95 %
    interval, widened by the measurement's resolution (the probe polls every
    10 ms, so overshoot by one poll; attempts exactly). ``ratio`` is measured
    over predicted, its interval the measured interval over the prediction.
    """
    sel = scenario_runs(runs, scenario, param_s)
    rows = []
    for p in predicted.itertuples():
        mine = sel[sel["label"] == p.strategy]
        for metric, column, tolerance in (
            ("overshoot_median_s", "overshoot_s", PROBE_INTERVAL_S),
            ("attempts_median", "attempts", 0.0),
        ):
            key = "median_overshoot" if column == "overshoot_s" else "median_attempts"
            value = float(getattr(p, key))
            est = (
                measured_median(mine[column], seed)
                if len(mine)
                else Estimate(math.nan, math.nan, math.nan, 0)
            )
            inside = est.low - tolerance <= value <= est.high + tolerance
            scale = value if value else math.nan
            rows.append(
                {
                    "scenario": scenario,
                    "param_s": param_s if param_s is not None else math.nan,
                    "label": p.strategy,
                    "metric": metric,
                    "predicted": value,
                    "predicted_low": float(getattr(p, f"{key}_low")),
                    "predicted_high": float(getattr(p, f"{key}_high")),
                    "predicted_success_rate": float(p.success_rate),
                    "measured": est.value,
                    "measured_low": est.low,
                    "measured_high": est.high,
                    "n": est.n,
                    "ratio": est.value / scale,
                    "ratio_low": est.low / scale,
                    "ratio_high": est.high / scale,
                    "agreement": bool(est.n > 0 and inside),
                }
            )
    return rows


def model_frames(
    runs: pd.DataFrame,
    attempts: pd.DataFrame,
    boot_ready: np.ndarray,
    fitted: model.Fit,
    *,
    strategies: Sequence[str],
    connect_timeout: float,
    deadline: float,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """``ready_times``, ``model`` (predictions), ``model_vs_real`` and ``fitted``."""
    cold_ready = model.ready_times_from_runs(runs, "cold_start")
    outage_runs = runs[runs["scenario"] == "outage"]
    restart_ready = model.ready_times_from_runs(runs, "outage")
    ready_frame = pd.concat(
        [
            pd.DataFrame({"source": "boot", "ready_s": boot_ready}),
            pd.DataFrame({"source": "cold_start", "ready_s": cold_ready}),
            pd.DataFrame({"source": "outage_restart", "ready_s": restart_ready}),
        ],
        ignore_index=True,
    )
    common = {"connect_timeout": connect_timeout, "deadline": deadline, "n": MODEL_CLIENTS}
    schedules: dict[str, Any] = {name: get_strategy(name) for name in strategies}
    schedules[FITTED] = fitted.strategy
    cold_attempts = attempts[attempts["scenario"] == "cold_start"]
    costs = measured_costs(cold_attempts, runs, cold=True)
    ready = np.concatenate([boot_ready, cold_ready])
    predicted = [
        model.predict_many(schedules, ready, costs, seed=seed, **common).assign(
            scenario="cold_start", param_s=math.nan
        )
    ]
    rows = agreement_rows(predicted[0], runs, scenario="cold_start", param_s=None, seed=seed)
    outage_costs = measured_costs(attempts[attempts["scenario"] == "outage"], runs, cold=False)
    named = {name: schedules[name] for name in strategies}

    for length in sorted(set(outage_runs["param_s"].dropna())):
        # ready, counted from the client's first attempt: the outage, then a restart
        pred = model.predict_many(
            named, length + restart_ready, outage_costs, seed=seed, **common
        ).assign(scenario="outage", param_s=float(length))
        predicted.append(pred)
        rows += agreement_rows(pred, runs, scenario="outage", param_s=float(length), seed=seed)
    cold = runs[(runs["scenario"] == "cold_start") & (runs["label"] == FITTED)]
    o, a = measured_median(cold["overshoot_s"], seed), measured_median(cold["attempts"], seed)
    fit_row = {
        **fitted.to_dict(),
        "weight_attempts": fitted.weight_attempts,
        "evaluated": fitted.evaluated,
        "fit_ready_n": len(boot_ready),
        "refused_s": costs.refused_s,
        "success_s": costs.success_s,
        "hang_window_s": costs.hang_window_s,
        "measured_overshoot_median_s": o.value,
        "measured_overshoot_ci_low_s": o.low,
        "measured_overshoot_ci_high_s": o.high,
        "measured_attempts_median": a.value,
        "measured_attempts_ci_low": a.low,
        "measured_attempts_ci_high": a.high,
        "measured_n": o.n,
    }
    return {
        "ready_times": ready_frame,
        "model": pd.concat(predicted, ignore_index=True),
        "model_vs_real": pd.DataFrame(rows),
        "fitted": pd.DataFrame([fit_row]),
    }
