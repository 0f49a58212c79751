"""Small, seeded statistics for benchmark output: quantiles with bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A quantile of a sample, its percentile-bootstrap interval and the sample size."""

    value: float
    low: float
    high: float
    n: int

    def format(self, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
        """``value [low, high] unit (n=N)`` with every number multiplied by ``scale``."""
        if math.isnan(self.value):
            return f"n/a (n={self.n})"
        v, lo, hi = (x * scale for x in (self.value, self.low, self.high))
        return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]{unit} (n={self.n})"


def quantile_interval(
    values: Sequence[float],
    q: float = 0.5,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """The ``q``-quantile of ``values`` with a seeded percentile-bootstrap interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    stats = np.quantile(samples, q, axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return Estimate(float(np.quantile(data, q)), float(low), float(high), int(data.size))
