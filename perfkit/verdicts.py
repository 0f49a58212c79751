"""Verdicts: which candidate is best, or that the runs cannot tell, from repeated samples.

:func:`decide` takes each candidate's measurements (e.g. seconds per run), ranks
them by a statistic (the median by default) and names a winner only when the
best is *separated* from every other candidate: its bootstrap interval does not
overlap the other's (counted only when both have at least
``MIN_RUNS_FOR_INTERVALS`` runs: below that the percentile bootstrap of a median
is just the sample's range and covers far less than 95 %), or a two-sided rank
test (Mann–Whitney U; Wilcoxon signed-rank on the differences when ``paired``)
rejects equality at ``alpha`` after Holm's correction over the best-vs-each-other
comparisons, in the direction of the ordering. Otherwise the candidates are
``"indistinguishable"``; with fewer than ``MIN_RUNS`` runs of some candidate, or
no spread at all (every run of every candidate measured the same value), the
verdict is ``"insufficient"``.

``n_to_separate`` is a planning estimate, not a promise: Noether's sample-size
formula for the rank test, fed the observed effect (the probability that the
best beats the other, ``θ``): ``n = (z(1-α'/2) + z(power))² / (6 (θ-½)²)`` runs
each for Mann–Whitney, ``(…)² / (3 (θ-½)²)`` pairs for the signed-rank test
(θ from the Walsh averages), with ``α' = α / (k-1)`` (Bonferroni, the strictest
Holm step) and ``power = POWER``; the largest over the comparisons not yet
separated, and never less than one more run than now. ``None`` when already
separated, when the observed effect is nil, or when the verdict is insufficient.

When samples come in runs (``groups``: each sample's run), the run is the
unit: each run is first reduced to its ``statistic``, and the verdict, its
intervals and its n are about those per-run values. Thousands of requests
from one run are not thousands of independent draws; a busy minute slows
them all.

Everything is seeded (bootstrap draws come from ``seed``); numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from perfkit.errors import ConfigError
from perfkit.stats import (
    Estimate,
    RankTest,
    Statistic,
    holm,
    mann_whitney,
    per_group,
    quantile_of,
    ratio_interval,
    signed_rank,
    statistic_interval,
)

Status = Literal["separated", "indistinguishable", "insufficient"]

MIN_RUNS = 2
MIN_RUNS_FOR_INTERVALS = 5
POWER = 0.8
LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    """The best candidate against one other.

    ``effect`` is the probability that the best beats the other (ties count
    one half; from the rank test); ``ratio`` is the other's statistic over the
    best's, with a bootstrap interval (paired when the samples are).
    """

    other: str
    p_value: float
    p_adjusted: float
    effect: float
    ratio: Estimate
    intervals_separate: bool
    separated: bool


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`decide`; ``text()`` says it in one sentence."""

    status: Status
    winner: str | None  # the best, only when it is separated from every other candidate
    best: str | None  # the best by the statistic, separated or not
    runner_up: str | None  # second by the statistic
    estimates: Mapping[str, Estimate]
    comparisons: tuple[Comparison, ...]  # best vs each other, in the order of the statistic
    test: str
    n_to_separate: int | None
    alpha: float
    statistic: Statistic
    lower_is_better: bool
    paired: bool
    reason: str = ""  # why the verdict is insufficient

    @property
    def p_values(self) -> dict[str, float]:
        """Holm-adjusted p-value of the best against each other candidate."""
        return {c.other: c.p_adjusted for c in self.comparisons}

    @property
    def rival(self) -> str | None:
        """The closest candidate not separated from the best (the runner-up if all are)."""
        for comparison in self.comparisons:
            if not comparison.separated:
                return comparison.other
        return self.runner_up

    def text(self, *, unit: str = "", scale: float = 1.0) -> str:
        """One sentence: the winner with intervals, n and p, or why there is none."""
        if self.status == "insufficient" or self.best is None:
            return f"Cannot rank the candidates: {self.reason}."
        rival = self.rival
        assert rival is not None
        comparison = next(c for c in self.comparisons if c.other == rival)
        best_est, rival_est = self.estimates[self.best], self.estimates[rival]
        n = (
            f"n={best_est.n} each"
            if best_est.n == rival_est.n
            else f"n={best_est.n} and {rival_est.n}"
        )
        k = len(self.comparisons)
        holm_note = f", Holm-corrected over {k} comparisons" if k > 1 else ""
        test = f"{self.test} {_p(comparison.p_adjusted)}{holm_note}"
        best_txt = _estimate(best_est, unit, scale)
        rival_txt = _estimate(rival_est, unit, scale)
        if self.status == "separated":
            word = "fastest" if self.lower_is_better else "best"
            how = "" if comparison.p_adjusted < self.alpha else "intervals do not overlap; "
            return f"{self.best} is {word}: {best_txt} vs {rival} {rival_txt} ({n}, {how}{test})"
        at_n = f"n={best_est.n}" if best_est.n == rival_est.n else n
        sentence = (
            f"{self.best} and {rival} are indistinguishable at {at_n} "
            f"({self.best} {best_txt} vs {rival} {rival_txt}, {test})"
        )
        if self.n_to_separate is None:
            return sentence + "; no difference was observed, so more runs need not separate them"
        return sentence + f"; about n≈{self.n_to_separate} runs each would separate them"


def _number(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _estimate(est: Estimate, unit: str, scale: float) -> str:
    unit = f" {unit}" if unit else ""
    v, lo, hi = (_number(x * scale) for x in (est.value, est.low, est.high))
    return f"{v}{unit} [{lo}, {hi}]"


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _clean(samples: Mapping[str, Sequence[float]], paired: bool) -> dict[str, np.ndarray]:
    if not isinstance(samples, Mapping) or len(samples) < 2:
        raise ConfigError(f"decide needs a mapping of at least two candidates, got {samples!r}")
    arrays: dict[str, np.ndarray] = {}
    for name, values in samples.items():
        try:
            arrays[str(name)] = np.asarray(values, dtype=float).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"samples of {name!r} must be numbers, got {values!r}") from exc
    if paired:
        lengths = {name: a.size for name, a in arrays.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"paired samples must all be as long as each other, got {lengths}")
        keep = np.logical_and.reduce([~np.isnan(a) for a in arrays.values()])
        return {name: a[keep] for name, a in arrays.items()}
    return {name: a[~np.isnan(a)] for name, a in arrays.items()}


def _per_run(
    samples: Mapping[str, Sequence[float]],
    groups: Mapping[str, Sequence[object]],
    statistic: Statistic,
) -> dict[str, np.ndarray]:
    """Each candidate's samples reduced to one value per run."""
    missing = [name for name in samples if name not in groups]
    if missing:
        raise ConfigError(f"groups has no runs for {', '.join(map(repr, missing))}")
    return {name: per_group(values, groups[name], statistic) for name, values in samples.items()}


def _insufficient(arrays: Mapping[str, np.ndarray], estimates: Mapping[str, Estimate]) -> str:
    short = [f"{name} has n={a.size}" for name, a in arrays.items() if a.size < MIN_RUNS]
    if short:
        return f"{', '.join(short)} (at least {MIN_RUNS} runs each are needed)"
    pooled = np.concatenate(list(arrays.values()))
    if np.all(pooled == pooled[0]):
        return f"every run of every candidate measured the same value ({_number(pooled[0])})"
    if any(math.isnan(e.value) for e in estimates.values()):
        return "a candidate's statistic is undefined"
    return ""


def _needed_n(effect: float, alpha: float, paired: bool) -> float:
    if effect == 0.5:
        return math.inf
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(POWER)
    return z * z / ((3 if paired else 6) * (effect - 0.5) ** 2)


@dataclass(frozen=True)
class _Question:
    """What :func:`decide` was asked: how to judge, and each candidate's values and estimate."""

    arrays: Mapping[str, np.ndarray]
    estimates: Mapping[str, Estimate]
    lower_is_better: bool
    alpha: float
    statistic: Statistic
    seed: int
    paired: bool

    def verdict(
        self,
        status: Status,
        best: str | None = None,
        comparisons: Sequence[Comparison] = (),
        n_to_separate: int | None = None,
        reason: str = "",
    ) -> Verdict:
        return Verdict(
            status=status,
            winner=best if status == "separated" else None,
            best=best,
            runner_up=comparisons[0].other if comparisons else None,
            estimates=self.estimates,
            comparisons=tuple(comparisons),
            test="Wilcoxon signed-rank" if self.paired else "Mann–Whitney",
            n_to_separate=n_to_separate,
            alpha=float(self.alpha),
            statistic=self.statistic,
            lower_is_better=self.lower_is_better,
            paired=self.paired,
            reason=reason,
        )

    def compare(self, best: str, others: Sequence[str]) -> list[Comparison]:
        """The best against each other candidate: rank test (Holm), intervals, ratio."""
        arrays, estimates = self.arrays, self.estimates
        tests: list[RankTest] = [
            signed_rank(arrays[best], arrays[o])
            if self.paired
            else mann_whitney(arrays[best], arrays[o])
            for o in others
        ]
        adjusted = holm([t.p_value for t in tests])
        comparisons = []
        for i, (other, test, p_adj) in enumerate(zip(others, tests, adjusted, strict=True)):
            # test.effect is P(best < other); flip it when higher is better
            effect = test.effect if self.lower_is_better else 1.0 - test.effect
            b_est, o_est = estimates[best], estimates[other]
            enough = min(b_est.n, o_est.n) >= MIN_RUNS_FOR_INTERVALS
            apart = b_est.high < o_est.low if self.lower_is_better else b_est.low > o_est.high
            ratio = ratio_interval(
                arrays[best],
                arrays[other],
                statistic=self.statistic,
                paired=self.paired,
                level=LEVEL,
                seed=self.seed + 1 + i,
            )
            comparisons.append(
                Comparison(
                    other=other,
                    p_value=test.p_value,
                    p_adjusted=p_adj,
                    effect=effect,
                    ratio=ratio,
                    intervals_separate=enough and apart,
                    separated=(enough and apart) or (p_adj < self.alpha and effect > 0.5),
                )
            )
        return comparisons

    def runs_to_separate(self, best: str, comparisons: Sequence[Comparison]) -> int | None:
        """Noether's planning estimate over the comparisons not yet separated (None: nil effect)."""
        planning_alpha = self.alpha / len(comparisons)
        needed = max(
            _needed_n(c.effect, planning_alpha, self.paired) for c in comparisons if not c.separated
        )
        if not math.isfinite(needed):
            return None
        arrays = self.arrays
        current = max(arrays[best].size, *(arrays[c.other].size for c in comparisons))
        return max(math.ceil(needed), current + 1)


def decide(
    samples: Mapping[str, Sequence[float]],
    *,
    lower_is_better: bool = True,
    alpha: float = 0.05,
    statistic: Statistic = "median",
    seed: int = 0,
    paired: bool = False,
    groups: Mapping[str, Sequence[object]] | None = None,
) -> Verdict:
    """Which candidate is best, judged by ``statistic`` (see the module docstring).

    ``samples`` maps each candidate to its measurements (NaN are dropped; with
    ``paired``, the i-th values of every candidate come from the same repetition
    and a NaN drops that repetition). ``groups`` maps each candidate to the run
    of each of its samples: the verdict is then on one value per run (the
    run's ``statistic``). ConfigError for fewer than two candidates, ``alpha``
    outside (0, 1), an unknown statistic, paired samples of unequal length or
    groups that do not match the samples.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be a number between 0 and 1, got {alpha!r}")
    quantile_of(statistic)  # validates
    if groups is not None:
        samples = _per_run(samples, groups, statistic)
    arrays = _clean(samples, paired)
    estimates = {
        name: statistic_interval(a, statistic, level=LEVEL, seed=seed) for name, a in arrays.items()
    }
    question = _Question(arrays, estimates, lower_is_better, float(alpha), statistic, seed, paired)
    reason = _insufficient(arrays, estimates)
    if reason:
        return question.verdict("insufficient", reason=reason)
    sign = 1.0 if lower_is_better else -1.0
    # sorted is stable: candidates with equal statistics keep the order they were given in
    order = sorted(arrays, key=lambda name: sign * estimates[name].value)
    best = order[0]
    comparisons = question.compare(best, order[1:])
    if all(c.separated for c in comparisons):
        return question.verdict("separated", best, comparisons)
    needed = question.runs_to_separate(best, comparisons)
    return question.verdict("indistinguishable", best, comparisons, needed)
