"""What an isolation strategy may use of its session: the :class:`StrategyHost` protocol.

:class:`perfkit.lifecycle.session.IsolationSession` implements it; the
strategies (:mod:`perfkit.lifecycle.strategies`) type against it and touch
nothing else of the session (a test checks their attribute uses).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

    from perfkit.lifecycle.janitor import Janitor
    from perfkit.lifecycle.names import Namer
    from perfkit.lifecycle.settings import IsolationSettings
    from perfkit.postgres import PostgresServer


class StrategyHost(Protocol):
    """The session as a strategy sees it: servers, the template, databases and bookkeeping."""

    # -- settings and bookkeeping ------------------------------------------------------

    @property
    def settings(self) -> IsolationSettings:
        """The session's isolation settings."""
        ...

    @property
    def namer(self) -> Namer:
        """Names for the databases this session creates (unique per worker and run)."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """The clock timings are taken with."""
        ...

    def record(self, event: str, seconds: float, **fields: Any) -> None:
        """Append one timing record (thread-safe)."""
        ...

    # -- servers -----------------------------------------------------------------------

    def start_server(self, purpose: str) -> PostgresServer:
        """Start a new server (counted, recorded, stopped at close at the latest)."""
        ...

    def stop_server(self, server: PostgresServer) -> None:
        """Stop a server started with :meth:`start_server`."""
        ...

    @property
    def shared_server(self) -> PostgresServer:
        """The server every shared strategy uses (started on first use)."""
        ...

    @property
    def admin_dsn(self) -> str:
        """DSN of the shared server's default database."""
        ...

    def admin(self) -> psycopg.Connection:
        """The session's autocommit connection to the shared server's default database."""
        ...

    def admin_locked(self) -> AbstractContextManager[psycopg.Connection]:
        """:meth:`admin`, held for the caller alone while several statements run."""
        ...

    def dsn_for(self, dbname: str) -> str:
        """The DSN tests get for ``dbname`` on the shared server."""
        ...

    # -- the template and databases ------------------------------------------------------

    def apply_migrations(self, dsn: str) -> float:
        """Apply the session's migrations to the database at ``dsn``; return seconds."""
        ...

    @property
    def template(self) -> str:
        """Name of the migrated template database (built on first use)."""
        ...

    @property
    def migrations_hash(self) -> str:
        """Hash of the migrations (names of databases parked for the next run carry it)."""
        ...

    @property
    def janitor(self) -> Janitor:
        """The background dropper of used databases (started on first use)."""
        ...

    def create_database(
        self, name: str, *, template: str | None = "", conn: psycopg.Connection | None = None
    ) -> None:
        """Create ``name`` (a clone of the template unless ``template`` is None)."""
        ...

    def drop_database(self, name: str, *, conn: psycopg.Connection | None = None) -> None:
        """Drop ``name`` now, ending its sessions."""
        ...

    def databases_with_prefix(
        self, prefix: str, *, conn: psycopg.Connection | None = None
    ) -> list[str]:
        """Names of the shared server's databases that start with ``prefix``, sorted."""
        ...

    def own(self, name: str) -> None:
        """Count ``name`` among the session's databases (dropped at close where needed)."""
        ...

    def disown(self, name: str) -> None:
        """Stop counting ``name`` as the session's."""
        ...

    def discard(self, name: str) -> None:
        """Drop ``name`` off the caller's path (the janitor drops it)."""
        ...
