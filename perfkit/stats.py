"""Small, seeded statistics for benchmark output: quantiles with bootstrap intervals."""

from __future__ import annotations

import math
import statistics
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


#: Above this many values :func:`mean_interval` uses the normal approximation.
BOOTSTRAP_MAX_N = 5000


def mean_interval(
    values: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """The mean of ``values`` with a seeded percentile-bootstrap interval.

    For more than :data:`BOOTSTRAP_MAX_N` values the bootstrap would only
    reproduce the normal approximation (mean ± z·sd/√n) at great cost, so that
    is used instead.
    """
    data = np.asarray(values, dtype=float)
    n = int(data.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    tail = (1.0 - level) / 2
    if n > BOOTSTRAP_MAX_N:
        z = float(statistics.NormalDist().inv_cdf(1.0 - tail))
        half = z * float(data.std(ddof=1)) / math.sqrt(n)
        return Estimate(mean, mean - half, mean + half, n)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Estimate(mean, float(low), float(high), n)


def rank_quantile_interval(values: Sequence[float], q: float, *, level: float = 0.95) -> Estimate:
    """The ``q``-quantile with a distribution-free order-statistic interval.

    The interval's ends are the order statistics at ranks n·q ∓ z·√(n·q·(1-q))
    (the normal approximation of the binomial count below the quantile). It
    costs one sort, so it suits samples too large to bootstrap (e.g. every
    transaction of a benchmark).
    """
    data = np.sort(np.asarray(values, dtype=float))
    n = int(data.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    z = float(statistics.NormalDist().inv_cdf(1.0 - (1.0 - level) / 2))
    half = z * math.sqrt(n * q * (1.0 - q))
    lo = min(max(math.floor(n * q - half), 0), n - 1)
    hi = min(max(math.ceil(n * q + half), 0), n - 1)
    return Estimate(float(np.quantile(data, q)), float(data[lo]), float(data[hi]), n)
