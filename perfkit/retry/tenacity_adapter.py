"""Use a perfkit strategy with tenacity: ``as_tenacity_wait`` and ``as_tenacity_stop``.

::

    @tenacity.retry(wait=as_tenacity_wait(get_strategy("full_jitter")),
                    stop=as_tenacity_stop(get_strategy("full_jitter")))
    def connect(): ...

Each retrying call (tenacity's ``RetryCallState``) gets its own delay
sequence from ``rng_factory``; tenacity sleeps after a failure, so the gRPC
strategy's attempt-start anchor is approximated by a plain sleep here.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Iterator

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from perfkit.retry.strategies import Strategy


class StrategyWait(wait_base):
    """tenacity wait: the k-th failure of a call waits the strategy's k-th delay."""

    def __init__(
        self, strategy: Strategy, rng_factory: Callable[[], random.Random] = random.Random
    ) -> None:
        self.strategy = strategy
        self._rng_factory = rng_factory
        self._schedules: weakref.WeakKeyDictionary[
            tenacity.RetryCallState, tuple[Iterator[float], list[float]]
        ] = weakref.WeakKeyDictionary()

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        if retry_state not in self._schedules:
            self._schedules[retry_state] = (self.strategy.delays(self._rng_factory()), [])
        delays, seen = self._schedules[retry_state]
        while len(seen) < retry_state.attempt_number:
            seen.append(next(delays))
        return seen[retry_state.attempt_number - 1]


def as_tenacity_wait(
    strategy: Strategy, rng_factory: Callable[[], random.Random] = random.Random
) -> StrategyWait:
    """A tenacity ``wait=`` object following ``strategy``'s delays."""
    return StrategyWait(strategy, rng_factory)


def as_tenacity_stop(strategy: Strategy) -> stop_base:
    """tenacity ``stop=`` after the strategy's ``max_attempts`` (never, if unbounded)."""
    if strategy.max_attempts is None:
        return tenacity.stop_never
    return tenacity.stop_after_attempt(strategy.max_attempts)
