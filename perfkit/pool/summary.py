"""Pure summaries of a workload run: throughput, wait percentiles, error counts.

psycopg_pool only reports total wait milliseconds; percentiles come from the
per-request ``wait_ms`` the runner times itself.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 95, 99)


def _pct(series: pd.Series, q: float) -> float:
    s = series.dropna()
    return float(s.quantile(q / 100.0)) if len(s) else math.nan


def summarize(requests: pd.DataFrame, elapsed_s: float) -> dict[str, Any]:
    """One row of numbers describing a run's ``requests`` frame.

    ``throughput_rps`` counts successful requests per second of ``elapsed_s``.
    Wait percentiles cover every request (failed acquisitions included: a
    timeout is a long wait); SQL and hold percentiles cover those that got a
    connection.
    """
    n = len(requests)
    ok = int(requests["ok"].sum()) if n else 0
    out: dict[str, Any] = {
        "requests": n,
        "successes": ok,
        "errors": n - ok,
        "elapsed_s": elapsed_s,
        "throughput_rps": ok / elapsed_s if elapsed_s > 0 else math.nan,
        "error_rate": (n - ok) / n if n else math.nan,
    }
    for col in ("wait_ms", "sql_ms", "hold_ms", "total_ms"):
        for p in PERCENTILES:
            out[f"{col.removesuffix('_ms')}_p{p}_ms"] = _pct(requests[col], p)
        out[f"{col.removesuffix('_ms')}_max_ms"] = (
            float(requests[col].max()) if requests[col].notna().any() else math.nan
        )
    counts = requests.loc[~requests["ok"], "error"].value_counts() if n else pd.Series()
    for name in ("PoolTimeout", "TooManyRequests"):
        out[f"n_{name}"] = int(counts.get(name, 0))
    out["n_other_errors"] = int(counts.sum()) - out["n_PoolTimeout"] - out["n_TooManyRequests"]
    stages = requests["stage"].value_counts() if n else pd.Series()
    out["n_acquire_errors"] = int(stages.get("acquire", 0))
    out["n_query_errors"] = int(stages.get("query", 0))
    return out


def churn(stats: pd.DataFrame, elapsed_s: float) -> dict[str, float]:
    """Connections opened and lost during a run, per minute, from the stats samples."""
    if stats.empty or elapsed_s <= 0:
        return {"connections_opened": math.nan, "reconnects_per_min": math.nan}
    first, last = stats.iloc[0], stats.iloc[-1]
    opened = float(last["connections_num"] - first["connections_num"])
    return {
        "connections_opened": opened,
        "reconnects_per_min": opened / elapsed_s * 60.0,
        "connections_lost": float(last["connections_lost"] - first["connections_lost"]),
        "max_pool_size": float(stats["pool_size"].max()),
        "max_requests_waiting": float(stats["requests_waiting"].max()),
    }


def recovery_time(requests: pd.DataFrame, fault_s: float) -> float:
    """Seconds from ``fault_s`` until a request started after the fault (and after the last
    failure, if any) completes successfully: how long clients saw the pool broken.

    A request that merely waited through the outage counts until it finished,
    so an outage the pool hides by blocking still shows. NaN when no success
    followed.
    """
    after = requests[requests["start_s"] >= fault_s]
    failed = after[~after["ok"]]
    since = failed["start_s"].max() if not failed.empty else fault_s
    ok_after = after[after["ok"] & (after["start_s"] >= since)]
    if ok_after.empty:
        return math.nan
    ends = ok_after["start_s"] + ok_after["total_ms"] / 1000.0
    return float(ends.min() - fault_s)


def first_ok_after(requests: pd.DataFrame, t_s: float) -> float:
    """Seconds from ``t_s`` to the first successful completion of a request started after it.

    With ``t_s`` = when the server was back up: how long the pool took to serve again.
    NaN when none.
    """
    ok = requests[requests["ok"] & (requests["start_s"] >= t_s)]
    if ok.empty:
        return math.nan
    return float((ok["start_s"] + ok["total_ms"] / 1000.0).min() - t_s)


def first_ok_end_after(requests: pd.DataFrame, t_s: float) -> float:
    """Seconds from ``t_s`` to the first successful completion after it, whenever it started.

    With ``t_s`` = when the server was back up: how long until the pool served a
    request again (a request that waited in ``getconn`` through the outage counts
    when it completes). NaN when nothing succeeded after ``t_s``.
    """
    ok = requests[requests["ok"]]
    ends = ok["start_s"] + ok["total_ms"] / 1000.0
    after = ends[ends >= t_s]
    return float(after.min() - t_s) if not after.empty else math.nan


def throughput_bins(requests: pd.DataFrame, elapsed_s: float, bin_s: float) -> np.ndarray:
    """Successful requests/s in consecutive bins of about ``bin_s`` covering ``[0, elapsed_s]``.

    The bins split ``elapsed_s`` evenly (width ``elapsed_s / n``), so their mean
    is the run's ``throughput_rps``: the samples behind its interval.
    Completions are counted by when they ended.
    """
    if elapsed_s <= 0 or len(requests) == 0:
        return np.array([], dtype=float)
    n = max(round(elapsed_s / bin_s), 1)
    width = elapsed_s / n
    ok = requests[requests["ok"]]
    ends = (ok["start_s"] + ok["total_ms"] / 1000.0).to_numpy()
    idx = np.clip(np.floor(ends / width), 0, n - 1).astype(int)
    return np.bincount(idx, minlength=n).astype(float) / width


def time_to_size(stats: pd.DataFrame, size: int, after_s: float = 0.0) -> float:
    """Seconds after ``after_s`` until a sample shows ``pool_size`` >= ``size``.

    NaN when the pool never got there.
    """
    hit = stats[(stats["t_s"] >= after_s) & (stats["pool_size"] >= size)]
    return float(hit["t_s"].min() - after_s) if not hit.empty else math.nan


def service_gap(requests: pd.DataFrame, fault_s: float) -> float:
    """Longest time without any successful completion, from the last one before ``fault_s``.

    NaN when nothing succeeded after the fault.
    """
    ok = requests[requests["ok"]]
    ends = (ok["start_s"] + ok["total_ms"] / 1000.0).sort_values()
    before = ends[ends < fault_s]
    after = ends[ends >= fault_s]
    if after.empty:
        return math.nan
    points = pd.concat([before.tail(1) if not before.empty else pd.Series([fault_s]), after])
    return float(points.diff().max()) if len(points) > 1 else float(after.iloc[0] - fault_s)
