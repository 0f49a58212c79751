"""The streaming lab's numbers from its frames: pure functions, no I/O.

:func:`compare` (the ``summary`` table per method), :func:`samples_frame` (the
raw samples behind the headlines), :func:`headline_labels` and :func:`findings`
(the figures the conclusions are worded from).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from perfkit.headlines import HeadlineSpec
from perfkit.streaming.settings import METHODS

SAMPLES_COLUMNS = ["metric", "variant", "unit", "value", "method", "run"]
#: Headline metric -> what it measures (for the headline labels).
HEADLINE_METRICS = {"streaming_rss_growth": "RSS growth", "streaming_python_peak": "Python peak"}
#: How each headline metric's samples become its headline: the median; less memory is better.
SPEC = {metric: HeadlineSpec(statistic="median", better="lower") for metric in HEADLINE_METRICS}


def _traced_and_timed(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The traced runs (Python memory) and the untraced ones (RSS, time; all runs if none)."""
    traced = runs[runs["traced"]]
    timed = runs[~runs["traced"]] if (~runs["traced"]).any() else runs
    return traced, timed


def compare(runs: pd.DataFrame, baseline: str = "fetchall") -> pd.DataFrame:
    """Per method: median peak Python memory (traced runs), RSS growth and wall time (untraced
    runs when present), and how many times lower than ``baseline`` the memory figures are."""
    traced, timed = _traced_and_timed(runs)
    out = pd.DataFrame(
        {
            "py_peak_bytes": traced.groupby("method")["py_peak_bytes"].median(),
            "rss_growth_bytes": timed.groupby("method")["rss_growth_bytes"].median(),
            "wall_s": timed.groupby("method")["wall_s"].median(),
        }
    )
    for col in ("py_peak_bytes", "rss_growth_bytes"):
        if baseline in out.index:
            out[f"{col.removesuffix('_bytes')}_x_lower"] = out.loc[baseline, col] / out[col].clip(
                lower=1
            )
    order = [m for m in METHODS if m in out.index]
    return out.loc[order].reset_index().rename(columns={"index": "method"})


def samples_frame(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The measurements behind the headlines: fetchall (naive) vs the streaming method with
    the lowest median (improved), for RSS growth (untimed runs) and Python peak (traced);
    ``run`` is the repeat each measurement came from."""
    by = summary.set_index("method")
    streaming = [m for m in ("stream", "server_cursor") if m in by.index]
    if "fetchall" not in by.index or not streaming:
        return pd.DataFrame(columns=SAMPLES_COLUMNS)
    traced, timed = _traced_and_timed(runs)
    rows = []
    for metric, column, source in (
        ("streaming_rss_growth", "rss_growth_bytes", timed),
        ("streaming_python_peak", "py_peak_bytes", traced),
    ):
        best = min(streaming, key=lambda m: float(by.loc[m, column]))
        for variant, method in (("naive", "fetchall"), ("improved", best)):
            chosen = source[source["method"] == method]
            repeats = chosen["repeat"] if "repeat" in chosen.columns else [0] * len(chosen)
            for value, repeat in zip(chosen[column], repeats, strict=True):
                rows.append(
                    {"metric": metric, "variant": variant, "unit": "B", "value": float(value)}
                    | {"method": method, "run": int(repeat)}
                )
    return pd.DataFrame(rows, columns=SAMPLES_COLUMNS)


def headline_labels(samples: pd.DataFrame, rows: int) -> dict[tuple[str, str], str]:
    """Per (metric, variant) of :func:`samples_frame`: "<method>: <what> reading <rows> rows"."""
    return {
        (m, v): f"{g['method'].iloc[0]}: {HEADLINE_METRICS[m]} reading {rows:,} rows"
        for (m, v), g in samples.groupby(["metric", "variant"])
    }


def findings(summary: pd.DataFrame, rows: int, baseline: str = "fetchall") -> dict[str, Any]:
    """Headline figures from :func:`compare`'s table: peaks in MiB and x-lower ratios."""
    out: dict[str, Any] = {"rows": rows}
    by = summary.set_index("method")
    for method in by.index:
        out[f"{method}_py_peak_mib"] = float(by.loc[method, "py_peak_bytes"]) / 2**20
        out[f"{method}_rss_growth_mib"] = float(by.loc[method, "rss_growth_bytes"]) / 2**20
        out[f"{method}_wall_s"] = float(by.loc[method, "wall_s"])
    streaming = [m for m in ("server_cursor", "stream") if m in by.index]
    if baseline in by.index and streaming:
        worst_py = min(float(by.loc[m, "py_peak_x_lower"]) for m in streaming)
        worst_rss = min(float(by.loc[m, "rss_growth_x_lower"]) for m in streaming)
        out["streaming_min_py_x_lower"] = worst_py
        out["streaming_min_rss_x_lower"] = worst_rss
        out["goal_10x_met"] = bool(worst_py >= 10 and worst_rss >= 10)
    return out
