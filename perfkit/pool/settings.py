"""Pool and workload settings: what a pool experiment runs, validated before any server starts.

:class:`PoolSettings` mirrors the keyword arguments of
``psycopg_pool.ConnectionPool`` (``min_size``, ``max_size``, ``timeout``,
``max_waiting``, ``max_idle``, ``max_lifetime``, ``reconnect_timeout``,
``num_workers``) plus ``check`` (pass ``ConnectionPool.check_connection`` as the
pool's ``check`` callback, i.e. "test before acquire") and ``pooled`` (``False``
means no pool at all: one new connection per request, the baseline).

:class:`Workload` says what W workers do for how long: a weighted query mix,
exponential think time between requests, a seed. A :class:`Query` may carry a
pgbench-format script (:mod:`perfkit.workload`): the worker then runs the
script, variables and all; :func:`script_mix` turns script files into a mix.

Named presets: :data:`REVIEW` (the performance review's sqlx settings),
:data:`PSYCOPG_DEFAULTS` and :data:`NO_POOL`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.workload import Script, WeightedScript, load_workload


def _positive_number(owner: str, name: str, value: object, *, allow_zero: bool = False) -> None:
    validate.number(f"{owner}.{name}", value, strict=not allow_zero)


def _int_at_least(owner: str, name: str, value: object, low: int) -> None:
    validate.integer(f"{owner}.{name}", value, minimum=low)


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """Settings of one ``psycopg_pool`` pool (or of no pool at all).

    Times are in seconds. ``max_size=None`` means "same as ``min_size``", as in
    psycopg_pool. With ``pooled=False`` the size fields are ignored and every
    request opens (and closes) its own connection; ``timeout`` is then the
    connect timeout.
    """

    name: str = "custom"
    min_size: int = 4
    max_size: int | None = None
    timeout: float = 30.0
    max_waiting: int = 0
    max_lifetime: float = 3600.0
    max_idle: float = 600.0
    reconnect_timeout: float = 300.0
    num_workers: int = 3
    check: bool = False
    pooled: bool = True

    def __post_init__(self) -> None:
        owner = "PoolSettings"
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"{owner}.name must be a non-empty string, got {self.name!r}")
        _int_at_least(owner, "min_size", self.min_size, 0)
        if self.max_size is not None:
            _int_at_least(owner, "max_size", self.max_size, 1)
            if self.max_size < self.min_size:
                raise ConfigError(
                    f"{owner}.max_size ({self.max_size}) must be >= min_size ({self.min_size})"
                )
        elif self.min_size < 1:
            raise ConfigError(f"{owner}.max_size must be given when min_size is 0")
        for name in ("timeout", "max_lifetime", "max_idle", "reconnect_timeout"):
            _positive_number(owner, name, getattr(self, name))
        _int_at_least(owner, "max_waiting", self.max_waiting, 0)
        _int_at_least(owner, "num_workers", self.num_workers, 1)
        for name in ("check", "pooled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def effective_max_size(self) -> int:
        """The pool's real upper bound (``max_size`` or, when None, ``min_size``)."""
        return self.min_size if self.max_size is None else self.max_size

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def pool_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ConnectionPool`` / ``AsyncConnectionPool`` (without check)."""
        if not self.pooled:
            raise ConfigError(f"PoolSettings {self.name!r} has pooled=False: there is no pool")
        return {
            "min_size": self.min_size,
            "max_size": self.max_size,
            "timeout": float(self.timeout),
            "max_waiting": self.max_waiting,
            "max_lifetime": float(self.max_lifetime),
            "max_idle": float(self.max_idle),
            "reconnect_timeout": float(self.reconnect_timeout),
            "num_workers": self.num_workers,
        }

    def describe(self) -> dict[str, Any]:
        """Plain dict for result frames and metadata."""
        return dataclasses.asdict(self) | {"effective_max_size": self.effective_max_size}


#: The review's sqlx settings: max 5, min 1, acquire timeout 3 s, idle 10 s,
#: lifetime 60 s, test before acquire.
REVIEW = PoolSettings(
    name="review",
    min_size=1,
    max_size=5,
    timeout=3.0,
    max_idle=10.0,
    max_lifetime=60.0,
    check=True,
)

#: psycopg_pool's own defaults (min_size 4, max_size = min_size, timeout 30 s, ...).
PSYCOPG_DEFAULTS = PoolSettings(name="psycopg-defaults")

#: No pool: every request connects, runs its query and disconnects (the baseline).
NO_POOL = PoolSettings(name="no-pool", pooled=False, min_size=1, max_size=1, timeout=3.0)

PRESETS: Mapping[str, PoolSettings] = {p.name: p for p in (REVIEW, PSYCOPG_DEFAULTS, NO_POOL)}


@dataclass(frozen=True, kw_only=True)
class Query:
    """One kind of request in a workload's mix, chosen with probability ~ ``weight``.

    With a ``script`` the request runs the script (``sql`` is then its text, for
    display); without, it runs ``sql``.
    """

    name: str
    sql: str
    weight: float = 1.0
    script: Script | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Query.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise ConfigError(f"Query.sql of {self.name!r} must be a non-empty string")
        _positive_number(f"Query[{self.name}]", "weight", self.weight)


def script_mix(scripts: Sequence[WeightedScript]) -> tuple[Query, ...]:
    """A mix of one :class:`Query` per script (named after its file, weight kept)."""
    return tuple(
        Query(name=w.script.name, sql=w.script.source.strip(), weight=w.weight, script=w.script)
        for w in scripts
    )


#: The default workload's shipped scripts (``perfkit/workload/scripts/default``): mostly
#: trivial statements, some that wait (like I/O) and a few that burn server CPU.
DEFAULT_WORKLOAD: tuple[str, ...] = (
    "perfkit:default/select1.sql@6",
    "perfkit:default/sleep2ms.sql@3",
    "perfkit:default/scan20k.sql@1",
)
#: The default mix: ``SELECT 1`` (6), ``pg_sleep(0.002)`` (3), a 20k-row ``generate_series`` (1).
DEFAULT_MIX: tuple[Query, ...] = script_mix(load_workload(DEFAULT_WORKLOAD))


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What the workers do: ``workers`` threads (or tasks) for ``duration`` seconds.

    Each worker loops: pick a query from ``mix`` (by weight), acquire a
    connection, run it, release it, then think for an exponentially distributed
    time with mean ``think_time`` (0 = no pause). Workers start together
    ``start_delay`` seconds after the pool is open (used by the spike test).
    ``stats_interval`` is how often the pool's ``get_stats()`` is sampled.
    """

    workers: int = 4
    duration: float = 2.0
    mix: tuple[Query, ...] = field(default=DEFAULT_MIX)
    think_time: float = 0.0
    start_delay: float = 0.0
    stats_interval: float = 0.05
    seed: int = 0
    #: Variables every script sees besides their own ``\\set`` ones (``scale``, like ``-D``).
    variables: tuple[tuple[str, int | float], ...] = ()

    def __post_init__(self) -> None:
        owner = "Workload"
        _int_at_least(owner, "workers", self.workers, 1)
        _positive_number(owner, "duration", self.duration)
        _positive_number(owner, "think_time", self.think_time, allow_zero=True)
        _positive_number(owner, "start_delay", self.start_delay, allow_zero=True)
        _positive_number(owner, "stats_interval", self.stats_interval)
        _int_at_least(owner, "seed", self.seed, 0)
        if not isinstance(self.mix, tuple) or not self.mix:
            raise ConfigError(f"{owner}.mix must be a non-empty tuple of Query, got {self.mix!r}")
        for q in self.mix:
            if not isinstance(q, Query):
                raise ConfigError(f"{owner}.mix must hold Query objects, got {q!r}")
        names = [q.name for q in self.mix]
        if len(set(names)) != len(names):
            raise ConfigError(f"{owner}.mix has duplicate query names: {names}")
        for item in self.variables:
            ok = isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
            if not ok or isinstance(item[1], bool) or not isinstance(item[1], int | float):
                raise ConfigError(f"{owner}.variables holds (name, number) pairs, got {item!r}")

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Plain dict for result metadata."""
        d = dataclasses.asdict(self)
        d["mix"] = [{"name": q.name, "sql": q.sql, "weight": q.weight} for q in self.mix]
        d["variables"] = dict(self.variables)
        return d
