"""pgbench's random distributions, transcribed from ``src/bin/pgbench/pgbench.c``.

Each function takes the uniform source as an argument (a :class:`random.Random`
or anything with ``random()`` and ``randint()``), so the distributions are pure
and testable. pgbench draws from its own PRNG (xoshiro256**), so the same seed
does not give the same values here, but the same formulas give the same
distributions: ``getrand``, ``getExponentialRand``, ``getGaussianRand`` (with
``pg_prng_double_normal``'s Box-Muller) and ``computeIterativeZipfian``.
"""

from __future__ import annotations

import math
from typing import Protocol

#: pgbench's limits on the distributions' parameters.
MIN_GAUSSIAN_PARAM = 2.0
MIN_ZIPFIAN_PARAM = 1.001
MAX_ZIPFIAN_PARAM = 1000.0
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Uniform(Protocol):
    """The uniform source the distributions draw from."""

    def random(self) -> float: ...

    def randint(self, a: int, b: int) -> int: ...


class RandomError(ValueError):
    """A distribution's arguments are out of pgbench's range (the message is pgbench's)."""


def _check_range(lb: int, ub: int) -> None:
    if lb > ub:
        raise RandomError("empty range given to random")
    if ub - lb < 0 or ub - lb + 1 > INT64_MAX:
        raise RandomError("random range is too large")


def uniform_int(rng: Uniform, lb: int, ub: int) -> int:
    """``random(lb, ub)``: uniform over [lb, ub] (``getrand``)."""
    _check_range(lb, ub)
    return rng.randint(lb, ub)


def exponential(rng: Uniform, lb: int, ub: int, parameter: float) -> int:
    """``random_exponential(lb, ub, parameter)`` (``getExponentialRand``)."""
    _check_range(lb, ub)
    if parameter <= 0.0:
        raise RandomError("exponential parameter must be greater than zero")
    cut = math.exp(-parameter)
    uniform = 1.0 - rng.random()  # (0, 1]
    rand = -math.log(cut + (1.0 - cut) * uniform) / parameter
    return lb + int((ub - lb + 1) * rand)


def double_normal(rng: Uniform) -> float:
    """``pg_prng_double_normal``: one standard normal draw by Box-Muller."""
    u1 = 1.0 - rng.random()  # (0, 1]
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.sin(2.0 * math.pi * u2)


def gaussian(rng: Uniform, lb: int, ub: int, parameter: float) -> int:
    """``random_gaussian(lb, ub, parameter)`` (``getGaussianRand``): truncated at +-parameter."""
    _check_range(lb, ub)
    if parameter < MIN_GAUSSIAN_PARAM:
        raise RandomError(f"gaussian parameter must be at least {MIN_GAUSSIAN_PARAM:g}")
    while True:
        stdev = double_normal(rng)
        if -parameter <= stdev < parameter:
            break
    rand = (stdev + parameter) / (parameter * 2.0)
    return lb + int((ub - lb + 1) * rand)


def _iterative_zipfian(rng: Uniform, n: int, s: float) -> int:
    """``computeIterativeZipfian``: Devroye's rejection method, 1..n."""
    if n <= 1:
        return 1
    b = 2.0 ** (s - 1.0)
    while True:
        u = rng.random()
        v = rng.random()
        try:
            x = math.floor(u ** (-1.0 / (s - 1.0)))
        except (OverflowError, ZeroDivisionError):
            continue  # u == 0 gives +inf in C, which the bound rejects
        t = (1.0 + 1.0 / x) ** (s - 1.0)
        if v * x * (t - 1.0) / (b - 1.0) <= t / b and x <= n:
            return int(x)


def zipfian(rng: Uniform, lb: int, ub: int, s: float) -> int:
    """``random_zipfian(lb, ub, s)`` (``getZipfianRand``)."""
    _check_range(lb, ub)
    if not MIN_ZIPFIAN_PARAM <= s <= MAX_ZIPFIAN_PARAM:
        raise RandomError(
            f"zipfian parameter must be in range [{MIN_ZIPFIAN_PARAM:g}, {MAX_ZIPFIAN_PARAM:g}]"
        )
    return lb - 1 + _iterative_zipfian(rng, ub - lb + 1, s)
