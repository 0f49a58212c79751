"""Real herds vs the simulation: an agreement table over repeated herds, and where it holds.

:func:`agreement` is pure: from one summary row per real herd and one per
simulated herd (columns ``strategy``, ``n_clients`` and the metrics), it gives
one row per (strategy, n_clients, metric) with the median over the repeated
herds on each side and its interval, the ratio real / sim, and whether they
agree: within ±25 % of the simulated value, or their intervals overlap.

The intervals are the exact distribution-free ones for a median
(:func:`perfkit.stats.exact_median_interval`, order statistics): they need at
least 6 herds at 95 %. With fewer, the interval is the range of the herds
(``interval = "range"``) and ``coverage`` says what that range covers
(1 - 2·½ⁿ: 75 % for 3 herds), so a table of few herds says how weak its
overlap test is instead of claiming 95 %.

:func:`largest_agreeing_n` is the largest N at which every checked strategy
agrees on the checked metrics: the simulation's numbers beyond it (10,000+
clients) are extrapolations to flag. :func:`run_validation` runs the real
herds (repetitions interleaved, so drift on a shared machine spreads over all
cells) and asks a model for the same herds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from perfkit import stats
from perfkit.errors import ConfigError
from perfkit.postgres import PostgresServer
from perfkit.retry import herd
from perfkit.retry.bigherd import (
    MAX_CONNECTIONS_MARGIN,
    BigHerdSettings,
    run_big_herd,
    sim_settings_for,
)
from perfkit.retry.herdproc import ensure_fd_limit
from perfkit.retry.simulate import simulate

#: Metrics compared, per herd (names of the real and the simulated summary's keys).
AGREEMENT_METRICS = (
    "median_connected_after_ready_s",
    "p90_connected_after_ready_s",
    "timeouts",
    "peak_rate_after_restart_per_100ms",
    "all_connected_after_ready_s",
)
#: The issue's benchmark: these must agree for a size to count as checked.
HEADLINE_METRICS = ("median_connected_after_ready_s", "timeouts")
#: Relative difference (real vs sim) within which two medians agree outright.
TOLERANCE = 0.25

SimulateFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]


def median_interval(values: Sequence[float], *, level: float = 0.95) -> dict[str, Any]:
    """Median of ``values`` (NaN dropped) with the exact interval, or the range when too few.

    Returns ``value, low, high, n, interval ("exact" | "range"), coverage``.
    """
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        nan = math.nan
        return {"value": nan, "low": nan, "high": nan, "n": 0, "interval": "none", "coverage": nan}
    exact = stats.exact_median_interval(data, level=level)
    if exact is not None:
        return {
            "value": exact.value,
            "low": exact.low,
            "high": exact.high,
            "n": n,
            "interval": "exact",
            "coverage": level,
        }
    return {
        "value": float(np.median(data)),
        "low": float(data.min()),
        "high": float(data.max()),
        "n": n,
        "interval": "range",
        "coverage": 1.0 - 2.0 * 0.5**n,
    }


def _ratio(real: float, sim: float) -> float:
    if math.isnan(real) or math.isnan(sim):
        return math.nan
    if sim == 0:
        return 1.0 if real == 0 else math.inf
    return real / sim


def _overlap(r: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
    ends = (r["low"], r["high"], s["low"], s["high"])
    if any(math.isnan(x) for x in ends):
        return False
    return bool(r["low"] <= s["high"] and s["low"] <= r["high"])


def _row(
    key: tuple[str, int], metric: str, r: dict[str, Any], s: dict[str, Any], tol: float
) -> dict[str, Any]:
    ratio = _ratio(r["value"], s["value"])
    within = bool(not math.isnan(ratio) and abs(ratio - 1.0) <= tol)
    overlap = _overlap(r, s)
    return {
        "strategy": key[0],
        "n_clients": key[1],
        "metric": metric,
        "real": r["value"],
        "real_low": r["low"],
        "real_high": r["high"],
        "real_n": r["n"],
        "sim": s["value"],
        "sim_low": s["low"],
        "sim_high": s["high"],
        "sim_n": s["n"],
        "ratio": ratio,
        "within_tolerance": within,
        "intervals_overlap": overlap,
        "agrees": within or overlap,
        "interval": r["interval"] if r["interval"] == s["interval"] else "mixed",
        "coverage": min(r["coverage"], s["coverage"]),
    }


def agreement(
    real: pd.DataFrame,
    sim: pd.DataFrame,
    *,
    level: float = 0.95,
    metrics: Sequence[str] = AGREEMENT_METRICS,
    tolerance: float = TOLERANCE,
) -> pd.DataFrame:
    """One row per (strategy, n_clients, metric) of ``real``: medians over the herds, agreement.

    ``real`` and ``sim`` hold one summary row per herd (``strategy``,
    ``n_clients`` and the ``metrics``; a ``rep`` column is not needed). A cell
    with no simulated herd gets NaN on the sim side and does not agree.
    Metrics missing from a frame are NaN (a time until all connected is NaN
    where a client gave up: such herds drop out of that metric's n).
    """
    if isinstance(tolerance, bool) or not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    rows = []
    keys = list(dict.fromkeys(zip(real["strategy"], real["n_clients"], strict=True)))
    for strategy, n in keys:
        key = (str(strategy), int(n))
        r_cell = real[(real["strategy"] == strategy) & (real["n_clients"] == n)]
        s_cell = sim[(sim["strategy"] == strategy) & (sim["n_clients"] == n)]
        for metric in metrics:
            r_vals = r_cell[metric] if metric in r_cell else pd.Series(dtype=float)
            s_vals = s_cell[metric] if metric in s_cell else pd.Series(dtype=float)
            r_est = median_interval(r_vals.astype(float), level=level)
            s_est = median_interval(s_vals.astype(float), level=level)
            rows.append(_row(key, metric, r_est, s_est, tolerance))
    return pd.DataFrame(rows)


def largest_agreeing_n(
    table: pd.DataFrame,
    *,
    strategies: Sequence[str] | None = None,
    metrics: Sequence[str] | None = HEADLINE_METRICS,
) -> int | None:
    """The largest N at which every checked strategy agrees on every checked metric.

    ``strategies``/``metrics`` None: all in ``table``. None when no N agrees.
    Each N is judged on its own: N = 1,000 agreeing with N = 300 not does not
    lower the answer (the table shows the 300).
    """
    rows = table
    if strategies is not None:
        rows = rows[rows["strategy"].isin(list(strategies))]
    if metrics is not None:
        rows = rows[rows["metric"].isin(list(metrics))]
    if rows.empty:
        return None
    agreeing = [int(n) for n, cell in rows.groupby("n_clients") if bool(cell["agrees"].all())]
    return max(agreeing) if agreeing else None


def fcfs_simulate(summary: Mapping[str, Any], costs: Mapping[str, Any]) -> dict[str, Any]:
    """The kit's first-come-first-served model of one real herd (``costs``: a
    :func:`perfkit.retry.herd.calibrate` row); the baseline the contention model replaces."""
    calibration = {str(k): float(v) for k, v in costs.items()}
    settings = sim_settings_for(dict(summary), calibration)
    return simulate(str(summary["strategy"]), settings, seed=int(summary.get("rep", 0))).summary()


def run_validation(
    server: PostgresServer,
    strategies: Sequence[str],
    sizes: Sequence[int],
    reps: int,
    simulate_fn: SimulateFn,
    costs: Mapping[str, Any],
    *,
    outage_s: float = 1.0,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    client_processes: int | None = None,
    client_nice: int | None = None,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, pd.DataFrame]:
    """Real herds (``reps`` per strategy and size, interleaved) and the model's view of each.

    For every real herd, ``simulate_fn(summary, costs)`` returns the simulated
    summary of the same herd (a ``SimResult.summary()``; ``costs`` is handed
    through, e.g. the measured setup costs for the contention model). Checked
    before anything runs: strategies, sizes, max_connections and open files
    for the largest size. Returns ``real`` and ``sim`` (one row per herd, with
    ``rep``) and ``agreement`` (:func:`agreement`).
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be an int >= 1, got {reps!r}")
    plan = [
        (
            rep,
            BigHerdSettings(
                strategy=s,
                n_clients=n,
                outage_s=outage_s,
                connect_timeout=connect_timeout,
                deadline=deadline,
                client_processes=client_processes,
                client_nice=client_nice,
            ),
        )
        for rep in range(reps)
        for n in sizes
        for s in strategies
    ]
    if not plan:
        raise ConfigError("run_validation needs at least one strategy and one size")
    largest = max(plan, key=lambda p: p[1].n_clients)[1]
    limit = herd.max_connections(server)
    if limit < largest.n_clients + 2:
        raise ConfigError(
            f"max_connections is {limit}: the largest herd ({largest.n_clients} clients) needs "
            f"{largest.n_clients + 2} (give max_connections="
            f"{largest.n_clients + MAX_CONNECTIONS_MARGIN} in the server settings)"
        )
    for _, bs in plan:
        ensure_fd_limit(bs.n_clients, processes=bs.processes)
    real_rows, sim_rows = [], []
    for rep, bs in plan:
        summary = {**run_big_herd(server, bs, seed=seed + rep)["summary"], "rep": rep}
        real_rows.append(summary)
        simulated = simulate_fn(summary, costs)
        same = {"strategy": bs.strategy, "n_clients": bs.n_clients, "rep": rep}
        sim_rows.append({**simulated, **same})
    real, sim = pd.DataFrame(real_rows), pd.DataFrame(sim_rows)
    return {"real": real, "sim": sim, "agreement": agreement(real, sim, level=level)}
