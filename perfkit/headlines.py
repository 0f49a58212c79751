"""Headline numbers: the one long schema in which every lab reports what the report shows.

A lab builds :class:`Headline` items (metric, variant ``naive``/``improved``,
value, unit, label) and saves :func:`headline_frame` next to its other frames;
:mod:`perfkit.summary` reads them. This module sits below the labs, so a lab
never imports the report layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from perfkit.errors import ConfigError

VARIANTS = ("naive", "improved")
HEADLINE_COLUMNS = ("metric", "variant", "value", "unit", "label")
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
