"""Open-loop arrival schedules: when each request is meant to start (seeded, pure).

An open-loop client sends requests at times fixed in advance, whether or not
earlier ones have come back. :func:`arrivals` yields those intended start
times (seconds after the run starts) lazily from a seeded generator, so a
schedule of any length costs constant memory:

- ``"poisson"``: exponential gaps with mean ``1 / rate`` (a Poisson process,
  what pgbench ``--rate`` draws);
- ``"fixed"``: one request every ``1 / rate`` seconds exactly.

The same ``(rate, kind, seed)`` always gives the same schedule.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from perfkit import validate
from perfkit.errors import ConfigError

#: The arrival processes :func:`arrivals` knows.
ARRIVALS = ("poisson", "fixed")


def check_arrivals(kind: object) -> str:
    """``kind`` if it is one of :data:`ARRIVALS`, else ConfigError naming the choices."""
    if kind not in ARRIVALS:
        raise ConfigError(f"arrivals must be one of {ARRIVALS}, got {kind!r}")
    return str(kind)


def arrivals(rate: float, kind: str = "poisson", *, seed: int = 0) -> Iterator[float]:
    """Intended start times (s from the run's start), endless, increasing, seeded.

    ``rate`` is the offered load in requests per second (> 0).
    """
    validate.number("arrival rate", rate, strict=True)
    check_arrivals(kind)
    gap = 1.0 / float(rate)
    if kind == "fixed":
        return (i * gap for i in range(10**18))
    return _poisson(float(rate), random.Random(f"perfkit-arrivals:{seed}"))


def _poisson(rate: float, rng: random.Random) -> Iterator[float]:
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        yield t


def within(schedule: Iterator[float], duration: float) -> Iterator[float]:
    """The times of ``schedule`` before ``duration`` seconds."""
    for t in schedule:
        if t >= duration:
            return
        yield t
