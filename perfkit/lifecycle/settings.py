"""Settings for an isolation session: which strategy, which server, which migrations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from perfkit.dsn import mask
from perfkit.errors import ConfigError
from perfkit.postgres.settings import BACKENDS, FAST_SERVER_SETTINGS, ServerSettings

TEMPLATE_STRATEGIES = ("file_copy", "wal_log")
DEFAULT_ISOLATION = "template"


def _paths(value: object) -> tuple[Path, ...]:
    if value is None:
        return ()
    if isinstance(value, str | Path):
        value = [value]
    if not isinstance(value, Sequence):
        raise ConfigError(f"migrations must be a path or a list of paths, got {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str | Path) or not str(item):
            raise ConfigError(f"migrations entries must be paths, got {item!r}")
        out.append(Path(item))
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class IsolationSettings:
    """How tests get a clean PostgreSQL database.

    ``isolation`` names a strategy (see :data:`perfkit.lifecycle.registry.NAMES`);
    ``backend``/``dsn`` say where the server(s) come from; ``migrations`` are SQL
    files applied once to a template database (per server for ``per-test-server``);
    ``template_strategy`` picks ``CREATE DATABASE ... STRATEGY`` (PostgreSQL 15+,
    None = server default); ``pool_size`` is the warm pool's number of ready
    databases; ``keep_tables`` are never truncated by ``truncate``.
    """

    isolation: str = DEFAULT_ISOLATION
    backend: str = "auto"
    dsn: str | None = field(default=None, repr=False)
    migrations: tuple[Path, ...] = ()
    template_strategy: str | None = None
    pool_size: int = 3
    keep_tables: tuple[str, ...] = ()
    server_settings: Mapping[str, object] = field(
        default_factory=lambda: dict(FAST_SERVER_SETTINGS)
    )
    image: str | None = None
    bindir: str | None = None
    acquire_timeout: float = 60.0

    def __post_init__(self) -> None:
        from perfkit.lifecycle.registry import check_name

        check_name(self.isolation)
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"backend {self.backend!r} is unknown; choose one of {', '.join(BACKENDS)}"
            )
        if self.dsn is not None and (not isinstance(self.dsn, str) or not self.dsn):
            raise ConfigError("dsn must be a non-empty string")
        if self.backend == "external" and not self.dsn:
            raise ConfigError(
                "backend 'external' needs a dsn (e.g. --perfkit-dsn=postgresql://...)"
            )
        object.__setattr__(self, "migrations", _paths(self.migrations))
        for path in self.migrations:
            if not path.is_file():
                raise ConfigError(f"migrations file {path} cannot be read: no such file")
        if self.template_strategy is not None and self.template_strategy not in TEMPLATE_STRATEGIES:
            raise ConfigError(
                f"template_strategy {self.template_strategy!r} is unknown; choose one of "
                f"{', '.join(TEMPLATE_STRATEGIES)} (or None for the server default)"
            )
        if isinstance(self.pool_size, bool) or not isinstance(self.pool_size, int):
            raise ConfigError(f"pool_size must be an integer, got {self.pool_size!r}")
        if self.pool_size < 1:
            raise ConfigError(f"pool_size must be at least 1, got {self.pool_size}")
        if isinstance(self.keep_tables, str) or not all(
            isinstance(t, str) for t in self.keep_tables
        ):
            raise ConfigError(
                f"keep_tables must be a list of table names, got {self.keep_tables!r}"
            )
        object.__setattr__(self, "keep_tables", tuple(self.keep_tables))
        if not isinstance(self.server_settings, Mapping):
            raise ConfigError("server_settings must be a mapping of GUC name to value")
        object.__setattr__(self, "server_settings", MappingProxyType(dict(self.server_settings)))
        if not isinstance(self.acquire_timeout, int | float) or self.acquire_timeout <= 0:
            raise ConfigError(f"acquire_timeout must be positive, got {self.acquire_timeout!r}")

    def server(self) -> ServerSettings:
        """Settings for a server this session starts (or connects to, when external)."""
        return ServerSettings(
            backend=self.backend,
            dsn=self.dsn,
            server_settings=dict(self.server_settings),
            image=self.image,
            bindir=self.bindir,
        )

    def describe(self) -> dict[str, object]:
        """Settings as a plain dict for result metadata (DSN masked)."""
        return {
            "isolation": self.isolation,
            "backend": self.backend,
            "dsn": mask(self.dsn) if self.dsn else None,
            "migrations": [str(p) for p in self.migrations],
            "template_strategy": self.template_strategy,
            "pool_size": self.pool_size,
            "keep_tables": list(self.keep_tables),
            "server_settings": dict(self.server_settings),
        }
