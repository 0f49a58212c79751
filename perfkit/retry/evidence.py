"""What the retry lab's runs can and cannot tell: verdicts, contenders and the samples frame.

Pure functions of a lab's ``runs`` frame (:mod:`perfkit.retry.experiments`):

- :func:`verdict_frame`: per scenario (cold start; each outage length) and
  metric (overshoot, attempts), :func:`perfkit.verdicts.decide` on the
  per-run values of each label: a winner only when it is separated from every
  other candidate (Holm-corrected rank tests or non-overlapping intervals),
  else "indistinguishable at this n" with the runs that would separate them;
- :func:`contenders`: the leader and the candidates not yet separated from
  it, those whose interval overlaps the leader's most first (where extra runs
  are best spent, :mod:`perfkit.retry.adaptive`);
- :func:`samples_frame`: the per-run values behind measured headlines in the
  lab contract's ``samples`` schema (``metric, variant, unit, value``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from perfkit.headlines import RUN_COLUMN
from perfkit.lab import SAMPLE_COLUMNS
from perfkit.stats import Estimate, quantile_interval
from perfkit.verdicts import Verdict, decide

VERDICT_COLUMNS = (
    "scenario",
    "param_s",
    "metric",
    "candidates",
    "status",
    "winner",
    "best",
    "runner_up",
    "p_value",
    "n",
    "n_runner_up",
    "n_to_separate",
    "text",
)
#: metric column of ``runs`` -> (unit in the verdict's text, scale to it)
METRICS: dict[str, tuple[str, float]] = {"overshoot_s": ("ms", 1000.0), "attempts": ("", 1.0)}
ALL = "all"
#: Most candidates one extra round runs for one comparison (the leader included).
MAX_CONTENDERS = 4


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Candidates compared in one scenario: ``labels`` (None: every label), under a name."""

    scenario: str
    param_s: float | None = None
    labels: tuple[str, ...] | None = None
    name: str = ALL

    @property
    def key(self) -> tuple[str, float | None]:
        return (self.scenario, self.param_s)


def scenario_runs(runs: pd.DataFrame, scenario: str, param_s: float | None) -> pd.DataFrame:
    """The runs of one scenario (and outage length)."""
    sel = runs[runs["scenario"] == scenario]
    if param_s is None or (isinstance(param_s, float) and math.isnan(param_s)):
        return sel
    return sel[sel["param_s"] == param_s]


def samples_by_label(
    runs: pd.DataFrame, comparison: Comparison, metric: str = "overshoot_s"
) -> dict[str, np.ndarray]:
    """Each candidate's per-run values of ``metric`` (NaN, e.g. runs that gave up, dropped)."""
    sel = scenario_runs(runs, comparison.scenario, comparison.param_s)
    labels = (
        comparison.labels if comparison.labels is not None else list(dict.fromkeys(sel["label"]))
    )
    out: dict[str, np.ndarray] = {}
    for label in labels:
        values = sel.loc[sel["label"] == label, metric].to_numpy(dtype=float)
        out[str(label)] = values[~np.isnan(values)]
    return out


def verdict_of(samples: Mapping[str, Sequence[float]], *, seed: int = 0) -> Verdict | None:
    """:func:`perfkit.verdicts.decide` (lower is better), or None for fewer than two candidates."""
    if len(samples) < 2:
        return None
    return decide(samples, lower_is_better=True, seed=seed)


def verdict_row(
    samples: Mapping[str, Sequence[float]],
    comparison: Comparison,
    metric: str = "overshoot_s",
    *,
    seed: int = 0,
) -> dict[str, Any] | None:
    """One row of the ``verdicts`` frame (None for fewer than two candidates)."""
    verdict = verdict_of(samples, seed=seed)
    if verdict is None:
        return None
    unit, scale = METRICS.get(metric, ("", 1.0))
    rival = verdict.rival
    comp = next((c for c in verdict.comparisons if c.other == rival), None)
    best_est = verdict.estimates.get(verdict.best) if verdict.best else None
    rival_est = verdict.estimates.get(rival) if rival else None
    return {
        "scenario": comparison.scenario,
        "param_s": comparison.param_s if comparison.param_s is not None else math.nan,
        "metric": metric,
        "candidates": comparison.name,
        "status": verdict.status,
        "winner": verdict.winner,
        "best": verdict.best,
        "runner_up": rival,
        "p_value": comp.p_adjusted if comp is not None else math.nan,
        "n": best_est.n if best_est is not None else 0,
        "n_runner_up": rival_est.n if rival_est is not None else 0,
        "n_to_separate": verdict.n_to_separate,
        "text": verdict.text(unit=unit, scale=scale),
    }


def comparisons_of(runs: pd.DataFrame, *, fitted: str | None = "fitted") -> list[Comparison]:
    """The lab's comparisons: named strategies per scenario, and the fitted schedule's own.

    Cold start and every outage length compare the named strategies (every
    label but ``fitted``); the cold start also compares ``fitted`` with naive
    and the review's backoff, when they ran.
    """
    out: list[Comparison] = []
    cold = scenario_runs(runs, "cold_start", None)
    if not cold.empty:
        labels = [str(x) for x in dict.fromkeys(cold["label"]) if x != fitted]
        out.append(Comparison(scenario="cold_start", labels=tuple(labels)))
        present = set(cold["label"])
        if fitted is not None and fitted in present:
            rivals = [x for x in ("naive", "review") if x in present]
            if rivals:
                out.append(
                    Comparison(
                        scenario="cold_start",
                        labels=(fitted, *rivals),
                        name=f"{fitted} vs {', '.join(rivals)}",
                    )
                )
    outage = runs[runs["scenario"] == "outage"]
    for length in sorted(set(outage["param_s"].dropna())):
        out.append(Comparison(scenario="outage", param_s=float(length)))
    return out


def verdict_frame(
    runs: pd.DataFrame,
    *,
    metrics: Sequence[str] = ("overshoot_s", "attempts"),
    fitted: str | None = "fitted",
    seed: int = 0,
) -> pd.DataFrame:
    """The ``verdicts`` frame: a row per comparison and metric (:data:`VERDICT_COLUMNS`)."""
    rows = []
    for comparison in comparisons_of(runs, fitted=fitted):
        for metric in metrics:
            row = verdict_row(
                samples_by_label(runs, comparison, metric), comparison, metric, seed=seed
            )
            if row is not None:
                rows.append(row)
    return pd.DataFrame(rows, columns=list(VERDICT_COLUMNS))


def overlap(a: Estimate, b: Estimate) -> float:
    """How much two intervals overlap: their intersection over their union (0 to 1)."""
    union = max(a.high, b.high) - min(a.low, b.low)
    inter = min(a.high, b.high) - max(a.low, b.low)
    if any(math.isnan(x) for x in (union, inter)) or inter < 0:
        return 0.0
    return 1.0 if union <= 0 else float(inter / union)


def contenders(
    samples: Mapping[str, Sequence[float]], *, seed: int = 0, limit: int = MAX_CONTENDERS
) -> list[str]:
    """Where more runs help: the leader, then the candidates not separated from it.

    Those whose median interval overlaps the leader's most come first; at
    most ``limit`` labels. Empty when the leader is already separated from
    every other. With too few runs to judge (insufficient), every candidate.
    """
    return contenders_of(verdict_of(samples, seed=seed), list(samples), limit=limit)


def contenders_of(
    verdict: Verdict | None, labels: Sequence[str], *, limit: int = MAX_CONTENDERS
) -> list[str]:
    """:func:`contenders` of a verdict already made on ``labels``."""
    if verdict is None or verdict.status == "separated":
        return []
    if verdict.status == "insufficient" or verdict.best is None:
        return list(labels)[:limit]
    leader = verdict.best
    lead = verdict.estimates[leader]
    open_ = [c.other for c in verdict.comparisons if not c.separated]
    open_.sort(key=lambda name: -overlap(lead, verdict.estimates[name]))
    return [leader, *open_][:limit]


def runs_needed(verdict: Verdict | None) -> float:
    """Extra runs per candidate the verdict estimates would separate it (0: decided).

    ``inf`` when no difference was observed (more runs need not help); with
    too few runs to judge, one more.
    """
    if verdict is None or verdict.status == "separated":
        return 0.0
    if verdict.status == "insufficient" or verdict.best is None:
        return 1.0
    if verdict.n_to_separate is None:
        return math.inf
    now = verdict.estimates[verdict.best].n
    return float(max(1, verdict.n_to_separate - now))


def interval(values: Sequence[float], *, seed: int = 0) -> Estimate:
    """The median with its seeded 95 % bootstrap interval (NaN dropped)."""
    data = np.asarray(values, dtype=float)
    return quantile_interval(data[~np.isnan(data)], 0.5, seed=seed)


def samples_frame(runs: pd.DataFrame, variants: Mapping[str, str]) -> pd.DataFrame:
    """Per-run cold-start values behind the measured headlines (``SAMPLE_COLUMNS`` and
    ``run``: the repetition).

    ``variants`` maps a headline variant (``naive``/``improved``) to a label.
    Metrics: ``cold_start_time_to_connect`` and ``cold_start_overshoot``, in s.
    """
    cold = scenario_runs(runs, "cold_start", None)
    parts = []
    for variant, label in variants.items():
        sel = cold[cold["label"] == label]
        for metric, column in (
            ("cold_start_time_to_connect", "time_to_connect_s"),
            ("cold_start_overshoot", "overshoot_s"),
        ):
            chosen = sel[sel[column].notna()]
            parts.append(
                pd.DataFrame(
                    {
                        "metric": metric,
                        "variant": variant,
                        "unit": "s",
                        "value": chosen[column].to_numpy(dtype=float),
                        RUN_COLUMN: chosen["rep"].to_numpy() if "rep" in chosen else 0,
                    }
                )
            )
    if not parts:
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN])
    return pd.concat(parts, ignore_index=True)[[*SAMPLE_COLUMNS, RUN_COLUMN]]
