"""Headline numbers: the one long schema in which every lab reports what the report shows.

A lab builds :class:`Headline` items (metric, variant ``naive``/``improved``,
value, unit, label, and where it has the samples: ``n`` and a 95 % interval
``ci_low``/``ci_high``) and returns :func:`headline_frame` from its contract's
``headlines()``; :mod:`perfkit.summary` lays them next to the review's claims.
This module sits below the labs, so a lab never imports the report layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from perfkit.errors import ConfigError
from perfkit.stats import quantile_interval

VARIANTS = ("naive", "improved")
HEADLINE_COLUMNS = ("metric", "variant", "value", "unit", "label", "n", "ci_low", "ci_high")
#: unit -> (the unit the report shows, factor to it)
UNIT_SCALE = {"s": ("s", 1.0), "ms": ("s", 1e-3), "MiB": ("MiB", 1.0), "MB": ("MiB", 1e6 / 2**20)}
UNIT_SCALE["B"] = ("MiB", 1 / 2**20)
UNIT_SCALE["bytes"] = UNIT_SCALE["B"]
UNIT_SCALE["GiB"] = ("MiB", 1024.0)
UNIT_SCALE["count"] = ("count", 1.0)
UNIT_SCALE["rps"] = ("rps", 1.0)


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

    def __post_init__(self) -> None:
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


def from_wide(frame: pd.DataFrame, keys: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A wide frame (``metric, unit, naive, improved[, naive_label, improved_label, workers]``)
    in the long form; ``keys`` renames display titles to metric keys (others: snake_case)."""
    keys = {k.lower(): v for k, v in (keys or {}).items()}
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
            items.append(
                Headline(metric=metric, variant=variant, value=float(value), unit=unit, label=label)
            )
    return headline_frame(items)


#: Fewer samples than this give no interval (a bootstrap of 2-4 values is just their range).
MIN_INTERVAL_N = 3


def of_samples(
    *, metric: str, variant: str, values: Iterable[float], unit: str, label: str = "", seed: int = 0
) -> Headline:
    """The median of ``values`` as a headline with its n and a seeded 95 % bootstrap interval."""
    data = [float(v) for v in values if math.isfinite(float(v))]
    if not data:
        raise ConfigError(f"headline {metric}/{variant}: no finite sample")
    estimate = quantile_interval(data, 0.5, seed=seed)
    low, high = (estimate.low, estimate.high) if len(data) >= MIN_INTERVAL_N else (math.nan,) * 2
    return Headline(
        metric=metric,
        variant=variant,
        value=estimate.value,
        unit=unit,
        label=label,
        n=len(data),
        ci_low=low,
        ci_high=high,
    )


def from_samples(samples: pd.DataFrame, labels: Mapping[tuple[str, str], str]) -> pd.DataFrame:
    """Headlines of a ``samples`` frame (``metric, variant, unit, value``): one per
    (metric, variant), its median with n and interval; ``labels`` says what was measured."""
    items = [
        of_samples(
            metric=str(metric),
            variant=str(variant),
            values=group["value"],
            unit=str(group["unit"].iloc[0]),
            label=labels.get((str(metric), str(variant)), ""),
        )
        for (metric, variant), group in samples.groupby(["metric", "variant"], sort=False)
    ]
    return headline_frame(items)
