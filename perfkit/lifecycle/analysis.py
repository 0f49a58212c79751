"""Pure functions from suite-run frames to conclusions: speed-ups, goals, headline numbers.

``runs`` is :func:`perfkit.lifecycle.bench.run_matrix`'s ``runs`` frame (one row
per suite run); ``micro_summary`` is :func:`perfkit.lifecycle.micro.summarise`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from perfkit.lifecycle.registry import SHARED

NAIVE = "per-test-server"
SUITE_SPEEDUP_GOAL = 20.0
MIB = 1024 * 1024


def median_by(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Median of ``value`` per (strategy, workers), as a strategy x workers table."""
    ok = runs[runs["exit_code"] == 0]
    return ok.pivot_table(index="strategy", columns="workers", values=value, aggfunc="median")


def best_shared(runs: pd.DataFrame, workers: int | None = None) -> str | None:
    """The isolating shared strategy with the lowest median suite time (``none`` excluded)."""
    ok = runs[(runs["exit_code"] == 0) & runs["strategy"].isin([s for s in SHARED if s != "none"])]
    if workers is not None:
        ok = ok[ok["workers"] == workers]
    if ok.empty:
        return None
    return str(ok.groupby("strategy")["wall_s"].median().idxmin())


def speedup(
    runs: pd.DataFrame,
    *,
    naive: str = NAIVE,
    improved: str = "rollback",
    workers: int = 1,
    value: str = "wall_s",
) -> float | None:
    """Median ``value`` of ``naive`` / ``improved`` at ``workers`` (None if either is missing).

    ``wall_s`` is the whole pytest process; ``session_s`` excludes interpreter start-up
    (closer to the review's ``finished in ...`` figures).
    """
    table = median_by(runs, value)
    try:
        return float(table.loc[naive, workers] / table.loc[improved, workers])
    except KeyError:
        return None


def parallel_gain(runs: pd.DataFrame, strategy: str, workers: int = 2) -> float | None:
    """Serial median suite time / median with ``workers`` workers, for one strategy."""
    table = median_by(runs, "wall_s")
    try:
        return float(table.loc[strategy, 1] / table.loc[strategy, workers])
    except KeyError:
        return None


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


def headline(runs: pd.DataFrame, events: pd.DataFrame, workers: int = 1) -> pd.DataFrame:
    """Naive (per-test server) vs improved (best shared strategy) for the summary report.

    Rows: ``Test Suite Runtime`` (s), ``Container Startup`` (s of server start per
    test: every test under per-test-server, the shared start amortised over the
    run's tests otherwise), ``Memory Usage`` (peak MiB) and ``Servers Started``.
    """
    improved = best_shared(runs, workers)
    ok = runs[(runs["exit_code"] == 0) & (runs["workers"] == workers)]
    naive_runs = ok[ok["strategy"] == NAIVE]
    good_runs = ok[ok["strategy"] == improved]
    starts = events[events["event"] == "server_start"] if not events.empty else events

    def start_per_test(frame: pd.DataFrame) -> float | None:
        if frame.empty or starts.empty:
            return None
        per_run = [
            starts.loc[starts["run_id"] == run_id, "seconds"].sum() / max(n, 1)
            for run_id, n in zip(frame["run_id"], frame["tests"], strict=True)
        ]
        return float(pd.Series(per_run).median())

    rows: list[dict[str, Any]] = [
        {
            "metric": "Test Suite Runtime",
            "unit": "s",
            "naive": _median(naive_runs["wall_s"]),
            "improved": _median(good_runs["wall_s"]),
        },
        {
            "metric": "Container Startup",
            "unit": "s per test",
            "naive": start_per_test(naive_runs),
            "improved": start_per_test(good_runs),
        },
        {
            "metric": "Memory Usage",
            "unit": "MiB peak",
            "naive": _mib(_median(naive_runs["peak_total_bytes"])),
            "improved": _mib(_median(good_runs["peak_total_bytes"])),
        },
        {
            "metric": "Servers Started",
            "unit": "count",
            "naive": _median(naive_runs["servers_started"]),
            "improved": _median(good_runs["servers_started"]),
        },
    ]
    frame = pd.DataFrame(rows)
    frame["naive_label"] = NAIVE
    frame["improved_label"] = improved
    frame["workers"] = workers
    frame["tests"] = _median(ok["tests"]) if not ok.empty else None
    frame["improvement_pct"] = [
        100.0 * (n - i) / n if n and i is not None else None
        for n, i in zip(frame["naive"], frame["improved"], strict=True)
    ]
    return frame


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


def goals(runs: pd.DataFrame, micro_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per acceptance goal: measured value, target, met."""
    rows: list[dict[str, Any]] = []
    if micro_summary is not None and not micro_summary.empty:
        for _, row in micro_summary.dropna(subset=["goal"]).iterrows():
            value = row["ratio"] if pd.notna(row.get("ratio")) else row["median_s"]
            rows.append(
                {"goal": f"{row['case']}: {row['goal']}", "value": value, "met": bool(row["met"])}
            )
    for value, label in (("wall_s", "process wall time"), ("session_s", "pytest session time")):
        ratio = speedup(runs, improved="rollback", workers=1, value=value)
        rows.append(
            {
                "goal": f"suite ({label}): shared+rollback >= {SUITE_SPEEDUP_GOAL:g}x "
                f"faster than {NAIVE}",
                "value": ratio,
                "met": ratio is not None and ratio >= SUITE_SPEEDUP_GOAL,
            }
        )
    return pd.DataFrame(rows)
