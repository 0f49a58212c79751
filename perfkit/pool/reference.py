"""The pool's numbers with their intervals, and next to pgbench's (the C reference).

Pure functions of the lab's frames:

- :func:`case_bins` / :func:`throughput_estimate`: a run's successful
  requests/s in bins (:func:`perfkit.pool.summary.throughput_bins`), the
  samples behind a throughput's 95 % interval (n = bins, over repeats);
- :func:`ratio_estimate`: the ratio of two independent estimates with a 95 %
  interval (delta method on the log scale, from each one's interval);
- :func:`compare_with_pgbench`: per connection count c, the pool's throughput
  at c workers (its best size there) against pgbench with c clients;
- :func:`knee_cpu`: client and server CPU at the size sweep's peak throughput.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np
import pandas as pd

from perfkit.pool.summary import throughput_bins
from perfkit.pool.sweeps import aggregate_size
from perfkit.postgres.cpu import CLIENT_BOUND_PCT
from perfkit.stats import Estimate, mean_interval

#: Bin width (s) of throughput samples: ~10 bins per full run, 4 per quick one.
BIN_S = 0.1
Z95 = NormalDist().inv_cdf(0.975)

COMPARE_COLUMNS = (
    "connections",
    "pool_size",
    "pool_rps",
    "pool_low",
    "pool_high",
    "pool_n",
    "pgbench_rps",
    "pgbench_low",
    "pgbench_high",
    "pgbench_n",
    "ratio",
    "ratio_low",
    "ratio_high",
    "gap_pct",
    "agree",
    "client_cpu_pct",
    "client_bound",
    "pgbench_client_cpu_pct",
)


def case_bins(
    requests: pd.DataFrame, runs: pd.DataFrame, cases: Iterable[int], bin_s: float = BIN_S
) -> np.ndarray:
    """Throughput bins (requests/s) of the given ``case`` numbers, concatenated."""
    elapsed = runs.set_index("case")["elapsed_s"]
    parts = [
        throughput_bins(requests[requests["case"] == c], float(elapsed.loc[c]), bin_s)
        for c in cases
    ]
    return np.concatenate(parts) if parts else np.array([], dtype=float)


def throughput_estimate(
    requests: pd.DataFrame, runs: pd.DataFrame, cases: Iterable[int], seed: int = 0
) -> Estimate:
    """Mean throughput over the runs' bins, with its 95 % bootstrap interval (n = bins)."""
    return mean_interval(case_bins(requests, runs, cases), seed=seed)


def _log_se(est: Estimate) -> float:
    """Standard error of log(value) from a 95 % interval (NaN when it cannot be had)."""
    if not (est.value > 0 and est.low > 0 and est.high > 0):
        return math.nan
    return (math.log(est.high) - math.log(est.low)) / (2 * Z95)


def ratio_estimate(a: Estimate, b: Estimate) -> Estimate:
    """``a / b`` for independent estimates, 95 % interval from both (log-scale delta method).

    ``n`` is the smaller of the two sample sizes; NaN when either value is not positive.
    """
    n = min(a.n, b.n)
    if not (a.value > 0 and b.value > 0):
        return Estimate(math.nan, math.nan, math.nan, n)
    r = a.value / b.value
    se = math.hypot(_log_se(a), _log_se(b))
    if math.isnan(se):
        return Estimate(r, math.nan, math.nan, n)
    return Estimate(r, r * math.exp(-Z95 * se), r * math.exp(Z95 * se), n)


def _pgbench_estimate(rows: pd.DataFrame) -> Estimate:
    """pgbench's throughput at one connection count (the mean over repeats)."""
    return Estimate(
        float(rows["throughput_rps"].mean()),
        float(rows["tps_low"].mean()),
        float(rows["tps_high"].mean()),
        int(rows["tps_n"].sum()),
    )


def compare_with_pgbench(
    runs: pd.DataFrame, requests: pd.DataFrame, pgbench: pd.DataFrame, seed: int = 0
) -> pd.DataFrame:
    """Per connection count c: the pool at c workers (best size) vs pgbench with c clients.

    ``ratio`` = pool / pgbench with its interval; ``gap_pct`` = |ratio - 1| in %;
    ``agree`` when the ratio's interval holds 1.
    """
    rows = []
    size = aggregate_size(runs)
    size = size[size["pooled"].astype(bool)]
    raw = runs[(runs["experiment"] == "size") & runs["pooled"].astype(bool)]
    bench = pgbench[~pgbench["connect"].astype(bool)] if "connect" in pgbench else pgbench
    for c in sorted(bench["connections"].unique()):
        at = size[size["workers"] == c]
        if at.empty:
            continue
        best = at.loc[at["throughput_rps"].idxmax()]
        cases = raw[(raw["workers"] == c) & (raw["pool"] == best["pool"])]["case"]
        pool = throughput_estimate(requests, runs, cases, seed=seed + int(c))
        ref = _pgbench_estimate(bench[bench["connections"] == c])
        ratio = ratio_estimate(pool, ref)
        agree = bool(ratio.low <= 1.0 <= ratio.high) if not math.isnan(ratio.low) else False
        rows.append(
            {
                "connections": int(c),
                "pool_size": int(best["max_size"]),
                "pool_rps": pool.value,
                "pool_low": pool.low,
                "pool_high": pool.high,
                "pool_n": pool.n,
                "pgbench_rps": ref.value,
                "pgbench_low": ref.low,
                "pgbench_high": ref.high,
                "pgbench_n": ref.n,
                "ratio": ratio.value,
                "ratio_low": ratio.low,
                "ratio_high": ratio.high,
                "gap_pct": abs(ratio.value - 1.0) * 100.0,
                "agree": agree,
                "client_cpu_pct": float(best.get("client_cpu_pct", math.nan)),
                "client_bound": bool(best.get("client_bound", False)),
                "pgbench_client_cpu_pct": float(
                    bench[bench["connections"] == c]["client_cpu_pct"].mean()
                ),
            }
        )
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))


def knee_cpu(runs: pd.DataFrame, seed: int = 0) -> dict[str, float | int | bool]:
    """CPU at the size sweep's peak (the knee): client and server % of one core, over repeats.

    ``knee_client_cpu_pct`` comes with ``_low``/``_high``/``_n`` (bootstrap over
    the repeats' runs); ``knee_client_bound`` compares the mean with
    :data:`~perfkit.postgres.cpu.CLIENT_BOUND_PCT`; ``client_bound_runs`` counts
    the size sweep's client-bound runs (of ``size_runs``).
    """
    size = aggregate_size(runs)
    pooled = size[size["pooled"].astype(bool)]
    if pooled.empty or "client_cpu_pct" not in runs:
        return {}
    peak = pooled.loc[pooled["throughput_rps"].idxmax()]
    raw = runs[(runs["experiment"] == "size")]
    at = raw[(raw["workers"] == peak["workers"]) & (raw["pool"] == peak["pool"])]
    client = mean_interval(at["client_cpu_pct"].dropna().to_numpy(), seed=seed)
    server = mean_interval(at["server_cpu_pct"].dropna().to_numpy(), seed=seed + 1)
    return {
        "knee_client_cpu_pct": client.value,
        "knee_client_cpu_low": client.low,
        "knee_client_cpu_high": client.high,
        "knee_client_cpu_n": client.n,
        "knee_server_cpu_pct": server.value,
        "knee_server_cpu_low": server.low,
        "knee_server_cpu_high": server.high,
        "knee_client_bound": bool(client.value >= CLIENT_BOUND_PCT),
        "client_bound_runs": int(raw["client_bound"].astype(bool).sum()),
        "size_runs": len(raw),
        "client_bound_pct": CLIENT_BOUND_PCT,
    }
