"""Goodness-of-fit helpers for the workload tests (numpy only; no scipy in the project)."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def chisquare_pvalue(observed: np.ndarray, expected: np.ndarray | None = None) -> float:
    """Pearson's chi-square test p-value (Wilson-Hilferty approximation of the chi-square tail).

    Bins expecting fewer than 5 are pooled into one, as the test requires.
    """
    observed = np.asarray(observed, dtype=float)
    if expected is None:
        expected = np.full_like(observed, observed.sum() / len(observed))
    expected = np.asarray(expected, dtype=float) * observed.sum() / np.sum(expected)
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    stat = float(np.sum((observed - expected) ** 2 / expected))
    df = len(observed) - 1
    z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 1 - NormalDist().cdf(z)


def ks_2samp_pvalue(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov test: the asymptotic p-value of the largest CDF gap."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    grid = np.concatenate([a, b])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a, grid, "right") / len(a)
                - np.searchsorted(b, grid, "right") / len(b)
            )
        )
    )
    en = math.sqrt(len(a) * len(b) / (len(a) + len(b)))
    lam = (en + 0.12 + 0.11 / en) * d
    p = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return min(max(p, 0.0), 1.0)


def truncated_normal_sd(bound: float) -> float:
    """Standard deviation of a standard normal truncated to [-bound, bound]."""
    phi = math.exp(-bound * bound / 2) / math.sqrt(2 * math.pi)
    mass = 2 * NormalDist().cdf(bound) - 1
    return math.sqrt(1 - 2 * bound * phi / mass)
