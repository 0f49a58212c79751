"""Latency capture in bounded memory: an HDR histogram of seconds, with quantile intervals.

An open-loop run can last any time at any rate, so it does not keep one record
per request: :class:`LatencyHistogram` counts latencies in the log-linear
buckets of ``hdrhistogram`` (the HdrHistogram project's Python port). Its size
depends only on the range and the precision, never on how many values were
recorded.

Resolution (:data:`RESOLUTION`): values are recorded in whole microseconds
from 1 µs to 1 hour with 3 significant decimal digits, i.e. every value is
kept within 0.1 % of itself (a 50 ms latency within ±50 µs); longer values are
clamped to an hour.

:meth:`LatencyHistogram.quantile` gives a quantile with the same
distribution-free order-statistic interval as
:func:`perfkit.stats.rank_quantile_interval` (ranks n·q ∓ z·√(n·q·(1-q))), read
from the buckets.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from perfkit.stats import Estimate

#: Smallest and largest recordable value (µs) and significant decimal digits kept.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
#: The resolution as plots and conclusions state it.
RESOLUTION = "HDR histogram, 1 µs to 1 h, 3 significant digits (values within 0.1 %)"


class LatencyHistogram:
    """Counts of latencies (recorded in seconds) in fixed memory; not thread-safe
    (give each thread its own and :meth:`merge` them)."""

    def __init__(self) -> None:
        self._h = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    def record(self, seconds: float) -> None:
        """Count one latency (negative values count as 0, beyond an hour as an hour)."""
        us = min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US)
        self._h.record_value(us)

    def merge(self, others: Iterable[LatencyHistogram]) -> LatencyHistogram:
        """Add the counts of ``others`` into this one; returns self."""
        for other in others:
            self._h.add(other._h)
        return self

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    @property
    def nbytes(self) -> int:
        """Memory of the bucket counts (fixed by range and precision)."""
        return int(self._h.counts_len * self._h.word_size)

    def count_above(self, seconds: float) -> int:
        """How many recorded values lie above ``seconds`` (to the resolution)."""
        limit = seconds * 1e6
        return sum(
            int(item.count_at_value_iterated_to)
            for item in self._h.get_recorded_iterator()
            if self._h.get_lowest_equivalent_value(item.value_iterated_to) > limit
        )

    def value_at_rank(self, rank: int) -> float:
        """The ``rank``-th smallest value (1-based, clipped to 1..count), seconds."""
        n = self.count
        if n == 0:
            return math.nan
        rank = min(max(rank, 1), n)
        # hdrhistogram finds the first bucket whose cumulative count reaches the rank
        pct = 100.0 * (rank - 0.5) / n
        return self._h.get_value_at_percentile(pct) / 1e6

    def quantile(self, q: float, *, level: float = 0.95) -> Estimate:
        """The ``q``-quantile (seconds) with an order-statistic interval; n = count."""
        n = self.count
        if n == 0:
            return Estimate(math.nan, math.nan, math.nan, 0)
        z = statistics.NormalDist().inv_cdf(1.0 - (1.0 - level) / 2)
        half = z * math.sqrt(n * q * (1.0 - q))
        value = self.value_at_rank(math.ceil(n * q))
        low = self.value_at_rank(math.floor(n * q - half) + 1)
        high = self.value_at_rank(math.ceil(n * q + half) + 1)
        return Estimate(value, low, high, n)

    @property
    def mean(self) -> float:
        return self._h.get_mean_value() / 1e6 if self.count else math.nan

    @property
    def max(self) -> float:
        return self._h.get_max_value() / 1e6 if self.count else math.nan
