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
#: Named variants for measured suite runs (the lifecycle lab, shortbench): a strategy run with
#: extra plugin options, kept apart from the plain strategy in every table: name -> (strategy,
#: pytest options). Only here: the plugin itself takes the strategy and the options.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "verified+stable-dsn": ("verified", ("--perfkit-stable-dsn",)),
}
#: The :class:`~perfkit.lifecycle.settings.IsolationSettings` fields each variant's options
#: set (the leak check runs a variant on perfkit's own session with them).
VARIANT_SETTINGS: dict[str, dict[str, object]] = {"verified+stable-dsn": {"stable_dsn": True}}
#: Shared strategies and variants that isolate tests (``none`` does not).
ISOLATING_SHARED: tuple[str, ...] = (*(n for n in SHARED if n != "none"), *VARIANTS)
#: Strategies that isolate one connection and so cannot hand a test a DSN.
NO_DSN: tuple[str, ...] = ("rollback",)


def check_name(name: object) -> str:
    """Return ``name`` if it is a known strategy, else raise ConfigError listing them."""
    if not isinstance(name, str) or name not in NAMES:
        raise ConfigError(f"unknown isolation strategy {name!r}; choose one of {', '.join(NAMES)}")
    return name


def base_strategy(name: str) -> str:
    """The plugin strategy a suite-run name stands for (a variant's, else ``name`` itself)."""
    return VARIANTS[name][0] if name in VARIANTS else name


def strategy_class(name: str) -> type[IsolationStrategy]:
    """The class implementing strategy ``name``."""
    check_name(name)
    if name == "verified":
        from perfkit.lifecycle.verified import VerifiedPool

        return VerifiedPool
    from perfkit.lifecycle import strategies

    return strategies.BY_NAME[name]
