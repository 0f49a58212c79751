"""Settings for an isolation session: which strategy, which server, which migrations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from perfkit.dsn import SecretDsn, mask
from perfkit.errors import ConfigError
from perfkit.postgres.settings import BACKENDS, FAST_SERVER_SETTINGS, ServerSettings

TEMPLATE_STRATEGIES = ("file_copy", "wal_log")
#: ``template_strategy`` value that measures both strategies on the template and keeps the faster.
AUTO = "auto"
DEFAULT_ISOLATION = "template"
ROLLBACK_GUARDS = ("warn", "fail", "off")

#: Server settings for throwaway test servers: no durability, little WAL, room for pools.
TEST_SERVER_SETTINGS: Mapping[str, object] = MappingProxyType(
    {
        **FAST_SERVER_SETTINGS,
        "wal_level": "minimal",
        "max_wal_senders": 0,
        "max_connections": 200,
    }
)


#: In-memory data directories are the default only with this much free RAM and /dev/shm space.
RAM_HEADROOM_BYTES = 2 << 30


def ram_available() -> bool:
    """Whether test servers should keep their data in memory on this machine by default."""
    import shutil

    import psutil

    from perfkit.postgres.cleanup import ram_root

    root = ram_root()
    if root is None:
        return False
    try:
        free_shm = shutil.disk_usage(root).free
    except OSError:
        return False
    return min(free_shm, psutil.virtual_memory().available) >= RAM_HEADROOM_BYTES


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
    ``template_strategy`` picks ``CREATE DATABASE ... STRATEGY`` (PostgreSQL 15+;
    ``auto`` times both on the template and keeps the faster, None = server
    default); ``pool_size`` is the most databases the warm pool keeps ready
    (it fills up to ``min(pool_size, tests still to come)``) and
    ``clone_workers`` how many connections clone concurrently;
    ``keep_tables`` are never truncated by ``truncate``.

    ``ram`` puts the server's data directory in memory (default: on when the
    machine has ``/dev/shm`` with room to spare); ``reuse`` keeps the server
    and the migrated template alive after the session for the next run
    (never with ``backend="external"``); ``keep_failed`` keeps a failed
    test's database for inspection; ``rollback_guard`` says what happens when
    code under ``rollback`` isolation reaches the database through another
    connection (``warn``, ``fail`` or ``off``). ``unix_socket`` hands out
    unix-socket DSNs where the server has one (local backend: no TCP, no
    password, connects about 3x faster); off gives host, port and password.
    ``export_pg_env`` (pytest plugin) sets libpq's ``PGHOST``, ``PGPORT``,
    ``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE`` to the session's database
    before the suite's own fixtures run, and to the test's database where a
    test leases one (see :mod:`perfkit.lifecycle.pgenv`). ``stable_dsn``
    (``verified`` only) gives every test of a worker the same database, checked
    and reset in place between tests, so connections an application keeps
    survive (see :mod:`perfkit.lifecycle.stable`).
    """

    isolation: str = DEFAULT_ISOLATION
    backend: str = "auto"
    dsn: str | None = field(default=None, repr=False)
    migrations: tuple[Path, ...] = ()
    template_strategy: str | None = AUTO
    pool_size: int = 8
    clone_workers: int = 2
    keep_tables: tuple[str, ...] = ()
    server_settings: Mapping[str, object] = field(
        default_factory=lambda: dict(TEST_SERVER_SETTINGS)
    )
    image: str | None = None
    bindir: str | None = None
    acquire_timeout: float = 60.0
    ram: bool = field(default_factory=lambda: ram_available())
    reuse: bool = False
    keep_failed: bool = False
    rollback_guard: str = "warn"
    unix_socket: bool = True
    export_pg_env: bool = False
    stable_dsn: bool = False

    def __post_init__(self) -> None:
        from perfkit.lifecycle.registry import check_name

        check_name(self.isolation)
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"backend {self.backend!r} is unknown; choose one of {', '.join(BACKENDS)}"
            )
        if self.dsn is not None and (not isinstance(self.dsn, str) or not self.dsn):
            raise ConfigError("dsn must be a non-empty string")
        if self.dsn is not None:
            object.__setattr__(self, "dsn", SecretDsn(self.dsn))
            from perfkit.loopback import check_loopback  # only with a DSN: cheap settings

            check_loopback(self.dsn)  # before any test or server runs
        if self.backend == "external" and not self.dsn:
            raise ConfigError(
                "backend 'external' needs a dsn (e.g. --perfkit-dsn=postgresql://...)"
            )
        object.__setattr__(self, "migrations", _paths(self.migrations))
        for path in self.migrations:
            if not path.is_file():
                raise ConfigError(f"migrations file {path} cannot be read: no such file")
        if self.template_strategy is not None and self.template_strategy not in (
            *TEMPLATE_STRATEGIES,
            AUTO,
        ):
            raise ConfigError(
                f"template_strategy {self.template_strategy!r} is unknown; choose one of "
                f"{', '.join((*TEMPLATE_STRATEGIES, AUTO))} (or None for the server default)"
            )
        for name in ("pool_size", "clone_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name in ("ram", "reuse", "keep_failed", "unix_socket", "export_pg_env", "stable_dsn"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.reuse and self.backend == "external":
            raise ConfigError(
                "reuse keeps a server perfkit started alive between runs; backend 'external' "
                "is a server perfkit does not own (drop --perfkit-reuse, or use backend "
                "auto, docker or local)"
            )
        if self.stable_dsn and self.isolation != "verified":
            raise ConfigError(
                "stable_dsn (--perfkit-stable-dsn, ini perfkit_stable_dsn) works only with "
                f"isolation 'verified', not {self.isolation!r} (add --perfkit-isolation=verified, "
                "or drop --perfkit-stable-dsn)"
            )
        if self.rollback_guard not in ROLLBACK_GUARDS:
            raise ConfigError(
                f"rollback_guard {self.rollback_guard!r} is unknown; choose one of "
                f"{', '.join(ROLLBACK_GUARDS)}"
            )
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
            ram=self.ram,
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
            "clone_workers": self.clone_workers,
            "keep_tables": list(self.keep_tables),
            "server_settings": dict(self.server_settings),
            "ram": self.ram,
            "reuse": self.reuse,
            "keep_failed": self.keep_failed,
            "rollback_guard": self.rollback_guard,
            "unix_socket": self.unix_socket,
            "stable_dsn": self.stable_dsn,
        }
