"""Pure functions from suite-run frames to numbers: speed-ups, goals, headline samples.

``runs`` is :func:`perfkit.lifecycle.bench.run_matrix`'s ``runs`` frame (one row
per suite run); ``micro_summary`` is :func:`perfkit.lifecycle.micro.summarize`.
:func:`samples_frame` gives the samples behind the headlines (read with :data:`SPEC`).
:func:`versus_native` compares strategies with the suite's own ``native``
baseline (one shared database) as a ratio of medians with a bootstrap interval;
:func:`versus_naive` compares per-test servers with one shared strategy the same way
(the lab suite's 20x and 30x goals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perfkit.errors import ConfigError
from perfkit.headlines import HeadlineSpec
from perfkit.lifecycle.registry import ISOLATING_SHARED, base_strategy

NAIVE = "per-test-server"
NATIVE = "native"
#: The review's goal: the lab suite under per-test servers / under shared+rollback.
SUITE_SPEEDUP_GOAL = 20.0
#: Issue 17's goal: the lab suite under per-test servers / under the best isolating shared
#: strategy, reuse included (``verified``, ``verified+stable-dsn``), by process wall time.
SUITE_REUSE_GOAL = 30.0
#: Goal: a fresh database per test costs at most this factor over the native baseline.
NATIVE_GOAL = 1.25
#: Strategies that give every test a fresh database (the goal above is about them, and
#: about their variants: ``verified+stable-dsn``).
FRESH_DATABASE = ("template", "warm-pool", "verified", "per-test-server")
MIB = 1024 * 1024
VERSUS_NATIVE_COLUMNS = (
    "strategy",
    "workers",
    "n",
    "median_s",
    "native_median_s",
    "ratio",
    "ratio_low",
    "ratio_high",
    "paired",
    "met",
)
#: :func:`headline`'s metric titles -> the report's metric keys (runs saved without samples).
HEADLINE_KEYS = {
    "Test Suite Runtime": "suite_runtime",
    "Container Startup": "container_startup",
    "Memory Usage": "memory",
}
#: How each metric of :func:`samples_frame` becomes a headline (labels come from the samples):
#: every one is a cost, so lower is better.
SPEC = {
    metric: HeadlineSpec(statistic="median", better="lower")
    for metric in ("suite_runtime", "container_startup", "memory", "servers_started")
}


def median_by(runs: pd.DataFrame, value: str) -> pd.DataFrame:
    """Median of ``value`` per (strategy, workers), as a strategy x workers table."""
    ok = runs[runs["exit_code"] == 0]
    return ok.pivot_table(index="strategy", columns="workers", values=value, aggfunc="median")


def best_shared(runs: pd.DataFrame, workers: int | None = None) -> str | None:
    """The isolating shared strategy or variant with the lowest median suite time (``none``
    excluded)."""
    ok = runs[(runs["exit_code"] == 0) & runs["strategy"].isin(ISOLATING_SHARED)]
    if workers is not None:
        ok = ok[ok["workers"] == workers]
    if ok.empty:
        return None
    return str(ok.groupby("strategy")["wall_s"].median().idxmin())


@dataclass(frozen=True)
class NaiveRatio:
    """Median suite time under per-test servers / under ``improved``: the ratio, its bootstrap
    interval, each side's number of runs and whether runs were paired by repetition."""

    improved: str
    ratio: float
    low: float
    high: float
    n_naive: int
    n_improved: int
    paired: bool

    def verdict(self, goal: float) -> str:
        """``met`` when the whole interval is at or above ``goal``, ``not met`` when it is
        below, else ``undecided`` (the interval straddles the goal)."""
        if self.low >= goal:
            return "met"
        return "not met" if self.high < goal else "undecided"


def paired_values(
    sub: pd.DataFrame, base: pd.DataFrame, value: str
) -> tuple[pd.Series, pd.Series, bool]:
    """``value`` of ``sub`` and of ``base``, and whether they are paired: by ``repetition``
    when both ran the same repetitions once each (alternating order cancels drift)."""
    paired = (
        "repetition" in sub.columns
        and "repetition" in base.columns
        and sub["repetition"].is_unique
        and base["repetition"].is_unique
        and set(sub["repetition"]) == set(base["repetition"])
    )
    if paired:
        return sub.sort_values("repetition")[value], base.sort_values("repetition")[value], True
    return sub[value], base[value], False


def versus_naive(
    runs: pd.DataFrame,
    improved: str,
    *,
    workers: int = 1,
    value: str = "wall_s",
    level: float = 0.95,
    seed: int = 0,
) -> NaiveRatio | None:
    """Median ``value`` under per-test servers / under ``improved`` at ``workers``, from the
    successful runs, with :func:`ratio_interval` over the runs; None if a side has none."""
    ok = runs[(runs["exit_code"] == 0) & (runs["workers"] == workers)]
    naive, sub = ok[ok["strategy"] == NAIVE], ok[ok["strategy"] == improved]
    if naive.empty or sub.empty:
        return None
    left, right, paired = paired_values(naive, sub, value)
    ratio, low, high = ratio_interval(left, right, paired=paired, level=level, seed=seed)
    return NaiveRatio(improved, ratio, low, high, len(naive), len(sub), paired)


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


#: The goals frame's columns: ``n`` is the number of runs on the side with fewer.
GOAL_COLUMNS = ("goal", "value", "ci_low", "ci_high", "n", "met")


def goals(runs: pd.DataFrame, micro_summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per acceptance goal: measured value (with its 95 % interval and n when it
    is a ratio of suite runs), target, met."""
    rows: list[dict[str, Any]] = []
    if micro_summary is not None and not micro_summary.empty:
        for _, row in micro_summary.dropna(subset=["goal"]).iterrows():
            value = row["ratio"] if pd.notna(row.get("ratio")) else row["median_s"]
            rows.append(
                {"goal": f"{row['case']}: {row['goal']}", "value": value, "met": bool(row["met"])}
            )
    if "suite" not in runs.columns or (runs["suite"] == "lab").any():
        rows += suite_goals(runs)  # the review's and issue 17's goals are about the lab suite
    rows += native_goals(runs)
    return pd.DataFrame(rows, columns=list(GOAL_COLUMNS))


def suite_goals(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Goal rows of the lab suite at its fewest workers (serial unless only ``-n N`` ran):
    per-test servers / shared+rollback >= 20x (process wall and pytest session time), and
    per-test servers / the best shared strategy >= 30x (process wall time)."""
    ok = runs[runs["exit_code"] == 0]
    workers = int(ok["workers"].min()) if not ok.empty else 1
    at = "" if workers == 1 else f", workers={workers}"
    rows = []
    for value, label in (("wall_s", "process wall time"), ("session_s", "pytest session time")):
        rows.append(
            naive_goal_row(
                f"suite ({label}{at}): shared+rollback >= {SUITE_SPEEDUP_GOAL:g}x faster than "
                f"{NAIVE}",
                versus_naive(runs, "rollback", workers=workers, value=value),
                SUITE_SPEEDUP_GOAL,
            )
        )
    best = best_shared(runs, workers)
    rows.append(
        naive_goal_row(
            f"suite (process wall time{at}): per-test server / best shared "
            f"({best or 'none measured'}) >= {SUITE_REUSE_GOAL:g}x",
            versus_naive(runs, best, workers=workers) if best else None,
            SUITE_REUSE_GOAL,
        )
    )
    return rows


def naive_goal_row(goal: str, found: NaiveRatio | None, target: float) -> dict[str, Any]:
    """A goal row for a per-test-server ratio: met only when its interval clears ``target``."""
    if found is None:
        return {"goal": goal, "value": None, "met": False}
    return {
        "goal": goal,
        "value": found.ratio,
        "ci_low": found.low,
        "ci_high": found.high,
        "n": min(found.n_naive, found.n_improved),
        "met": found.verdict(target) == "met",
    }


def ratio_interval(
    values: Sequence[float],
    baseline: Sequence[float],
    *,
    paired: bool = False,
    level: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """median(values) / median(baseline) and its percentile bootstrap interval.

    ``paired`` resamples positions (value ``i`` ran next to baseline ``i``),
    otherwise the two samples are resampled independently. Seeded, so the
    same runs always give the same interval. NaN when a side is empty.
    """
    v = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if v.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    if paired and v.size != b.size:
        raise ConfigError(f"paired samples differ in size: {v.size} vs {b.size}")
    point = float(np.median(v) / np.median(b))
    rng = np.random.default_rng(seed)
    iv = rng.integers(0, v.size, size=(resamples, v.size))
    ib = iv if paired else rng.integers(0, b.size, size=(resamples, b.size))
    stats = np.median(v[iv], axis=1) / np.median(b[ib], axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return point, float(low), float(high)


def versus_native(
    runs: pd.DataFrame,
    *,
    value: str = "wall_s",
    goal: float = NATIVE_GOAL,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Each strategy's median ``value`` over the native baseline's, per worker count.

    Successful runs only. Runs are paired by ``repetition`` when the frame has
    that column and the strategy and the baseline ran the same repetitions
    once each (alternating order cancels drift); otherwise unpaired. ``met``
    says whether the ratio is within ``goal`` (None for the baseline itself).
    Empty when no native run succeeded.
    """
    ok = runs[runs["exit_code"] == 0] if not runs.empty else runs
    rows: list[dict[str, Any]] = []
    if ok.empty or NATIVE not in set(ok["strategy"]):
        return pd.DataFrame(columns=list(VERSUS_NATIVE_COLUMNS))
    for workers, group in ok.groupby("workers"):
        native = group[group["strategy"] == NATIVE]
        if native.empty:
            continue
        for strategy in [NATIVE, *sorted(set(group["strategy"]) - {NATIVE})]:
            sub = group[group["strategy"] == strategy]
            left, right, paired = paired_values(sub, native, value)
            paired = paired and strategy != NATIVE
            ratio, low, high = (
                (1.0, math.nan, math.nan)
                if strategy == NATIVE
                else ratio_interval(left, right, paired=paired, level=level, seed=seed)
            )
            rows.append(
                {
                    "strategy": strategy,
                    "workers": int(workers),
                    "n": len(sub),
                    "median_s": float(sub[value].median()),
                    "native_median_s": float(native[value].median()),
                    "ratio": ratio,
                    "ratio_low": low,
                    "ratio_high": high,
                    "paired": paired,
                    "met": None if strategy == NATIVE else bool(ratio <= goal),
                }
            )
    return pd.DataFrame(rows, columns=list(VERSUS_NATIVE_COLUMNS))


def native_goals(runs: pd.DataFrame, goal: float = NATIVE_GOAL) -> list[dict[str, Any]]:
    """Goal rows: each fresh-database strategy's suite time within ``goal`` x native."""
    table = versus_native(runs, goal=goal)
    rows = []
    fresh = table["strategy"].map(base_strategy).isin(FRESH_DATABASE)
    native_n = table[table["strategy"] == NATIVE].set_index("workers")["n"]
    for _, row in table[fresh].iterrows():
        rows.append(
            {
                "goal": f"suite (process wall time, workers={row['workers']}): fresh database "
                f"per test ({row['strategy']}) within {goal:g}x of native "
                "(same suite, one shared database)",
                "value": row["ratio"],
                "ci_low": row["ratio_low"],
                "ci_high": row["ratio_high"],
                "n": min(int(row["n"]), int(native_n[row["workers"]])),
                "met": bool(row["met"]),
            }
        )
    return rows


def samples_frame(runs: pd.DataFrame, events: pd.DataFrame, workers: int = 1) -> pd.DataFrame:
    """One row per suite run behind each headline (``metric, variant, unit, value, label,
    run``: the suite run's id):
    per-test server (naive) vs the best shared strategy (improved), at ``workers``."""
    improved = best_shared(runs, workers)
    ok = runs[(runs["exit_code"] == 0) & (runs["workers"] == workers)]
    starts = events[events["event"] == "server_start"] if not events.empty else events
    rows: list[dict[str, Any]] = []
    for variant, strategy in (("naive", NAIVE), ("improved", improved)):
        if strategy is None:
            continue
        label = f"{strategy} (workers={workers})"
        for run in ok[ok["strategy"] == strategy].itertuples():
            start_s = (
                float(starts.loc[starts["run_id"] == run.run_id, "seconds"].sum())
                if not starts.empty
                else math.nan
            )
            for metric, unit, value in (
                ("suite_runtime", "s", float(run.wall_s)),
                ("container_startup", "s", start_s / max(int(run.tests), 1)),
                ("memory", "MiB", float(run.peak_total_bytes) / 2**20),
                ("servers_started", "count", float(run.servers_started)),
            ):
                rows.append(
                    {"metric": metric, "variant": variant, "unit": unit, "value": value}
                    | {"label": label, "run": str(run.run_id)}
                )
    return pd.DataFrame(rows, columns=["metric", "variant", "unit", "value", "label", "run"])
