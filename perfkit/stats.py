"""Small, seeded statistics for benchmark output.

Quantiles (one or several at once) and means with percentile-bootstrap
intervals, the interval of a ratio of two statistics (independent or paired
bootstrap), a Wilson interval for a proportion, the two rank tests perfkit
uses to tell candidates apart (Mann–Whitney U, Wilcoxon signed-rank; exact
with ties for small samples, normal approximation with tie and continuity
corrections above that), Holm's step-down correction, and the Hodges–Lehmann
shift with its exact distribution-free interval for comparing a handful of runs (and its
paired form, for A/B runs made alternately). numpy only: every
random draw comes from ``np.random.default_rng(seed)``, so a result is a
function of its inputs.

A *statistic* is ``"median"``, ``"mean"``, ``"pNN"`` (the NN-th percentile,
e.g. ``"p90"``) or a quantile given as a number in [0, 1].
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from perfkit.errors import ConfigError

Statistic = str | float

# Rank tests are exact (the permutation distribution, ties included) up to this many
# observations (both samples together for Mann–Whitney, non-zero differences for the
# signed-rank test); beyond, the normal approximation is accurate and the exact
# distribution costs more.
EXACT_MAX_N = 60


@dataclass(frozen=True)
class Estimate:
    """A statistic of a sample, its percentile-bootstrap interval and the sample size."""

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


_NAN_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not 0 < level < 1:
        raise ConfigError(f"level must be a number between 0 and 1, got {level!r}")
    return float(level)


def quantile_of(statistic: Statistic) -> float | None:
    """The quantile a statistic names (``None`` for ``"mean"``); ConfigError if unknown."""
    if isinstance(statistic, str):
        if statistic == "mean":
            return None
        if statistic == "median":
            return 0.5
        if statistic.startswith("p"):
            try:
                q = float(statistic[1:]) / 100
            except ValueError:
                q = math.nan
            if 0 <= q <= 1:
                return q
    elif (
        not isinstance(statistic, bool)
        and isinstance(statistic, int | float)
        and 0 <= statistic <= 1
    ):
        return float(statistic)
    raise ConfigError(
        "statistic must be 'median', 'mean', 'pNN' (e.g. 'p90') or a quantile in [0, 1], "
        f"got {statistic!r}"
    )


def statistic_of(values: Sequence[float], statistic: Statistic = "median") -> float:
    """``statistic`` of ``values`` (no interval: the point every interval here is around)."""
    return float(_reduce(np.asarray(values, dtype=float), statistic))


def _row_quantiles(rows: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """``np.quantile(rows, qs, axis=1)`` (linear method) from one sort: (len(qs), len(rows))."""
    ordered = np.sort(rows, axis=1)
    n = ordered.shape[1]
    out = np.empty((len(qs), ordered.shape[0]))
    for i, q in enumerate(qs):
        position = q * (n - 1)
        below = min(math.floor(position), n - 1)
        above = min(below + 1, n - 1)
        t = position - below
        lo, hi = ordered[:, below], ordered[:, above]
        # numpy's lerp: exact at both ends
        out[i] = hi - (hi - lo) * (1 - t) if t >= 0.5 else lo + (hi - lo) * t
    return out


def _reduce(data: np.ndarray, statistic: Statistic, axis: int = -1) -> np.ndarray:
    q = quantile_of(statistic)
    if q is None:
        return np.mean(data, axis=axis)
    if data.ndim == 2 and axis in (1, -1):
        return _row_quantiles(data, [q])[0]
    return np.quantile(data, q, axis=axis)


def quantile_intervals(
    values: Sequence[float],
    qs: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[Estimate, ...]:
    """Several quantiles of ``values`` from one seeded bootstrap (one Estimate per ``q``)."""
    tail = (1.0 - _check_level(level)) / 2
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return tuple(_NAN_ESTIMATE for _ in qs)
    rng = np.random.default_rng(seed)
    samples = data[rng.integers(0, data.size, size=(resamples, data.size))]
    stats = _row_quantiles(samples, list(qs))  # (len(qs), resamples)
    bounds = np.quantile(stats, [tail, 1.0 - tail], axis=1)  # (2, len(qs))
    points = np.quantile(data, list(qs))
    return tuple(
        Estimate(float(points[i]), float(bounds[0, i]), float(bounds[1, i]), int(data.size))
        for i in range(len(qs))
    )


def quantile_interval(
    values: Sequence[float],
    q: float = 0.5,
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """The ``q``-quantile of ``values`` with a seeded percentile-bootstrap interval."""
    return quantile_intervals(values, [q], level=level, resamples=resamples, seed=seed)[0]


def statistic_interval(
    values: Sequence[float],
    statistic: Statistic = "median",
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Any statistic (see the module docstring) with a seeded percentile-bootstrap interval."""
    q = quantile_of(statistic)
    if q is not None:
        return quantile_interval(values, q, level=level, resamples=resamples, seed=seed)
    return mean_interval(values, level=_check_level(level), resamples=resamples, seed=seed)


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """``numerator / denominator`` with 0/0 = 1 and x/0 = +-inf (never NaN from zeros)."""
    num, den = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((num == 0) & (den == 0), 1.0, out)


def ratio_interval(
    a: Sequence[float],
    b: Sequence[float],
    *,
    statistic: Statistic = "median",
    paired: bool = False,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic(b) / statistic(a)`` with a seeded percentile-bootstrap interval.

    Unpaired, ``a`` and ``b`` are resampled independently; ``paired`` resamples
    the pairs (``a[i]``, ``b[i]``) together, so they must be as long as each other.
    ``n`` of the Estimate is the smaller sample's size. A zero statistic of ``a``
    gives NaN (no ratio), as does an empty sample.
    """
    tail = (1.0 - _check_level(level)) / 2
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired and xa.size != xb.size:
        raise ConfigError(
            f"paired samples must be as long as each other, got {xa.size} and {xb.size}"
        )
    n = int(min(xa.size, xb.size))
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    point = float(_ratio(_reduce(xb, statistic), _reduce(xa, statistic)))
    if not math.isfinite(point):
        return Estimate(math.nan, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    idx_a = rng.integers(0, xa.size, size=(resamples, xa.size))
    idx_b = idx_a if paired else rng.integers(0, xb.size, size=(resamples, xb.size))
    ratios = _ratio(_reduce(xb[idx_b], statistic, axis=1), _reduce(xa[idx_a], statistic, axis=1))
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return Estimate(point, float(low), float(high), n)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> Estimate:
    """A proportion ``successes / n`` with its Wilson score interval (NaN when n = 0)."""
    z = NormalDist().inv_cdf(1 - (1 - _check_level(level)) / 2)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or not 0 <= successes <= n:
        raise ConfigError(f"need 0 <= successes <= n (integers), got {successes!r} of {n!r}")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


@dataclass(frozen=True)
class RankTest:
    """A two-sided rank test of sample ``a`` against sample ``b``.

    ``effect`` is the probability that ``a`` comes out below ``b`` (ties count
    one half): for Mann–Whitney P(A < B) over all pairs of runs; for the
    signed-rank test P(W > 0) over the Walsh averages W of the differences
    ``b - a``. 0.5 is no effect; above 0.5 ``a`` tends to be lower.
    """

    name: str
    statistic: float  # U of ``a`` (pairs where a > b), or W+ (rank sum of b - a > 0)
    p_value: float
    effect: float
    exact: bool


def midranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the average of their ranks."""
    data = np.asarray(values, dtype=float)
    _, inverse, counts = np.unique(data, return_inverse=True, return_counts=True)
    average = np.cumsum(counts) - (counts - 1) / 2.0
    return average[inverse]


def _tie_sum(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(np.sum(counts.astype(float) ** 3 - counts))


def _two_sided(distribution: np.ndarray, observed: int) -> float:
    """Two-sided p-value of ``observed`` under a distribution over 0..len-1."""
    total = distribution.sum()
    below = distribution[: observed + 1].sum() / total
    above = distribution[observed:].sum() / total
    return float(min(1.0, 2 * min(below, above)))


def _normal_p(observed: float, mean: float, variance: float) -> float:
    if variance <= 0:
        return 1.0
    z = max(0.0, abs(observed - mean) - 0.5) / math.sqrt(variance)  # continuity correction
    return float(math.erfc(z / math.sqrt(2)))


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> RankTest:
    """Two-sided Mann–Whitney U test (Wilcoxon rank-sum) of ``a`` against ``b``.

    Exact, ties included (the distribution of the rank sum over every split of the
    pooled midranks), when both samples together hold at most ``EXACT_MAX_N``
    values; otherwise the normal approximation with tie and continuity corrections.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m, n = xa.size, xb.size
    if m == 0 or n == 0:
        raise ConfigError(f"Mann–Whitney needs two non-empty samples, got n={m} and n={n}")
    pooled = np.concatenate([xa, xb])
    ranks = midranks(pooled)
    rank_sum = float(ranks[:m].sum())
    u = rank_sum - m * (m + 1) / 2
    effect = 1.0 - u / (m * n)
    big_n = m + n
    if big_n <= EXACT_MAX_N:
        # doubled midranks are integers: count the subsets of size m by their score sum
        scores = np.rint(2 * ranks).astype(int)
        total = int(np.sort(scores)[-m:].sum())
        counts = np.zeros((m + 1, total + 1))
        counts[0, 0] = 1.0
        for k, w in enumerate(scores):
            top = min(k + 1, m)
            counts[1 : top + 1, w:] += counts[:top, : total + 1 - w].copy()
        p = _two_sided(counts[m], round(2 * rank_sum))
        return RankTest("Mann–Whitney", u, p, effect, True)
    variance = m * n / 12 * ((big_n + 1) - _tie_sum(pooled) / (big_n * (big_n - 1)))
    p = _normal_p(rank_sum, m * (big_n + 1) / 2, variance)
    return RankTest("Mann–Whitney", u, p, effect, False)


def signed_rank(a: Sequence[float], b: Sequence[float]) -> RankTest:
    """Two-sided Wilcoxon signed-rank test of the paired differences ``b - a``.

    Zero differences are dropped (Wilcoxon's rule); exact with ties up to
    ``EXACT_MAX_N`` non-zero differences, normal approximation beyond.
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size != xb.size or xa.size == 0:
        raise ConfigError(
            f"the signed-rank test needs two non-empty samples of one length, "
            f"got {xa.size} and {xb.size}"
        )
    diffs = xb - xa
    walsh = (diffs[:, None] + diffs[None, :])[np.triu_indices(diffs.size)] / 2
    effect = float(np.mean(walsh > 0) + 0.5 * np.mean(walsh == 0))
    nonzero = diffs[diffs != 0]
    n = nonzero.size
    if n == 0:
        return RankTest("Wilcoxon signed-rank", 0.0, 1.0, effect, True)
    ranks = midranks(np.abs(nonzero))
    w_plus = float(ranks[nonzero > 0].sum())
    if n <= EXACT_MAX_N:
        scores = np.rint(2 * ranks).astype(int)
        dist = np.zeros(int(scores.sum()) + 1)
        dist[0] = 1.0
        for w in scores:
            shifted = np.zeros_like(dist)
            shifted[w:] = dist[:-w]
            dist = 0.5 * (dist + shifted)
        p = _two_sided(dist, round(2 * w_plus))
        return RankTest("Wilcoxon signed-rank", w_plus, p, effect, True)
    variance = n * (n + 1) * (2 * n + 1) / 24 - _tie_sum(np.abs(nonzero)) / 48
    p = _normal_p(w_plus, n * (n + 1) / 4, variance)
    return RankTest("Wilcoxon signed-rank", w_plus, p, effect, False)


def holm(p_values: Sequence[float]) -> tuple[float, ...]:
    """Holm's step-down adjusted p-values, in the order given (each <= 1, monotone)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.empty(p.size)
    running = 0.0
    for i, index in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (p.size - i) * float(p[index])))
        adjusted[index] = running
    return tuple(float(x) for x in adjusted)


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


def _u_counts(m: int, n: int) -> np.ndarray:
    """Number of arrangements of m and n untied values with each U = 0..m·n."""
    # f[i][j] is the count array for sizes i and j: f(i, j, u) = f(i-1, j, u-j) + f(i, j-1, u)
    f = [[np.ones(1) for _ in range(n + 1)] for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            out = np.zeros(i * j + 1)
            a = f[i - 1][j]  # the largest value is from the first sample: it is above all j
            out[j : j + a.size] += a
            b = f[i][j - 1]
            out[: b.size] += b
            f[i][j] = out
    return f[m][n]


def shift_interval(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95
) -> Estimate | None:
    """The shift of ``b`` against ``a``: Hodges–Lehmann estimate, exact distribution-free interval.

    The estimate is the median of every difference ``b_j - a_i``; the interval
    runs between the k-th smallest and k-th largest of those differences, with
    k from the exact Mann–Whitney distribution (the Moses interval; the normal
    approximation above :data:`EXACT_MAX_N` values together). It assumes only
    that the two samples differ by a shift, so it suits a handful of runs,
    where a bootstrap is not trustworthy. Returns None when the samples are
    too small to support any interval at ``level`` (3 and 3 at 95 %): the
    answer is then "cannot tell", never a narrower interval than the data hold.
    """
    level = _check_level(level)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    m, n = xa.size, xb.size
    if m == 0 or n == 0:
        return None
    diffs = np.sort((xb[None, :] - xa[:, None]).reshape(-1))
    k = _moses_k(m, n, level)
    if k < 1:
        return None
    return Estimate(float(np.median(diffs)), float(diffs[k - 1]), float(diffs[m * n - k]), m + n)


def _moses_k(m: int, n: int, level: float) -> int:
    """The largest k with P(U <= k - 1) <= (1 - level) / 2 (0: no interval exists)."""
    tail = (1.0 - level) / 2
    if m + n <= EXACT_MAX_N:
        cdf = np.cumsum(_u_counts(m, n))
        cdf /= cdf[-1]
        return int(np.searchsorted(cdf, tail, side="right"))
    z = float(NormalDist().inv_cdf(1.0 - tail))
    k = math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))
    return max(k, 0)


def runs_needed(level: float = 0.95) -> int:
    """The fewest runs per side for which :func:`shift_interval` gives an interval."""
    n = 1
    while _moses_k(n, n, level) < 1:
        n += 1
    return n


def _signed_rank_counts(n: int) -> np.ndarray:
    """Number of sign assignments of ranks 1..n with each signed-rank sum T+ = 0..n(n+1)/2."""
    counts = np.ones(1)
    for rank in range(1, n + 1):
        out = np.zeros(counts.size + rank)
        out[: counts.size] += counts  # rank ``rank`` negative
        out[rank:] += counts  # rank ``rank`` positive
        counts = out
    return counts


def _walsh_k(n: int, level: float) -> int:
    """The largest k with P(T+ <= k - 1) <= (1 - level) / 2 (0: no interval exists)."""
    tail = (1.0 - level) / 2
    if n <= EXACT_MAX_N:
        cdf = np.cumsum(_signed_rank_counts(n))
        cdf /= cdf[-1]
        return int(np.searchsorted(cdf, tail, side="right"))
    z = float(NormalDist().inv_cdf(1.0 - tail))
    k = math.floor(n * (n + 1) / 4 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24))
    return max(k, 0)


def paired_shift_interval(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95
) -> Estimate | None:
    """The shift of ``b`` against ``a`` when they come in pairs (``a[i]`` ran next to ``b[i]``).

    The estimate is the median of the Walsh averages of the differences
    ``b[i] - a[i]`` (one-sample Hodges–Lehmann); the interval runs between
    their k-th smallest and k-th largest, with k from the exact Wilcoxon
    signed-rank distribution. Pairing removes what the two runs of a pair
    share (the machine's load at that moment), so it needs no more than that
    the differences are symmetric about the shift. None when there are too
    few pairs for any interval at ``level`` (fewer than 6 at 95 %).
    """
    level = _check_level(level)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ConfigError(f"paired samples must have the same length, got {xa.size} and {xb.size}")
    d = xb - xa
    n = int(d.size)
    if n == 0:
        return None
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    k = _walsh_k(n, level)
    if k < 1:
        return None
    return Estimate(float(np.median(walsh)), float(walsh[k - 1]), float(walsh[walsh.size - k]), n)


def pairs_needed(level: float = 0.95) -> int:
    """The fewest pairs for which :func:`paired_shift_interval` gives an interval."""
    n = 1
    while _walsh_k(n, level) < 1:
        n += 1
    return n


def hierarchical_interval(
    values: Sequence[float],
    groups: Sequence[object],
    statistic: Statistic = "median",
    *,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """A statistic of samples that come in groups (runs), with a two-stage bootstrap interval.

    Samples of one run are not independent draws (a busy machine slows the
    whole run), so each bootstrap round resamples the runs first, with
    replacement, then the samples within each chosen run, and computes
    ``statistic`` over what it drew. The interval then reflects the spread
    between runs; its ``n`` is the number of runs. Fewer than 3 runs give no
    interval (NaN ends): two runs are one difference.
    """
    level = _check_level(level)
    data = np.asarray(values, dtype=float)
    labels = np.asarray(list(groups), dtype=object)
    if data.shape != labels.shape:
        raise ConfigError(f"values and groups differ in length: {data.size} and {labels.size}")
    keep = ~np.isnan(data)
    data, labels = data[keep], labels[keep]
    runs = [data[labels == g] for g in dict.fromkeys(labels.tolist())]
    if not runs:
        return Estimate(math.nan, math.nan, math.nan, 0)
    point = float(_reduce(data, statistic))
    if len(runs) < 3:
        return Estimate(point, math.nan, math.nan, len(runs))
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for r in range(resamples):
        chosen = rng.integers(0, len(runs), size=len(runs))
        drawn = [runs[i][rng.integers(0, runs[i].size, size=runs[i].size)] for i in chosen]
        stats[r] = _reduce(np.concatenate(drawn), statistic)
    tail = (1.0 - level) / 2
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return Estimate(point, float(low), float(high), len(runs))


def per_group(
    values: Sequence[float], groups: Sequence[object], statistic: Statistic
) -> np.ndarray:
    """``statistic`` of each group's values, in the order groups first appear (NaN dropped)."""
    data = np.asarray(values, dtype=float)
    labels = np.asarray(list(groups), dtype=object)
    if data.shape != labels.shape:
        raise ConfigError(f"values and groups differ in length: {data.size} and {labels.size}")
    out = []
    for g in dict.fromkeys(labels.tolist()):
        chunk = data[(labels == g) & ~np.isnan(data)]
        if chunk.size:
            out.append(statistic_of(chunk, statistic))
    return np.asarray(out, dtype=float)


def exact_median_interval(values: Sequence[float], *, level: float = 0.95) -> Estimate | None:
    """The median with its exact distribution-free interval (order statistics, binomial).

    The interval runs from the k-th smallest to the k-th largest value, with
    the largest k whose coverage ``1 - 2·P(Bin(n, ½) < k)`` is at least
    ``level``. It assumes nothing about the distribution, so it suits the few
    values a handful of runs give, where a bootstrap only returns their range
    with far less than the coverage it claims. None when no such interval
    exists (fewer than 6 values at 95 %).
    """
    level = _check_level(level)
    data = np.sort(np.asarray(values, dtype=float))
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        return None
    tail = (1.0 - level) / 2
    cdf = np.cumsum([math.comb(n, i) for i in range(n + 1)]) / 2.0**n
    k = int(np.searchsorted(cdf, tail, side="right"))  # P(Bin < k) <= tail
    if k < 1:
        return None
    return Estimate(float(np.median(data)), float(data[k - 1]), float(data[n - k]), n)
