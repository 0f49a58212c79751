"""Connection retry strategies as pure, seedable delay schedules.

A strategy is a frozen, keyword-only dataclass whose settings are validated
when it is built. It never sleeps and never reads a clock: :meth:`Strategy.delays`
turns a :class:`random.Random` into the sequence of waits between attempts, so
the same seed always gives the same schedule. The driver
(:mod:`perfkit.retry.planner`) applies the stop conditions and the deadline.

Delay ``k`` (``k = 1, 2, ...``) is the wait after failed attempt ``k``. It is
measured from the end of that attempt (``anchor = "failure"``, a plain sleep),
except for gRPC, whose backoff is measured from the *start* of the attempt
(``anchor = "attempt_start"``: ``SleepUntil(current_deadline)``).

Formulas (``b`` base, ``m`` multiplier, ``c`` cap, ``U`` uniform):

- ``FixedDelay``: ``d``.
- ``CappedExponential``: ``e_k = min(c, b * m**(k-1))``.
- ``DelayedExponential``: ``d_1 = f`` (a first wait aimed at a known boot
  time), then ``d_k = e_{k-1}`` (``m = 1``: a fixed step ``b``).
- ``FullJitter`` (Brooker 2015): ``U(0, e_k)``.
- ``EqualJitter`` (Brooker 2015): ``e_k/2 + U(0, e_k/2)``.
- ``DecorrelatedJitter`` (Brooker 2015): ``s_k = min(c, U(b, 3 * s_{k-1}))``, ``s_0 = b``.
- ``AdditiveJitter`` (the review's ``connect_with_backoff``): ``e_k + U(0, e_k/4)``
  (jitter added *after* the cap, so a delay can reach ``1.25 c``).
- ``PollyDecorrelatedJitterV2`` (Polly.Contrib.WaitAndRetry
  ``DecorrelatedJitterBackoffV2``): with ``t = i + U(0, 1)`` for retry ``i = 0, 1, ...``
  and ``g(t) = 2**t * tanh(sqrt(4 t))``, delay ``i`` is
  ``(g(t_i) - g(t_{i-1})) * f / 1.4`` (``g(t_{-1}) = 0``), optionally capped.
- ``GrpcBackoff`` (grpc/doc/connection-backoff.md): attempt ``k`` may take
  ``max(backoff_k, MIN_CONNECT_TIMEOUT)``; the next attempt starts
  ``backoff_k`` after this one started, with ``backoff_1 = INITIAL_BACKOFF`` and
  ``backoff_k = min(INITIAL * M**(k-1), MAX) * (1 + U(-JITTER, JITTER))``.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from perfkit import validate
from perfkit.errors import ConfigError

if TYPE_CHECKING:  # numpy is imported where samples are drawn (not by connect_with_retry)
    import numpy as np

Anchor = Literal["failure", "attempt_start"]


def _positive(owner: object, name: str, value: float, *, allow_zero: bool = False) -> None:
    validate.number(f"{type(owner).__name__}.{name}", value, strict=not allow_zero)


@dataclass(frozen=True, kw_only=True)
class Strategy(abc.ABC):
    """A retry schedule. ``max_attempts`` counts every try, the first one included.

    ``None`` means unbounded (then a deadline must stop the retries).
    """

    max_attempts: int | None = 10

    #: Registry-independent short label of the algorithm.
    kind: ClassVar[str] = "strategy"
    #: Where delay ``k`` is measured from (see the module docstring).
    anchor: ClassVar[Anchor] = "failure"

    def __post_init__(self) -> None:
        m = self.max_attempts
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(
                f"{type(self).__name__}.max_attempts must be an int >= 1 or None, got {m!r}"
            )
        self._validate()

    def _validate(self) -> None:  # noqa: B027 - optional hook, most strategies override it
        """Check the strategy's own fields; raise ConfigError naming the field."""

    # -- the schedule -------------------------------------------------------

    @abc.abstractmethod
    def delays(self, rng: random.Random) -> Iterator[float]:
        """Delays ``d_1, d_2, ...`` in seconds, endless; the driver stops consuming."""

    def schedule(self, rng: random.Random) -> list[float]:
        """The delays actually used: ``max_attempts - 1`` of them (error if unbounded)."""
        n = self.require_bounded_sleeps()
        it = self.delays(rng)
        return [next(it) for _ in range(n)]

    def require_bounded_sleeps(self) -> int:
        if self.max_attempts is None:
            raise ConfigError(
                f"{type(self).__name__}.max_attempts is None (unbounded): give a deadline or a "
                "number of attempts"
            )
        return self.max_attempts - 1

    @abc.abstractmethod
    def delay_bounds(self, k: int) -> tuple[float, float]:
        """Exact ``(min, max)`` of delay ``k`` (1-based) over all jitter outcomes."""

    def total_sleep_bounds(self, n: int) -> tuple[float, float]:
        """Exact ``(min, max)`` of ``d_1 + ... + d_n`` over all jitter outcomes.

        The default sums per-delay bounds, which is exact when the extremes of
        every delay can happen together (true for every strategy here except
        Polly V2, which overrides it).
        """
        if n <= 0:
            return (0.0, 0.0)
        lows, highs = zip(*(self.delay_bounds(k) for k in range(1, n + 1)), strict=True)
        return (math.fsum(lows), math.fsum(highs))

    @property
    def bounds_are_tight(self) -> bool:
        """Whether :meth:`total_sleep_bounds` can be reached (else it is only a valid bound)."""
        return True

    def attempt_timeout(self, k: int, backoff: float, default: float | None) -> float | None:
        """Connect timeout of attempt ``k`` (1-based); ``backoff`` is delay ``k``."""
        return default

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        """``n`` independent schedules of ``k`` delays, as an ``(n, k)`` array (vectorised)."""
        import numpy as np

        out = np.empty((n, k))
        seeds = rng.integers(0, 2**63 - 1, size=n)
        for row, seed in enumerate(seeds):
            it = self.delays(random.Random(int(seed)))
            out[row] = [next(it) for _ in range(k)]
        return out

    # -- presentation -------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Settings as a flat dict (for result metadata and tables)."""
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def with_(self, **changes: Any) -> Strategy:
        """A copy with some settings changed (validated again)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            names = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(
                f"{type(self).__name__} has no such setting ({exc}); known: {names}"
            ) from None


@dataclass(frozen=True, kw_only=True)
class FixedDelay(Strategy):
    """Sleep the same ``delay`` after every failure (the review's current loop).

    The review's loop retries while ``retry_count < 30``: one try plus 30
    retries, so ``max_attempts=31`` and 30 sleeps of 0.5 s (15 s of sleep).
    """

    delay: float = 0.5
    max_attempts: int | None = 31
    kind: ClassVar[str] = "fixed"

    def _validate(self) -> None:
        _positive(self, "delay", self.delay, allow_zero=True)

    def delays(self, rng: random.Random) -> Iterator[float]:
        while True:
            yield float(self.delay)

    def delay_bounds(self, k: int) -> tuple[float, float]:
        return (float(self.delay), float(self.delay))

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        return np.full((n, k), float(self.delay))


@dataclass(frozen=True, kw_only=True)
class _Exponential(Strategy):
    """Shared settings of the capped exponential family."""

    base: float = 0.1
    multiplier: float = 2.0
    cap: float = 5.0

    def _validate(self) -> None:
        _positive(self, "base", self.base)
        _positive(self, "cap", self.cap)
        _positive(self, "multiplier", self.multiplier)
        if self.multiplier < 1:
            raise ConfigError(
                f"{type(self).__name__}.multiplier must be >= 1, got {self.multiplier!r}"
            )
        if self.cap < self.base:
            raise ConfigError(
                f"{type(self).__name__}.cap ({self.cap!r}) must be >= base ({self.base!r})"
            )

    def envelope(self, k: int) -> float:
        """``min(cap, base * multiplier**(k-1))`` without overflow."""
        exponent = k - 1
        if self.multiplier == 1:
            return float(min(self.cap, self.base))
        # Past this exponent the product is surely above the cap.
        limit = math.log(self.cap / self.base) / math.log(self.multiplier) + 1
        if exponent > limit:
            return float(self.cap)
        return float(min(self.cap, self.base * self.multiplier**exponent))

    def _envelope_matrix(self, n: int, k: int) -> np.ndarray:
        import numpy as np

        row = np.array([self.envelope(j) for j in range(1, k + 1)])
        return np.broadcast_to(row, (n, k))


@dataclass(frozen=True, kw_only=True)
class CappedExponential(_Exponential):
    """``min(cap, base * multiplier**(k-1))``, no jitter: every client in lockstep."""

    kind: ClassVar[str] = "exponential"

    def delays(self, rng: random.Random) -> Iterator[float]:
        k = 1
        while True:
            yield self.envelope(k)
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        e = self.envelope(k)
        return (e, e)

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        return np.array(self._envelope_matrix(n, k))


@dataclass(frozen=True, kw_only=True)
class DelayedExponential(_Exponential):
    """Wait ``first_delay`` after the first failure, then ``min(cap, base * multiplier**(k-2))``.

    Made for a cold start whose boot time is known: the first retry lands just
    before the server is usually ready, later ones probe densely (with
    ``multiplier=1`` every ``base`` seconds). No jitter; not in ``STRATEGIES``:
    :func:`perfkit.retry.model.fit_schedule` chooses its settings.
    """

    first_delay: float = 1.0
    kind: ClassVar[str] = "delayed_exponential"

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "first_delay", self.first_delay, allow_zero=True)

    def delays(self, rng: random.Random) -> Iterator[float]:
        yield float(self.first_delay)
        k = 1
        while True:
            yield self.envelope(k)
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        d = float(self.first_delay) if k == 1 else self.envelope(k - 1)
        return (d, d)

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        if k <= 0:
            return np.empty((n, 0))
        first = np.full((n, 1), float(self.first_delay))
        return np.concatenate([first, self._envelope_matrix(n, k - 1)], axis=1)


@dataclass(frozen=True, kw_only=True)
class FullJitter(_Exponential):
    """``U(0, min(cap, base * multiplier**(k-1)))`` (Brooker 2015 "Full Jitter")."""

    kind: ClassVar[str] = "full_jitter"

    def delays(self, rng: random.Random) -> Iterator[float]:
        k = 1
        while True:
            yield rng.uniform(0.0, self.envelope(k))
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        return (0.0, self.envelope(k))

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        return rng.random((n, k)) * self._envelope_matrix(n, k)


@dataclass(frozen=True, kw_only=True)
class EqualJitter(_Exponential):
    """``e/2 + U(0, e/2)`` with ``e`` the capped exponential (Brooker 2015)."""

    kind: ClassVar[str] = "equal_jitter"

    def delays(self, rng: random.Random) -> Iterator[float]:
        k = 1
        while True:
            half = self.envelope(k) / 2
            yield half + rng.uniform(0.0, half)
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        e = self.envelope(k)
        return (e / 2, e)

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        half = self._envelope_matrix(n, k) / 2
        return half + rng.random((n, k)) * half


@dataclass(frozen=True, kw_only=True)
class DecorrelatedJitter(_Exponential):
    """``s_k = min(cap, U(base, 3 * s_{k-1}))``, ``s_0 = base`` (Brooker 2015).

    ``multiplier`` is unused by the formula (the growth factor is the 3).
    """

    kind: ClassVar[str] = "decorrelated_jitter"

    def delays(self, rng: random.Random) -> Iterator[float]:
        prev = float(self.base)
        while True:
            prev = min(float(self.cap), rng.uniform(self.base, prev * 3))
            yield prev

    def delay_bounds(self, k: int) -> tuple[float, float]:
        hi = float(self.base)
        for _ in range(k):
            hi = min(float(self.cap), hi * 3)
        return (float(self.base), hi)

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        out = np.empty((n, k))
        prev = np.full(n, float(self.base))
        for j in range(k):
            prev = np.minimum(self.cap, self.base + rng.random(n) * (prev * 3 - self.base))
            out[:, j] = prev
        return out


@dataclass(frozen=True, kw_only=True)
class AdditiveJitter(_Exponential):
    """The review's ``connect_with_backoff``: ``e_k + U(0, e_k / jitter_divisor)``.

    Defaults are its ``ConnectionRetryConfig``: initial 100 ms, x2, cap 5 s,
    ``max_retries=10``. Its loop runs ``for attempt in 0..max_retries`` and
    returns the error on the last failure *without* sleeping, so 10 attempts
    and 9 sleeps. The Rust code draws integer milliseconds; this draws a float.
    """

    jitter_divisor: float = 4.0
    kind: ClassVar[str] = "additive_jitter"

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "jitter_divisor", self.jitter_divisor)

    def delays(self, rng: random.Random) -> Iterator[float]:
        k = 1
        while True:
            e = self.envelope(k)
            yield e + rng.uniform(0.0, e / self.jitter_divisor)
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        e = self.envelope(k)
        return (e, e + e / self.jitter_divisor)

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        e = self._envelope_matrix(n, k)
        return e + rng.random((n, k)) * e / self.jitter_divisor


_P_FACTOR = 4.0
_RP_SCALING = 1 / 1.4


def _polly_g(t: float | np.ndarray) -> Any:
    import numpy as np

    return np.power(2.0, t) * np.tanh(np.sqrt(_P_FACTOR * t))


@dataclass(frozen=True, kw_only=True)
class PollyDecorrelatedJitterV2(Strategy):
    """Polly.Contrib.WaitAndRetry ``DecorrelatedJitterBackoffV2(meanFirstDelay, ...)``.

    Delays have means near ``f, 2f, 4f, ...`` with a smooth spread; the sum of
    the first ``n`` delays telescopes to ``g(t_{n-1}) * f / 1.4``. ``max_delay``
    (not in the Contrib version, added in Polly v8) caps single delays.
    """

    mean_first_delay: float = 0.1
    max_delay: float | None = None
    fast_first: bool = False
    kind: ClassVar[str] = "polly_v2"

    def _validate(self) -> None:
        _positive(self, "mean_first_delay", self.mean_first_delay)
        if self.max_delay is not None:
            _positive(self, "max_delay", self.max_delay)
        if not isinstance(self.fast_first, bool):
            raise ConfigError(
                f"PollyDecorrelatedJitterV2.fast_first must be a bool, got {self.fast_first!r}"
            )

    def _scale(self) -> float:
        return _RP_SCALING * self.mean_first_delay

    def _cap(self, d: float) -> float:
        return d if self.max_delay is None else min(d, float(self.max_delay))

    def delays(self, rng: random.Random) -> Iterator[float]:
        i = 0
        if self.fast_first:
            i = 1
            yield 0.0
        prev = 0.0
        while True:
            t = i + rng.random()
            nxt = float(_polly_g(t))
            yield self._cap((nxt - prev) * self._scale())
            prev = nxt
            i += 1

    def _index(self, k: int) -> int | None:
        """Formula index ``i`` of delay ``k``, or None for the fast-first zero."""
        if self.fast_first:
            return None if k == 1 else k - 1
        return k - 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        i = self._index(k)
        if i is None:
            return (0.0, 0.0)
        if i == 0 or (self.fast_first and i == 1):
            # prev is 0 here: the delay is g(t) itself with t in [i, i + 1).
            lo, hi = float(_polly_g(i)), float(_polly_g(i + 1))
        else:
            lo, hi = 0.0, float(_polly_g(i + 1)) - float(_polly_g(i - 1))
        return (self._cap(lo * self._scale()), self._cap(hi * self._scale()))

    @property
    def bounds_are_tight(self) -> bool:
        return self.max_delay is None

    def total_sleep_bounds(self, n: int) -> tuple[float, float]:
        if self.max_delay is not None:
            return super().total_sleep_bounds(n)
        if n - (1 if self.fast_first else 0) <= 0:
            return (0.0, 0.0)
        last = n - 1  # the sum telescopes to g(t_last) * scale, t_last in [last, last + 1)
        return (float(_polly_g(last)) * self._scale(), float(_polly_g(last + 1)) * self._scale())

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        start = 1 if self.fast_first else 0
        terms = max(k - start, 0)
        t = np.arange(start, start + terms)[None, :] + rng.random((n, terms))
        g = _polly_g(t)
        diffs = np.diff(g, axis=1, prepend=0.0) * self._scale()
        if self.max_delay is not None:
            diffs = np.minimum(diffs, self.max_delay)
        if start:
            diffs = np.concatenate([np.zeros((n, 1)), diffs], axis=1)
        return diffs[:, :k]


@dataclass(frozen=True, kw_only=True)
class GrpcBackoff(Strategy):
    """gRPC connection backoff (grpc/doc/connection-backoff.md), deadline scheduled.

    Attempt ``k`` gets ``max(backoff_k, min_connect_timeout)`` to connect; the
    next attempt starts ``backoff_k`` after attempt ``k`` *started* (at once if
    the attempt took longer). gRPC retries forever: ``max_attempts=None``.
    """

    initial_backoff: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    max_backoff: float = 120.0
    min_connect_timeout: float = 20.0
    max_attempts: int | None = None
    kind: ClassVar[str] = "grpc"
    anchor: ClassVar[Anchor] = "attempt_start"

    def _validate(self) -> None:
        _positive(self, "initial_backoff", self.initial_backoff)
        _positive(self, "max_backoff", self.max_backoff)
        _positive(self, "min_connect_timeout", self.min_connect_timeout)
        _positive(self, "multiplier", self.multiplier)
        _positive(self, "jitter", self.jitter, allow_zero=True)
        if self.multiplier < 1:
            raise ConfigError(f"GrpcBackoff.multiplier must be >= 1, got {self.multiplier!r}")
        if self.jitter >= 1:
            raise ConfigError(f"GrpcBackoff.jitter must be in [0, 1), got {self.jitter!r}")
        if self.max_backoff < self.initial_backoff:
            raise ConfigError(
                f"GrpcBackoff.max_backoff ({self.max_backoff!r}) must be >= initial_backoff "
                f"({self.initial_backoff!r})"
            )

    def _current(self, k: int) -> float:
        exponent = k - 1
        limit = (
            math.log(self.max_backoff / self.initial_backoff) / math.log(self.multiplier) + 1
            if self.multiplier > 1
            else math.inf
        )
        if exponent > limit:
            return float(self.max_backoff)
        return float(min(self.max_backoff, self.initial_backoff * self.multiplier**exponent))

    def delays(self, rng: random.Random) -> Iterator[float]:
        yield float(self.initial_backoff)
        k = 2
        while True:
            b = self._current(k)
            yield b + rng.uniform(-self.jitter * b, self.jitter * b)
            k += 1

    def delay_bounds(self, k: int) -> tuple[float, float]:
        if k == 1:
            return (float(self.initial_backoff), float(self.initial_backoff))
        b = self._current(k)
        return (b * (1 - self.jitter), b * (1 + self.jitter))

    def attempt_timeout(self, k: int, backoff: float, default: float | None) -> float | None:
        return max(backoff, float(self.min_connect_timeout))

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        b = np.array([self._current(j) for j in range(1, k + 1)])
        jitter = (rng.random((n, k)) * 2 - 1) * self.jitter
        out = b[None, :] * (1 + jitter)
        if k:
            out[:, 0] = self.initial_backoff
        return out


@dataclass(frozen=True, kw_only=True)
class FirstRetryDelay(Strategy):
    """Wait ``first_delay`` after the first failure, then follow ``then``'s delays from its first.

    :class:`DelayedExponential` for any schedule, jittered ones included (a fleet's
    first retry aimed past a restart, then spread out). ``then``'s own
    ``max_attempts`` is ignored: this strategy's counts every try.
    """

    first_delay: float = 1.0
    then: Strategy = dataclasses.field(default_factory=lambda: FullJitter())
    kind: ClassVar[str] = "first_retry_delay"

    def _validate(self) -> None:
        _positive(self, "first_delay", self.first_delay, allow_zero=True)
        if not isinstance(self.then, Strategy) or self.then.anchor != "failure":
            raise ConfigError(
                f"FirstRetryDelay.then must be a Strategy whose delays follow a failure, "
                f"got {self.then!r}"
            )

    def delays(self, rng: random.Random) -> Iterator[float]:
        yield float(self.first_delay)
        yield from self.then.delays(rng)

    def delay_bounds(self, k: int) -> tuple[float, float]:
        if k == 1:
            return (float(self.first_delay), float(self.first_delay))
        return self.then.delay_bounds(k - 1)

    @property
    def bounds_are_tight(self) -> bool:
        return self.then.bounds_are_tight

    def sample(self, rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        import numpy as np

        if k <= 0:
            return np.empty((n, 0))
        first = np.full((n, 1), float(self.first_delay))
        return np.concatenate([first, self.then.sample(rng, n, k - 1)], axis=1)

    def describe(self) -> dict[str, Any]:
        """Flat: ``first_delay``, then ``then``'s settings; ``jitter`` is ``then``'s kind."""
        inner = {k: v for k, v in self.then.describe().items() if k not in ("kind", "max_attempts")}
        return {
            "kind": self.kind,
            "jitter": self.then.kind,
            "first_delay": self.first_delay,
            **inner,
            "max_attempts": self.max_attempts,
        }


#: The named strategies notebooks compare. The exponential family shares the
#: review's envelope (100 ms, x2, cap 5 s, 10 attempts) so only the jitter differs.
STRATEGIES: dict[str, Strategy] = {
    "naive": FixedDelay(),
    "exponential": CappedExponential(),
    "full_jitter": FullJitter(),
    "equal_jitter": EqualJitter(),
    "decorrelated_jitter": DecorrelatedJitter(),
    "review": AdditiveJitter(),
    "polly_v2": PollyDecorrelatedJitterV2(max_delay=5.0),
    "grpc": GrpcBackoff(),
}


def get_strategy(name: str, **overrides: Any) -> Strategy:
    """The registered strategy ``name``, optionally with some settings changed."""
    if not isinstance(name, str) or name not in STRATEGIES:
        known = ", ".join(STRATEGIES)
        raise ConfigError(f"unknown retry strategy {name!r}; known strategies: {known}")
    strategy = STRATEGIES[name]
    return strategy.with_(**overrides) if overrides else strategy


def strategy_name(strategy: Strategy) -> str:
    """The registry name of ``strategy`` if it is a registered one, else its kind."""
    for name, registered in STRATEGIES.items():
        if registered == strategy:
            return name
    return strategy.kind
