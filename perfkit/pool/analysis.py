"""The pool lab's analysis: frames -> findings, samples, headlines and tables (pure functions).

:func:`findings` is the one row of figures the lab saves (frame
:data:`FINDINGS_FRAME`), :func:`samples_frame` the raw samples behind the
headlines and :func:`headlines` the headlines themselves; :func:`table` picks
the columns the notebook shows per experiment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from perfkit import headlines as headline_schema
from perfkit.headlines import RUN_COLUMN
from perfkit.lab import SAMPLE_COLUMNS
from perfkit.pool.reference import case_bins, knee_cpu
from perfkit.pool.summary import time_to_size
from perfkit.pool.sweeps import aggregate_size, cores, rule_of_thumb

#: The saved frame holding :func:`findings` (one row). Its name predates "findings";
#: saved runs, the report and the tests read it under this name.
FINDINGS_FRAME = "conclusions"

#: Tag columns only some experiments set, and their value for the others.
TAG_DEFAULTS: dict[str, Any] = {"rule": False, "fault": ""}


def fill_tags(df: pd.DataFrame) -> pd.DataFrame:
    """Give experiment-specific tag columns a value in every row (so CSV types stay clean)."""
    df = df.copy()
    for col, default in TAG_DEFAULTS.items():
        if col in df.columns:
            filled = df[col].astype(object).where(df[col].notna(), default)
            df[col] = filled.astype(type(default))
    return df


# -- findings ---------------------------------------------------------------------------


def findings(
    frames: Mapping[str, pd.DataFrame], *, preset_workers: int, seed: int
) -> dict[str, Any]:
    """The figures of one run, computed from its frames (one flat dict)."""
    runs = frames["runs"]
    out: dict[str, Any] = {"cores": cores(), "rule_of_thumb_size": rule_of_thumb(cores())}
    out |= _size_findings(runs)
    out |= _preset_findings(runs)
    out["preset_workers"] = preset_workers
    out |= _checkout_findings(frames.get("checkout_summary"))
    out |= _spike_findings(runs, frames.get("stats"))
    out |= _recovery_findings(runs)
    out |= knee_cpu(runs, seed=seed)
    out |= _reference_findings(frames)
    out["leaked_total"] = int(runs["leaked"].fillna(0).sum())
    out["requests_total"] = int(runs["requests"].sum())
    out["requests_add_up"] = bool((runs["requests"] == runs["successes"] + runs["errors"]).all())
    return out


def saved_findings(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The findings a run saved (its :data:`FINDINGS_FRAME` row) as a dict."""
    return frames[FINDINGS_FRAME].iloc[0].to_dict()


def _size_findings(runs: pd.DataFrame) -> dict[str, Any]:
    """The peak of the size sweep, the rule of thumb's size there, and no pool."""
    agg = aggregate_size(runs)
    size = agg[agg["pooled"]]
    peak = size.loc[size["throughput_rps"].idxmax()]
    out: dict[str, Any] = {
        "peak_throughput_rps": float(peak["throughput_rps"]),
        "peak_pool_size": int(peak["max_size"]),
        "peak_workers": int(peak["workers"]),
    }
    rule = size[size["max_size"] == rule_of_thumb(cores())]
    if not rule.empty:
        at = rule[rule["workers"] == peak["workers"]]
        if not at.empty:
            out["rule_size_throughput_rps"] = float(at["throughput_rps"].iloc[0])
    no_pool = agg[~agg["pooled"]]
    if not no_pool.empty:
        out["no_pool_throughput_rps"] = float(no_pool["throughput_rps"].max())
    return out


#: Preset pool name -> its key in the findings.
PRESET_KEYS = (
    ("review", "review"),
    ("psycopg-defaults", "defaults"),
    ("best-found", "best"),
    ("no-pool", "no_pool_preset"),
)


def _preset_findings(runs: pd.DataFrame) -> dict[str, Any]:
    presets = runs[runs["experiment"] == "presets"].set_index("pool")
    out: dict[str, Any] = {}
    for name, key in PRESET_KEYS:
        if name in presets.index:
            out[f"{key}_throughput_rps"] = float(presets.loc[name, "throughput_rps"])
            out[f"{key}_wait_p99_ms"] = float(presets.loc[name, "wait_p99_ms"])
            out[f"{key}_max_size"] = int(presets.loc[name, "max_size"])
    return out


def _checkout_findings(cs: pd.DataFrame | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if cs is None or cs.empty:
        return out
    by = cs.set_index("check")
    for flag, key in ((False, "nocheck"), (True, "check")):
        if flag in by.index:
            out[f"checkout_{key}_p50_ms"] = float(by.loc[flag, "checkout_p50_ms"])
            out[f"checkout_{key}_p99_ms"] = float(by.loc[flag, "checkout_p99_ms"])
    return out


def _spike_findings(runs: pd.DataFrame, stats: pd.DataFrame | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, row in runs[runs["experiment"] == "spike"].iterrows():
        key = f"spike_min{int(row['min_size'])}"
        out[f"{key}_wait_max_ms"] = float(row["wait_max_ms"])
        if stats is not None and not stats.empty:
            s = stats[stats["case"] == row["case"]]
            out[f"{key}_time_to_max_s"] = time_to_size(s, int(row["max_size"]))
    return out


def _recovery_findings(runs: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, row in runs[runs["experiment"] == "recovery"].iterrows():
        tag = f"{row['fault']}_{'check' if row['check'] else 'nocheck'}"
        out[f"recovery_{tag}_s"] = float(row["recovery_s"])
        out[f"recovery_{tag}_gap_s"] = float(row["service_gap_s"])
        out[f"recovery_{tag}_after_up_s"] = float(row["ok_after_faults_s"])
        out[f"recovery_{tag}_query_errors"] = int(row["n_query_errors"])
    return out


def _reference_findings(frames: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """pgbench agreement, the processes sweep and the long outages."""
    out: dict[str, Any] = {}
    compare = frames.get("pgbench_compare")
    if compare is not None and not compare.empty:
        out["pgbench_max_gap_pct"] = float(compare["gap_pct"].max())
        out["pgbench_agree_all"] = bool(compare["agree"].all())
    mp = frames.get("multiproc")
    if mp is not None and not mp.empty:
        for _, row in mp.iterrows():
            out[f"multiproc_{int(row['processes'])}_rps"] = float(row["throughput_rps"])
        out["multiproc_requests_add_up"] = bool(mp["requests_add_up"].all())
        out["multiproc_leaked"] = int(mp["leaked"].sum())
        out["multiproc_over_max_connections"] = bool(mp["over_max_connections"].any())
    lo = frames.get("long_outage")
    if lo is not None and not lo.empty:
        out["long_outage_recovered"] = int(lo["recovered"].sum())
        out["long_outage_cases"] = len(lo)
    return out


# -- samples and headlines --------------------------------------------------------------


def samples_frame(runs: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """The samples behind the headlines: per-bin throughput and per-request wait of the
    review preset (``naive``) and the best size found (``improved``)."""
    parts = []
    presets = runs[runs["experiment"] == "presets"]
    for variant, name in (("naive", "review"), ("improved", "best-found")):
        cases = presets.loc[presets["pool"] == name, "case"]
        if cases.empty:
            continue
        for case in cases:  # each case is one workload run: the unit of replication
            bins = case_bins(requests, runs, [case])
            waits = requests.loc[requests["case"] == case, "wait_ms"].dropna().to_numpy()
            for metric, unit, values in (
                ("pool_throughput", "rps", bins),
                ("pool_wait_p99", "ms", waits),
            ):
                parts.append(
                    pd.DataFrame(
                        {
                            "metric": metric,
                            "variant": variant,
                            "unit": unit,
                            "value": np.asarray(values, dtype=float),
                            RUN_COLUMN: int(case),
                        }
                    )
                )
    if not parts:
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN])
    return pd.concat(parts, ignore_index=True)[[*SAMPLE_COLUMNS, RUN_COLUMN]]


#: The headline metrics: statistic of their samples (per-bin throughput, per-request wait).
SPEC = {
    "pool_throughput": headline_schema.HeadlineSpec(statistic="mean", better="higher"),
    "pool_wait_p99": headline_schema.HeadlineSpec(statistic="p99", better="lower"),
}
_HEADLINES = (  # metric, findings key, unit, what
    ("pool_throughput", "throughput_rps", "rps", "throughput"),
    ("pool_wait_p99", "wait_p99_ms", "ms", "p99 wait for a connection"),
)
_VARIANTS = (("naive", "review", "review preset"), ("improved", "best", "best-found"))


def _labels(c: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    return {
        (metric, variant): f"{name} (max_size={c.get(f'{preset}_max_size')}, "
        f"{c.get('preset_workers')} workers): {what}"
        for metric, _, _, what in _HEADLINES
        for variant, preset, name in _VARIANTS
    }


def headlines(c: Mapping[str, Any], samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """Throughput and p99 wait: the review's pool preset vs the best size found.

    From the samples (:data:`SPEC`: the mean of per-bin throughput, the p99 of
    per-request waits; the bins split each run evenly, so their mean is its
    throughput) through :func:`perfkit.headlines.from_samples`, like every
    lab. A run saved before the lab kept samples gets its values from the
    findings ``c``, without n or interval.
    """
    labels = _labels(c)
    if samples is not None and not samples.empty:
        ordered = pd.concat([samples[samples["metric"] == metric] for metric in SPEC])
        return headline_schema.from_samples(ordered, SPEC, labels=labels, seed=1)
    out: list[headline_schema.Headline] = []
    for metric, key, unit, _ in _HEADLINES:
        for variant, preset, _ in _VARIANTS:
            value = c.get(f"{preset}_{key}")
            if isinstance(value, int | float) and math.isfinite(value):
                label = labels[(metric, variant)]
                out.append(
                    headline_schema.Headline(
                        metric=metric,
                        variant=variant,
                        value=float(value),
                        unit=unit,
                        label=label,
                        better=SPEC[metric].better,
                    )
                )
    return headline_schema.headline_frame(out)


# -- tables ---------------------------------------------------------------------------


#: Columns of the per-experiment tables the notebook shows.
TABLE_COLUMNS: dict[str, list[str]] = {
    "size": [
        "pool",
        "workers",
        "max_size",
        "rule",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p95_ms",
        "wait_p99_ms",
        "sql_p50_ms",
        "client_cpu_pct",
        "server_cpu_pct",
        "client_bound",
        "errors",
        "leaked",
        "n_repeats",
    ],
    "spike": [
        "pool",
        "min_size",
        "max_size",
        "throughput_rps",
        "wait_p99_ms",
        "wait_max_ms",
        "max_pool_size",
        "max_requests_waiting",
    ],
    "timeout": [
        "pool",
        "workers",
        "requests",
        "successes",
        "n_PoolTimeout",
        "n_TooManyRequests",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p99_ms",
        "wait_max_ms",
    ],
    "churn": [
        "pool",
        "connections_opened",
        "reconnects_per_min",
        "total_p50_ms",
        "total_p99_ms",
        "total_max_ms",
        "throughput_rps",
    ],
    "recovery": [
        "pool",
        "fault",
        "check",
        "requests",
        "errors",
        "n_query_errors",
        "n_acquire_errors",
        "recovery_s",
        "service_gap_s",
        "faults_done_s",
        "ok_after_faults_s",
        "total_max_ms",
    ],
    "presets": [
        "experiment",
        "mode",
        "pool",
        "min_size",
        "max_size",
        "timeout_s",
        "check",
        "workers",
        "throughput_rps",
        "wait_p50_ms",
        "wait_p99_ms",
        "total_p99_ms",
        "errors",
    ],
}


def table(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The summary rows of one experiment with its display columns (``presets`` adds async)."""
    wanted = ["presets", "async"] if experiment == "presets" else [experiment]
    df = aggregate_size(runs) if experiment == "size" else runs[runs["experiment"].isin(wanted)]
    cols = [c for c in TABLE_COLUMNS[experiment] if c in df.columns]
    return df[cols].round(3).reset_index(drop=True)
