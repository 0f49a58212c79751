"""Headline numbers: the one long schema in which every lab reports what the report shows.

A lab builds :class:`Headline` items (metric, variant ``naive``/``improved``,
value, unit, label, and where it has the samples: ``n`` and a 95 % interval
``ci_low``/``ci_high``) and returns :func:`headline_frame` from its contract's
``headlines()``; :mod:`perfkit.summary` lays them next to the review's claims.
This module sits below the labs, so a lab never imports the report layer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from perfkit.errors import ConfigError
from perfkit.stats import (
    Estimate,
    exact_median_interval,
    hierarchical_interval,
    mean_interval,
    per_group,
    quantile_interval,
    quantile_of,
    statistic_of,
)

VARIANTS = ("naive", "improved")
#: Which way a metric improves: a lower value (times, memory) or a higher one (throughput).
BETTER = ("lower", "higher")
HEADLINE_COLUMNS = (
    "metric",
    "variant",
    "value",
    "unit",
    "label",
    "n",
    "ci_low",
    "ci_high",
    "better",
)
#: unit -> (the unit the report shows, factor to it)
UNIT_SCALE = {"s": ("s", 1.0), "ms": ("s", 1e-3), "MiB": ("MiB", 1.0), "MB": ("MiB", 1e6 / 2**20)}
UNIT_SCALE["B"] = ("MiB", 1 / 2**20)
UNIT_SCALE["bytes"] = UNIT_SCALE["B"]
UNIT_SCALE["GiB"] = ("MiB", 1024.0)
UNIT_SCALE["count"] = ("count", 1.0)
UNIT_SCALE["rps"] = ("rps", 1.0)


def _check_better(better: object, what: str) -> None:
    if better not in BETTER:
        raise ConfigError(f"{what}: better must be 'lower' or 'higher', got {better!r}")


@dataclass(frozen=True, kw_only=True)
class Headline:
    """One headline number of a lab: e.g. connection_time / naive = 15.3 s."""

    metric: str
    variant: str
    value: float
    unit: str
    label: str = ""
    n: int = 0  # samples behind the value (0: not known)
    ci_low: float = math.nan  # 95 % interval of the value, in the same unit
    ci_high: float = math.nan
    better: str = "lower"  # which way the metric improves (from its HeadlineSpec)

    def __post_init__(self) -> None:
        _check_better(self.better, f"Headline {self.metric!r}")
        if not self.metric:
            raise ConfigError("Headline.metric must not be empty")
        if self.variant not in VARIANTS:
            raise ConfigError(f"Headline.variant must be one of {VARIANTS}, got {self.variant!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise ConfigError(f"Headline.value must be a number, got {self.value!r}")
        if self.unit not in UNIT_SCALE:
            raise ConfigError(
                f"Headline.unit must be one of {sorted(UNIT_SCALE)}, got {self.unit!r}"
            )


def headline_frame(items: Iterable[Headline]) -> pd.DataFrame:
    """The ``headline`` frame a lab saves next to its other frames."""
    rows = [asdict(h) for h in items]
    return pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))


#: A label's closing note on how its interval was made, e.g. " (interval: the range of 4)".
_INTERVAL_NOTE = re.compile(r"\s*\(interval:[^()]*\)\s*$")


def candidate_of(label: str) -> str:
    """What a headline's variant was, from its label: the part before ``": "`` (labels read
    ``"<candidate>: <what>"`` or just ``"<candidate>"``), without the interval note, and
    with its parentheses as commas: ``"rollback (workers=1) (interval: the range of 4)"``
    -> ``"rollback, workers=1"``. Empty for an empty label.

    ``naive``/``improved`` say which side of the review a value is on; the candidate says
    which strategy it was (the best shared strategy may be ``rollback`` in one run and
    ``template`` in the next), so the report and ``compare`` name it.
    """
    text = _INTERVAL_NOTE.sub("", str(label or "")).strip()
    text = text.split(": ", 1)[0].strip()
    return text.replace(" (", ", ").replace("(", "").replace(")", "").strip()


def from_wide(
    frame: pd.DataFrame,
    keys: Mapping[str, str] | None = None,
    specs: Mapping[str, HeadlineSpec] | None = None,
) -> pd.DataFrame:
    """A wide frame (``metric, unit, naive, improved[, naive_label, improved_label, workers]``)
    in the long form; ``keys`` renames display titles to metric keys (others: snake_case);
    ``specs`` gives each metric's better direction (default lower)."""
    keys = {k.lower(): v for k, v in (keys or {}).items()}
    specs = specs or {}
    items: list[Headline] = []
    for record in frame.to_dict("records"):
        title = str(record["metric"]).strip()
        metric = keys.get(title.lower()) or "_".join(title.lower().replace("-", " ").split())
        unit = str(record.get("unit") or "").split(" ", 1)[0]  # "MiB peak" -> MiB
        for variant in VARIANTS:
            value: Any = record.get(variant)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            label = str(record.get(f"{variant}_label") or "")
            if record.get("workers") is not None and label:
                label = f"{label} (workers={record['workers']})"
            better = specs[metric].better if metric in specs else "lower"
            items.append(
                Headline(
                    metric=metric,
                    variant=variant,
                    value=float(value),
                    unit=unit,
                    label=label,
                    better=better,
                )
            )
    return headline_frame(items)


#: Fewer samples (or runs) than this give no interval: two values are one difference.
MIN_INTERVAL_N = 3
#: Below this many samples (or runs) a bootstrap interval is not trustworthy: the median
#: gets its exact order-statistic interval, anything else the range, and the label says so.
SMALL_N = 20


#: Optional columns of a ``samples`` frame that :func:`from_samples` reads.
LABEL_COLUMN = "label"  # what was measured, for the report (first non-empty per group)
RUN_COLUMN = "run"  # the run or repetition a sample came from (the unit of replication)


@dataclass(frozen=True, kw_only=True)
class HeadlineSpec:
    """How one metric's samples become its headline.

    ``statistic`` is ``"median"``, ``"mean"`` or ``"pNN"`` (see
    :func:`perfkit.stats.quantile_of`); ``label`` is used where the samples
    carry none (it may name ``{variant}``). ``better`` says which way the
    metric improves, ``"lower"`` (times, memory: the default) or ``"higher"``
    (throughput): the one place a metric's direction is declared; it goes
    into the headlines' ``better`` column, the report's colours and words,
    ``compare``'s better/worse and the findings.
    """

    statistic: str = "median"
    label: str = ""
    better: str = "lower"

    def __post_init__(self) -> None:
        quantile_of(self.statistic)  # ConfigError for an unknown statistic
        _check_better(self.better, "HeadlineSpec")


MEDIAN = HeadlineSpec()


def _label(group: pd.DataFrame, spec: HeadlineSpec, variant: str) -> str:
    if LABEL_COLUMN in group.columns:
        labels = [str(x) for x in group[LABEL_COLUMN].dropna() if str(x)]
        if labels:
            return labels[0]
    return spec.label.format(variant=variant)


def _runs_of(group: pd.DataFrame) -> pd.Series | None:
    """The samples' runs when they come from two or more (else None: one run, or not said)."""
    if RUN_COLUMN not in group.columns:
        return None
    runs = group[RUN_COLUMN].astype(str)
    return runs if runs.nunique() >= 2 else None


def _bootstrap(
    group: pd.DataFrame, runs: pd.Series | None, data: list[float], statistic: str, seed: int
) -> Estimate:
    """The seeded bootstrap interval: over runs then samples when there are runs."""
    if runs is not None:  # the run is the unit: a two-stage bootstrap
        return hierarchical_interval(group["value"], runs, statistic, seed=seed)
    q = quantile_of(statistic)
    return mean_interval(data, seed=seed) if q is None else quantile_interval(data, q, seed=seed)


def _few(units: Sequence[float], statistic: str) -> tuple[float, float, str]:
    """An interval for a few values (runs or samples) that a bootstrap would overstate.

    The median gets its exact order-statistic interval; where none exists at
    95 % (fewer than 6 values), or for another statistic, the interval is the
    values' range, and the label says so.
    """
    exact = exact_median_interval(units) if statistic == "median" else None
    if exact is not None:
        return exact.low, exact.high, ""
    return min(units), max(units), f"interval: the range of {len(units)}"


def _headline(
    metric: str,
    variant: str,
    group: pd.DataFrame,
    spec: HeadlineSpec,
    seed: int,
    label: str | None = None,
) -> Headline:
    data = [float(v) for v in group["value"] if math.isfinite(float(v))]
    if not data:
        raise ConfigError(f"headline {metric}/{variant}: no finite sample")
    runs = _runs_of(group)
    values = group["value"].dropna() if runs is not None else data
    units = list(per_group(group["value"], runs, spec.statistic)) if runs is not None else data
    label = _label(group, spec, variant) if label is None else label
    low = high = math.nan
    if len(units) >= SMALL_N:  # enough for a bootstrap (two-stage when the samples have runs)
        estimate = _bootstrap(group, runs, data, spec.statistic, seed)
        low, high = estimate.low, estimate.high
    elif len(units) >= MIN_INTERVAL_N:
        low, high, note = _few(units, spec.statistic)
        label = f"{label} ({note})" if note and label else note or label
    return Headline(
        metric=metric,
        variant=variant,
        value=statistic_of(values, spec.statistic),
        unit=str(group["unit"].iloc[0]),
        label=label,
        n=len(units),
        ci_low=low,
        ci_high=high,
        better=spec.better,
    )


def from_samples(
    samples: pd.DataFrame,
    spec: Mapping[str, HeadlineSpec] | None = None,
    *,
    labels: Mapping[tuple[str, str], str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Every lab's route from its ``samples`` frame to its headlines.

    One headline per (metric, variant), in the order the samples list them:
    the statistic ``spec`` names for the metric (the median when it names
    none), with n and a 95 % interval:

    - the unit is the run when the samples say which run or repetition they
      came from (a ``run`` column with two or more runs): a two-stage
      bootstrap (runs, then samples within them), and ``n`` counts runs;
    - fewer than :data:`MIN_INTERVAL_N` units give no interval;
    - below :data:`SMALL_N` units a bootstrap claims more than it covers: the
      median gets its exact order-statistic interval, anything else (or a
      median of fewer than 6) the range, and the label says so.

    The label comes from ``labels``, else the samples' ``label`` column,
    else the spec.
    """
    spec = spec or {}
    items = []
    for (metric, variant), group in samples.groupby(["metric", "variant"], sort=False):
        metric, variant = str(metric), str(variant)
        label = (labels or {}).get((metric, variant))
        items.append(_headline(metric, variant, group, spec.get(metric, MEDIAN), seed, label))
    return headline_frame(items)


def with_better(frame: pd.DataFrame, specs: Mapping[str, HeadlineSpec]) -> pd.DataFrame:
    """``frame`` with a ``better`` column: where a row has none (frames saved before headlines
    carried it), its metric's direction in ``specs``, else ``""`` (not known)."""
    out = frame.copy()
    given = out["better"] if "better" in out.columns else pd.Series("", index=out.index)
    given = given.where(given.isin(BETTER), "")
    declared = out["metric"].map(lambda m: specs[m].better if m in specs else "")
    out["better"] = given.where(given != "", declared).astype(str)
    return out
