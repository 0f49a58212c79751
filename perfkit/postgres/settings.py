"""Settings that say which PostgreSQL server an experiment gets and how it is configured."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from perfkit.dsn import SecretDsn, mask
from perfkit.errors import ConfigError

BACKENDS = ("auto", "docker", "local", "external")

#: Server settings that make throwaway test servers fast; durability is not wanted there.
FAST_SERVER_SETTINGS: Mapping[str, str] = MappingProxyType(
    {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
)

#: Loaded into every server perfkit starts (when the binaries have it), so the labs can read
#: ``pg_stat_statements``; a ``shared_preload_libraries`` in ``server_settings`` replaces it.
PRELOAD_LIBRARIES = "pg_stat_statements"


def preload_args(settings: ServerSettings, *, available: bool = True) -> list[str]:
    """``-c shared_preload_libraries=...`` for a server's command line, or nothing.

    Nothing when the library is not ``available`` or the settings name their own.
    """
    if not available or "shared_preload_libraries" in settings.server_settings:
        return []
    return ["-c", f"shared_preload_libraries={PRELOAD_LIBRARIES}"]


def _check_server_settings(values: Mapping[str, object]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key.replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"server setting name {key!r} is not a PostgreSQL GUC name")
        if isinstance(value, bool):
            checked[key] = "on" if value else "off"
        elif isinstance(value, int | float | str):
            checked[key] = str(value)
        else:
            raise ConfigError(
                f"server setting {key}={value!r} must be a str, int, float or bool, "
                f"not {type(value).__name__}"
            )
    return checked


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where a PostgreSQL server comes from and how it is configured.

    ``backend`` is one of ``auto`` (Docker when a daemon answers, else local
    binaries), ``docker``, ``local`` or ``external`` (an existing ``dsn``).
    The password is random per run unless given and never shown in ``repr``.
    ``ram`` keeps the data directory in memory (``/dev/shm`` for local servers,
    a tmpfs mount for containers): clones and drops become several times
    faster; the data is gone when the server stops, which throwaway test
    servers want anyway.
    """

    backend: str = "auto"
    user: str = "perfkit"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    dbname: str = "perfkit"
    server_settings: Mapping[str, object] = field(
        default_factory=lambda: dict(FAST_SERVER_SETTINGS)
    )
    image: str | None = None
    bindir: str | None = None
    dsn: str | None = field(default=None, repr=False)
    startup_timeout: float = 60.0
    ram: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
            )
        for name in ("user", "dbname"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.password, str) or not self.password:
            raise ConfigError("password must be a non-empty string")
        if not isinstance(self.startup_timeout, int | float) or self.startup_timeout <= 0:
            raise ConfigError(
                "startup_timeout must be a positive number of seconds, "
                f"got {self.startup_timeout!r}"
            )
        if not isinstance(self.server_settings, Mapping):
            raise ConfigError("server_settings must be a mapping of GUC name to value")
        object.__setattr__(
            self, "server_settings", MappingProxyType(_check_server_settings(self.server_settings))
        )
        if self.backend == "external" and not self.dsn:
            raise ConfigError(
                "backend 'external' needs a dsn (e.g. postgresql://user@127.0.0.1/db)"
            )
        if self.dsn is not None and not isinstance(self.dsn, str):
            raise ConfigError("dsn must be a string")
        if self.dsn is not None:
            object.__setattr__(self, "dsn", SecretDsn(self.dsn))
            from perfkit.loopback import check_loopback  # only with a DSN: cheap settings

            check_loopback(self.dsn)  # before anything starts or connects
        if not isinstance(self.ram, bool):
            raise ConfigError(f"ram must be true or false, got {self.ram!r}")

    @property
    def masked_dsn(self) -> str | None:
        return mask(self.dsn) if self.dsn else None

    def describe(self) -> dict[str, object]:
        """Settings as a plain dict for result metadata, without secrets."""
        return {
            "backend": self.backend,
            "user": self.user,
            "dbname": self.dbname,
            "server_settings": dict(self.server_settings),
            "image": self.image,
            "bindir": self.bindir,
            "dsn": self.masked_dsn,
            "startup_timeout": self.startup_timeout,
            "ram": self.ram,
        }
