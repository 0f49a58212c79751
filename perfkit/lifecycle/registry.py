"""Isolation strategies by name; an unknown name is a ConfigError listing the known ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfkit.errors import ConfigError

if TYPE_CHECKING:
    from perfkit.lifecycle.strategies import IsolationStrategy

#: Every strategy name, cheapest-to-import list (no psycopg needed to validate a name).
NAMES: tuple[str, ...] = (
    "per-test-server",
    "rollback",
    "truncate",
    "template",
    "warm-pool",
    "verified",
    "none",
)
#: Strategies that share one server per session (per xdist worker).
SHARED: tuple[str, ...] = ("rollback", "truncate", "template", "warm-pool", "verified", "none")
#: Strategies that isolate one connection and so cannot hand a test a DSN.
NO_DSN: tuple[str, ...] = ("rollback",)


def check_name(name: object) -> str:
    """Return ``name`` if it is a known strategy, else raise ConfigError listing them."""
    if not isinstance(name, str) or name not in NAMES:
        raise ConfigError(f"unknown isolation strategy {name!r}; choose one of {', '.join(NAMES)}")
    return name


def strategy_class(name: str) -> type[IsolationStrategy]:
    """The class implementing strategy ``name``."""
    check_name(name)
    if name == "verified":
        from perfkit.lifecycle.verified import VerifiedPool

        return VerifiedPool
    from perfkit.lifecycle import strategies

    return strategies.BY_NAME[name]
