"""The interface every PostgreSQL backend implements: a server for one experiment.

A server is started (optionally without waiting, so a client can race the
boot), probed for readiness, measured (version, memory), disturbed (outages:
stop-then-start, pause/resume) and stopped. It is a context manager and is
registered for cleanup on exit and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import abc
import time
from types import TracebackType
from typing import Any, ClassVar, Self

import psycopg

from perfkit.dsn import make_url, mask
from perfkit.errors import OutageUnsupported, ServerStartError
from perfkit.loopback import check_environment
from perfkit.postgres import cleanup
from perfkit.postgres.settings import ServerSettings

PROBE_INTERVAL_S = 0.01


class PostgresServer(abc.ABC):
    """A PostgreSQL server an experiment can connect to.

    Subclasses implement ``_launch``, ``_teardown`` and the outage hooks;
    this class owns the bookkeeping: timestamps, readiness probing, DSNs and
    cleanup registration.
    """

    backend: ClassVar[str]

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.host = "127.0.0.1"
        self.port: int | None = None
        #: ``time.monotonic()`` when start() was called / the first probe succeeded.
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self._running = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, *, wait: bool = True) -> Self:
        """Start the server. With ``wait=False`` return as soon as it is launched.

        ``ready_at`` is set by :meth:`wait_until_ready` (called here when
        ``wait`` is true). On any failure everything launched is torn down.
        """
        if self._running:
            return self
        check_environment()  # a PGHOSTADDR/PGSERVICE must not redirect our own DSNs
        cleanup.register(self)
        self.started_at = time.monotonic()
        try:
            self._launch()
            self._running = True
            if wait:
                self.wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_ready(self, timeout: float | None = None) -> float:
        """Probe until a connection succeeds; return and record ``ready_at``."""
        timeout = self.settings.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self._check_alive()
            try:
                with psycopg.connect(self.dsn, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                self.ready_at = time.monotonic()
                return self.ready_at
            except psycopg.Error as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.backend} PostgreSQL at {self.host}:{self.port} was not ready after "
                    f"{timeout:g} s (last error: {mask(str(last_error)).strip()}); "
                    f"{self._diagnostics()}"
                )
            time.sleep(PROBE_INTERVAL_S)

    def is_ready(self, connect_timeout: float = 1.0) -> bool:
        """One readiness probe: can a client connect and run ``SELECT 1`` now?"""
        try:
            with psycopg.connect(
                self.dsn, connect_timeout=max(1, round(connect_timeout)), autocommit=True
            ) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """Remove the server and everything it created. Safe to call twice."""
        try:
            self._teardown()
        finally:
            self._running = False
            cleanup.unregister(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- connection details ------------------------------------------------

    @property
    def dsn(self) -> str:
        """A ``postgresql://`` URL including the password. Never log it: use ``masked_dsn``."""
        if self.port is None:
            raise ServerStartError(f"{self.backend} server has not been started")
        s = self.settings
        return make_url(
            host=self.host, port=self.port, user=s.user, password=s.password, dbname=s.dbname
        )

    @property
    def masked_dsn(self) -> str:
        return mask(self.dsn)

    def dsn_for(self, dbname: str) -> str:
        """The DSN of another database on the same server."""
        s = self.settings
        assert self.port is not None
        return make_url(
            host=self.host, port=self.port, user=s.user, password=s.password, dbname=dbname
        )

    def socket_dsn_for(self, dbname: str) -> str | None:
        """A unix-socket DSN of ``dbname`` (trust auth, no password), where the backend has one."""
        return None

    def server_version(self) -> str:
        """``server_version`` as PostgreSQL reports it, e.g. ``'15.18'``."""
        with psycopg.connect(self.dsn, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return str(row[0]).split()[0]

    def describe(self) -> dict[str, Any]:
        """Backend facts for result metadata (no secrets)."""
        info: dict[str, Any] = {
            "backend": self.backend,
            "dsn": self.masked_dsn if self.port else None,
            "settings": self.settings.describe(),
            "startup_s": (self.ready_at - self.started_at)
            if self.ready_at and self.started_at
            else None,
        }
        try:
            info["server_version"] = self.server_version()
        except psycopg.Error:
            info["server_version"] = None
        return info

    def __repr__(self) -> str:
        where = self.masked_dsn if self.port else "not started"
        return f"<{type(self).__name__} {where}>"

    # -- measurements and outages -------------------------------------------

    @abc.abstractmethod
    def memory_bytes(self) -> int:
        """Memory the whole server uses now, in bytes."""

    def log_text(self) -> str | None:
        """The server's log so far (stderr), or None where the backend cannot read it."""
        return None

    def server_pids(self) -> list[int]:
        """Host pids of the server's processes now (postmaster first); [] where unknown."""
        return []

    def take_down(self) -> None:
        """Stop the server process but keep its data: new connections are refused."""
        raise OutageUnsupported(f"the {self.backend} backend cannot stop the server")

    def bring_up(self, *, wait: bool = True) -> None:
        """Start the server again after :meth:`take_down`."""
        raise OutageUnsupported(f"the {self.backend} backend cannot restart the server")

    def pause(self) -> None:
        """Freeze the server: connections hang instead of being refused."""
        raise OutageUnsupported(f"the {self.backend} backend cannot pause the server")

    def resume(self) -> None:
        """Unfreeze a paused server."""
        raise OutageUnsupported(f"the {self.backend} backend cannot resume the server")

    # -- backend hooks --------------------------------------------------------

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the server process/container and set ``self.port``; do not wait."""

    @abc.abstractmethod
    def _teardown(self) -> None:
        """Remove whatever ``_launch`` created; idempotent."""

    def _check_alive(self) -> None:
        """Raise ServerStartError if the server died while we waited for it."""
        return None

    def _diagnostics(self) -> str:
        """The server log's tail, as a hint for a failed start."""
        text = self.log_text()
        if not text or not text.strip():
            return "no server log"
        return "server log tail:\n  " + "\n  ".join(text.strip().splitlines()[-8:])
