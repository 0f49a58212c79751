"""Isolation strategies: how each test gets a database no earlier test has touched.

* ``per-test-server``: a new server per test, migrations applied each time (the naive baseline).
* ``rollback``: one connection on a shared database; each test runs inside a transaction
  that is rolled back (the test's ``commit()``/``rollback()`` act on a savepoint).
* ``truncate``: a shared database; after each test one ``TRUNCATE ... RESTART IDENTITY``
  empties every table.
* ``template``: a fresh ``CREATE DATABASE ... TEMPLATE`` clone per test, dropped after it.
* ``warm-pool``: a background thread keeps N clones (with open connections) ready, and
  drops used ones, so handing one out costs a queue ``get`` (IntegreSQL's approach).
* ``none``: a shared database and no cleanup at all (the negative control for leak checks).

Each strategy states the kinds of state it ``guarantees`` to isolate: ``rows``,
``sequences`` (nextval positions) and ``schema`` (tables a test creates).
"""

from __future__ import annotations

import abc
import contextlib
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import sql

from perfkit.dsn import mask
from perfkit.errors import ConfigError
from perfkit.lifecycle.session import connect

if TYPE_CHECKING:
    from perfkit.lifecycle.session import IsolationSession
    from perfkit.postgres import PostgresServer

FACETS = ("rows", "sequences", "schema")
SAVEPOINT = "perfkit_test"
LOCK_TIMEOUT = "10s"


@dataclass(kw_only=True, eq=False)
class Lease:
    """One test's database: its name, DSN (None when it cannot be shared) and connection."""

    strategy: str
    test_id: str
    dbname: str
    server: PostgresServer
    dsn: str | None = field(repr=False)
    connection: psycopg.Connection | None = None
    acquire_s: float = 0.0
    release_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def require_dsn(self) -> str:
        if self.dsn is None:
            raise ConfigError(
                f"isolation {self.strategy!r} isolates a single connection and cannot hand out "
                "a DSN (other connections would not see the test's uncommitted data); use the "
                "perfkit_db fixture, or choose template, warm-pool, truncate or per-test-server"
            )
        return SecretDsn(self.dsn)


class SecretDsn(str):
    """A DSN string whose ``repr`` masks the password (pytest shows fixture values on failure)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(mask(str(self)))


class Strategy(abc.ABC):
    """One way to give tests clean databases, bound to an :class:`IsolationSession`."""

    name: ClassVar[str]
    guarantees: ClassVar[frozenset[str]]

    def __init__(self, session: IsolationSession) -> None:
        self.session = session

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Session-level preparation (start the shared server, build the template...)."""

    @abc.abstractmethod
    def acquire(self, test_id: str) -> Lease:
        """A clean database for one test."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> None:
        """Clean up after the test."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Remove what :meth:`setup` made (the session stops servers afterwards)."""


def _close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is not None and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.close()


class PerTestServer(Strategy):
    """A new server per test with the migrations applied to it; stopped after the test."""

    name = "per-test-server"
    guarantees = frozenset(FACETS)

    def setup(self) -> None:
        if self.session.settings.backend == "external":
            raise ConfigError(
                "isolation 'per-test-server' starts servers and cannot use backend 'external'"
            )

    def acquire(self, test_id: str) -> Lease:
        server = self.session.start_server("per-test")
        try:
            migrate_s = self.session.apply_migrations(server.dsn)
            conn = connect(server.dsn)
        except BaseException:
            self.session.stop_server(server)
            raise
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=server.settings.dbname,
            server=server,
            dsn=server.dsn,
            connection=conn,
            extra={"migrate_s": migrate_s},
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.connection)
        self.session.stop_server(lease.server)


class _SharedDatabase(Strategy):
    """Base for strategies that use one clone of the template for the whole session."""

    purpose: ClassVar[str]

    def setup(self) -> None:
        self.server = self.session.shared_server
        self.dbname = self.session.namer.name(self.purpose, numbered=False)
        self.session.create_database(self.dbname)
        self.dsn = self.server.dsn_for(self.dbname)

    def acquire(self, test_id: str) -> Lease:
        """A new connection to the shared database (closed again at release)."""
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=self.dbname,
            server=self.server,
            dsn=self.dsn,
            connection=connect(self.dsn),
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.connection)


class NoIsolation(_SharedDatabase):
    """A shared database, never cleaned: state leaks from test to test."""

    name = "none"
    guarantees = frozenset()
    purpose = "none"


class RollbackConnection(psycopg.Connection):
    """A connection whose ``commit()``/``rollback()`` only move a savepoint.

    The test's work stays inside the outer transaction that the strategy rolls
    back, so code under test may commit as it would in production.
    """

    def commit(self) -> None:
        self.execute(f"RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}".encode())

    def rollback(self) -> None:
        self.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}".encode())

    def real_rollback(self) -> None:
        psycopg.Connection.rollback(self)


class Rollback(_SharedDatabase):
    """Each test runs inside a transaction on one session connection; rolled back after it."""

    name = "rollback"
    guarantees = frozenset({"rows", "schema"})
    purpose = "rb"

    def setup(self) -> None:
        super().setup()
        self.conn: RollbackConnection | None = None

    def _connection(self) -> RollbackConnection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            _close_quietly(self.conn)
            self.conn = RollbackConnection.connect(self.dsn, connect_timeout=10)
        return self.conn

    def acquire(self, test_id: str) -> Lease:
        conn = self._connection()
        conn.execute(f"SAVEPOINT {SAVEPOINT}".encode())
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=self.dbname,
            server=self.server,
            dsn=None,
            connection=conn,
        )

    def release(self, lease: Lease) -> None:
        conn = lease.connection
        assert isinstance(conn, RollbackConnection)
        if not conn.closed and not conn.broken:
            conn.real_rollback()

    def close(self) -> None:
        _close_quietly(self.conn)


TRUNCATE_ALL = """
DO $perfkit$
DECLARE stmt text;
BEGIN
  SELECT 'TRUNCATE ' || string_agg(format('%I.%I', schemaname, tablename), ', ')
         || ' RESTART IDENTITY CASCADE'
    INTO stmt
    FROM pg_tables
   WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
     AND NOT (tablename = ANY (%(keep)s::text[]));
  IF stmt IS NOT NULL THEN EXECUTE stmt; END IF;
END
$perfkit$
"""


class Truncate(_SharedDatabase):
    """A shared database; after each test one TRUNCATE ... RESTART IDENTITY of every table.

    Tables the test created stay (empty): schema changes are not undone.
    """

    name = "truncate"
    guarantees = frozenset({"rows", "sequences"})
    purpose = "tr"

    def setup(self) -> None:
        super().setup()
        self.cleaner = connect(self.dsn, autocommit=True)
        keep = sql.Literal(list(self.session.settings.keep_tables)).as_string(self.cleaner)
        self.statement = TRUNCATE_ALL.replace("%(keep)s", keep)
        self.cleaner.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'".encode())

    def release(self, lease: Lease) -> None:
        super().release(lease)
        self.cleaner.execute(self.statement.encode())

    def close(self) -> None:
        _close_quietly(getattr(self, "cleaner", None))


class Template(Strategy):
    """A fresh clone of the migrated template per test, dropped after the test."""

    name = "template"
    guarantees = frozenset(FACETS)

    def setup(self) -> None:
        self.server = self.session.shared_server
        _ = self.session.template

    def acquire(self, test_id: str) -> Lease:
        name = self.session.namer.name("t")
        self.session.create_database(name)
        dsn = self.server.dsn_for(name)
        try:
            conn = connect(dsn)
        except BaseException:
            self.session.drop_database(name)
            raise
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=name,
            server=self.server,
            dsn=dsn,
            connection=conn,
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.connection)
        self.session.drop_database(lease.dbname)


@dataclass(kw_only=True)
class _Ready:
    dbname: str
    dsn: str
    conn: psycopg.Connection


class WarmPool(Strategy):
    """N pre-cloned databases (with open connections) kept ready by a background thread.

    Handing one out is a queue get; a used database's connection is closed at
    release and the database dropped in the background, and the pool is refilled,
    so a test never waits for CREATE DATABASE unless tests come faster than the
    thread can clone.
    """

    name = "warm-pool"
    guarantees = frozenset(FACETS)
    POLL_S = 0.05

    def setup(self) -> None:
        self.server = self.session.shared_server
        _ = self.session.template
        self.size = self.session.settings.pool_size
        self.ready: queue.Queue[_Ready] = queue.Queue()
        self.used: queue.Queue[Lease] = queue.Queue()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.in_flight = 0
        self.thread = threading.Thread(target=self._run, name="perfkit-warm-pool", daemon=True)
        self.thread.start()

    # -- background thread ---------------------------------------------------------

    def _run(self) -> None:
        try:
            with connect(self.server.dsn, autocommit=True) as admin:
                while not self.stopping.is_set():
                    # Drops are cheap (a few ms) and free server resources: do them first.
                    if not self.used.empty():
                        self._recycle(admin, self.used.get())
                    elif self.ready.qsize() < self.size:
                        self._clone(admin)
                    else:
                        self.wake.wait(self.POLL_S)
                        self.wake.clear()
                while not self.used.empty():
                    self._recycle(admin, self.used.get())
        except BaseException as exc:  # surfaced to the next acquire()
            self.error = exc

    def _clone(self, admin: psycopg.Connection) -> None:
        t0 = self.session.clock()
        name = self.session.namer.name("w")
        self.session.create_database(name, conn=admin)
        dsn = self.server.dsn_for(name)
        self.ready.put(_Ready(dbname=name, dsn=dsn, conn=connect(dsn)))
        self.session.record("pool_clone", self.session.clock() - t0, strategy=self.name)

    def _recycle(self, admin: psycopg.Connection, lease: Lease) -> None:
        t0 = self.session.clock()
        _close_quietly(lease.connection)
        self.session.drop_database(lease.dbname, conn=admin)
        self.session.record("pool_drop", self.session.clock() - t0, strategy=self.name)

    def wait_full(self, timeout: float = 60.0) -> bool:
        """Block until ``size`` databases are ready (for steady-state measurements)."""
        deadline = self.session.clock() + timeout
        while self.ready.qsize() < self.size:
            if self.error is not None:
                raise self.error
            if self.session.clock() > deadline:
                return False
            self.wake.set()
            self.stopping.wait(self.POLL_S / 5)
        return True

    # -- test side ---------------------------------------------------------------------

    def acquire(self, test_id: str) -> Lease:
        timeout = self.session.settings.acquire_timeout
        deadline = self.session.clock() + timeout
        while True:
            if self.error is not None:
                raise self.error
            try:
                item = self.ready.get(timeout=self.POLL_S)
                break
            except queue.Empty:
                self.wake.set()
                if self.session.clock() > deadline:
                    raise TimeoutError(
                        f"warm pool had no database ready within {timeout:g} s"
                    ) from None
        self.wake.set()
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=item.dbname,
            server=self.server,
            dsn=item.dsn,
            connection=item.conn,
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.connection)  # at once: an open session would pin the database
        self.used.put(lease)
        self.wake.set()

    def close(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=60)
        while not self.ready.empty():
            item = self.ready.get()
            _close_quietly(item.conn)
        while not self.used.empty():
            lease = self.used.get()
            _close_quietly(lease.connection)


BY_NAME: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (PerTestServer, Rollback, Truncate, Template, WarmPool, NoIsolation)
}
