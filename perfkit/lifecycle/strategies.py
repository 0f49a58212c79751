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
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import sql

from perfkit.dsn import SecretDsn
from perfkit.errors import ConfigError
from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.lifecycle.names import READY_PREFIX

if TYPE_CHECKING:
    from perfkit.lifecycle.host import StrategyHost
    from perfkit.postgres import PostgresServer

FACETS = ("rows", "sequences", "schema")
SAVEPOINT = "perfkit_test"
LOCK_TIMEOUT = "10s"


@dataclass(kw_only=True, eq=False)
class Lease:
    """One test's database: its name, DSN (None when it cannot be shared) and connection.

    ``connection`` is opened on first use when the strategy did not open one
    ahead (a test that only wants the DSN never pays for it).
    """

    strategy: str
    test_id: str
    dbname: str
    server: PostgresServer
    dsn: str | None = field(repr=False)
    conn: psycopg.Connection | None = None
    acquire_s: float = 0.0
    release_s: float = 0.0
    acquired_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def require_dsn(self) -> str:
        if self.dsn is None:
            raise ConfigError(
                f"isolation {self.strategy!r} isolates a single connection and cannot hand out "
                "a DSN (other connections would not see the test's uncommitted data); use the "
                "perfkit_db fixture, or choose template, warm-pool, truncate or per-test-server"
            )
        return SecretDsn(self.dsn)

    @property
    def connection(self) -> psycopg.Connection | None:
        """The test's psycopg connection (opened now if the strategy did not open one)."""
        if self.conn is None and self.dsn is not None:
            self.conn = connect(self.dsn)
        return self.conn

    @property
    def opened(self) -> psycopg.Connection | None:
        """The connection if one was opened, without opening one."""
        return self.conn


class IsolationStrategy(abc.ABC):
    """One way to give tests clean databases, bound to its session.

    A strategy uses only what :class:`~perfkit.lifecycle.host.StrategyHost` lists
    (implemented by :class:`~perfkit.lifecycle.session.IsolationSession`).
    """

    name: ClassVar[str]
    guarantees: ClassVar[frozenset[str]]
    #: True where each test gets a database of its own that can be kept after a failure.
    keeps_databases: ClassVar[bool] = False

    def __init__(self, session: StrategyHost) -> None:
        self.session = session

    def expect(self, tests: int, *, connections: bool = True) -> None:  # noqa: B027
        """Hint from collection: ``tests`` more tests will ask for a database, and whether
        any of them wants the ready-made connection (``perfkit_db``) or only a DSN."""

    def forget(self, lease: Lease) -> None:
        """Let go of a lease whose database is kept (failed test): close our connection only."""
        _close_quietly(lease.opened)

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Session-level preparation (start the shared server, build the template...)."""

    @abc.abstractmethod
    def acquire(self, test_id: str) -> Lease:
        """A clean database for one test."""

    @abc.abstractmethod
    def release(self, lease: Lease) -> None:
        """Clean up after the test."""

    def begin(self, lease: Lease) -> None:  # noqa: B027 - optional hook
        """Bookkeeping for :meth:`audit` once the test has its database (not timed as isolation)."""

    def audit(self, lease: Lease) -> str | None:
        """What escaped the test's isolation, in words, or None; asked before :meth:`release`
        and not timed as isolation (the rollback guard)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Remove what :meth:`setup` made (the session stops servers afterwards)."""

    def abandon(self) -> None:
        """The server stopped answering: let go of connections and threads, send no SQL.

        The default suits strategies whose :meth:`close` only closes connections.
        """
        self.close()


def _close_quietly(conn: psycopg.Connection | None) -> None:
    if conn is not None and not conn.closed:
        with contextlib.suppress(psycopg.Error):
            conn.close()


class PerTestServer(IsolationStrategy):
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
            conn=conn,
            extra={"migrate_s": migrate_s},
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.connection)
        self.session.stop_server(lease.server)


class _SharedDatabase(IsolationStrategy):
    """Base for strategies that use one clone of the template for the whole session."""

    purpose: ClassVar[str]

    def setup(self) -> None:
        self.server = self.session.shared_server
        self.dbname = self.session.namer.name(self.purpose, numbered=False)
        self.session.create_database(self.dbname)
        self.dsn = self.session.dsn_for(self.dbname)

    def acquire(self, test_id: str) -> Lease:
        """A new connection to the shared database (closed again at release)."""
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=self.dbname,
            server=self.server,
            dsn=self.dsn,
            conn=connect(self.dsn),
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
    """Each test runs inside a transaction on one session connection; rolled back after it.

    Rollback isolates only what goes through that one connection. The guard
    (``rollback_guard``: ``warn``, ``fail`` or ``off``) looks, just before the
    release (:meth:`audit`, outside the timed isolation cost), for other
    sessions connected to the database and for transactions that other sessions
    committed there during the test: code under test that opened its own
    connection wrote outside the rolled-back transaction.
    """

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
            conn=conn,
        )

    def _guarded(self, lease: Lease) -> bool:
        conn = lease.opened
        return (
            self.session.settings.rollback_guard != "off"
            and conn is not None
            and not conn.closed
            and not conn.broken
        )

    def begin(self, lease: Lease) -> None:
        if self.session.settings.rollback_guard != "off":
            lease.extra["commits_before"] = self._commits()

    def _commits(self) -> int:
        """Transactions committed in the test database so far (all sessions)."""
        with self.session.admin_locked() as admin:
            admin.execute("SELECT pg_stat_clear_snapshot()")
            row = admin.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [self.dbname]
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _others(self, own_pid: int) -> int:
        with self.session.admin_locked() as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
                [self.dbname, own_pid],
            ).fetchone()
        return int(row[0]) if row else 0

    def audit(self, lease: Lease) -> str | None:
        """What escaped the test's transaction, in words, or None (guard off: None)."""
        if not self._guarded(lease):
            return None
        conn = lease.connection
        assert conn is not None
        problems = []
        others = self._others(conn.info.backend_pid)
        if others:
            problems.append(f"{others} other session(s) are connected to the test database")
        commits = self._commits() - int(lease.extra.get("commits_before", 0))
        if commits > 0:
            problems.append(f"{commits} transaction(s) were committed there by other sessions")
        if not problems:
            return None
        return (
            f"rollback isolation did not isolate {lease.test_id or 'this test'}: "
            + " and ".join(problems)
            + ". Their writes are not rolled back. Use the perfkit_db connection only, or "
            "isolation template or warm-pool (perfkit_rollback_guard = off silences this)."
        )

    def release(self, lease: Lease) -> None:
        conn = lease.connection
        assert isinstance(conn, RollbackConnection)
        if not conn.closed and not conn.broken:
            conn.real_rollback()

    def close(self) -> None:
        _close_quietly(self.conn)


TRUNCATE_ALL = r"""
DO $perfkit$
DECLARE stmt text;
BEGIN
  SELECT 'TRUNCATE ' || string_agg(format('%I.%I', schemaname, tablename), ', ')
         || ' RESTART IDENTITY CASCADE'
    INTO stmt
    FROM pg_tables
   WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
     AND schemaname NOT LIKE 'pg\_temp\_%' -- other sessions' temporary tables
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
        self.cleaner = admin_connect(self.dsn)
        keep = sql.Literal(list(self.session.settings.keep_tables)).as_string(self.cleaner)
        self.statement = TRUNCATE_ALL.replace("%(keep)s", keep)
        self.cleaner.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'".encode())

    def release(self, lease: Lease) -> None:
        super().release(lease)
        self.cleaner.execute(self.statement.encode())

    def close(self) -> None:
        _close_quietly(getattr(self, "cleaner", None))


class Template(IsolationStrategy):
    """A fresh clone of the migrated template per test, dropped after it off the test's path."""

    name = "template"
    guarantees = frozenset(FACETS)
    keeps_databases = True

    def setup(self) -> None:
        self.server = self.session.shared_server
        _ = self.session.template

    def acquire(self, test_id: str) -> Lease:
        name = self.session.namer.name("t")
        self.session.create_database(name)
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=name,
            server=self.server,
            dsn=self.session.dsn_for(name),
        )

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.opened)
        self.session.discard(lease.dbname)  # the janitor drops it WITH (FORCE)


@dataclass(kw_only=True)
class _Ready:
    dbname: str
    dsn: str
    conn: psycopg.Connection | None


class WarmPool(IsolationStrategy):
    """Pre-cloned databases (with open connections) kept ready by background cloners.

    Handing one out is a queue get. ``clone_workers`` threads clone
    concurrently, each on its own connection, up to ``min(pool_size, tests
    still expected)`` ready databases (the plugin tells :meth:`expect` how many
    tests asked for a database at collection, and starts filling then). A
    used database goes to the session's janitor, which drops it off the
    test's path. With ``reuse`` the pool is refilled at close and its ready
    databases are parked on the server (``pk_ready_<migrations hash>_...``)
    for the next run, which adopts them at setup. At setup and after parking
    the parked databases are trimmed to :meth:`park_limit`.
    """

    name = "warm-pool"
    guarantees = frozenset(FACETS)
    keeps_databases = True
    POLL_S = 0.05
    PARK_TIMEOUT_S = 30.0

    def setup(self) -> None:
        self.server = self.session.shared_server
        _ = self.session.template
        _ = self.session.janitor
        self.size = self.session.settings.pool_size
        self.ready: queue.Queue[_Ready] = queue.Queue()
        self.parked: queue.Queue[str] = queue.Queue()  # adopted, not yet connected
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._books = threading.Lock()
        self.in_flight = 0
        self.remaining: int | None = None  # tests still expected (None: unknown)
        self.preconnect = True  # open the test's connection ahead (False: only DSNs wanted)
        self.handed_out = 0
        self.waited = 0
        self.waiting = 0
        self._adopt_parked()
        self.threads = [
            threading.Thread(target=self._fill, name=f"perfkit-warm-pool-{i}", daemon=True)
            for i in range(self.session.settings.clone_workers)
        ]
        for thread in self.threads:
            thread.start()

    # -- sizing ----------------------------------------------------------------------

    def expect(self, tests: int, *, connections: bool = True) -> None:
        with self._books:
            self.remaining = max(tests, 0)
            self.preconnect = connections
        self.wake.set()

    def _ready(self, name: str) -> _Ready:
        dsn = self.session.dsn_for(name)
        return _Ready(dbname=name, dsn=dsn, conn=connect(dsn) if self.preconnect else None)

    def target(self) -> int:
        """How many databases should be ready or being cloned right now.

        ``min(pool_size, tests still expected)``, but never fewer than the tests
        waiting now (the expectation is a hint: xdist may send a worker more).
        """
        with self._books:
            if self.remaining is None:
                return self.size
            return max(min(self.size, self.remaining), self.waiting)

    def _claim(self) -> bool:
        """Reserve one clone if the pool is below target (called by cloner threads)."""
        target = self.target()
        with self._books:
            if self.ready.qsize() + self.in_flight >= target:
                return False
            self.in_flight += 1
            return True

    # -- background threads ----------------------------------------------------------

    def _fill(self) -> None:
        try:
            with admin_connect(self.session.admin_dsn) as admin:
                while not self.stopping.is_set():
                    if self._claim():
                        try:
                            self._connect_parked() or self._clone(admin)
                        finally:
                            with self._books:
                                self.in_flight -= 1
                    else:
                        self.wake.wait(self.POLL_S)
                        self.wake.clear()
        except BaseException as exc:  # surfaced to the next acquire()
            self.error = exc

    def _connect_parked(self) -> bool:
        """Make an adopted database ready (a connect instead of a clone); False if none."""
        try:
            name = self.parked.get_nowait()
        except queue.Empty:
            return False
        t0 = self.session.clock()
        if not self._adoptable(name):
            self.session.discard(name)
            self.session.record("pool_adopt_refused", self.session.clock() - t0, strategy=self.name)
            return False
        self.ready.put(self._ready(name))
        self.session.record("pool_adopt", self.session.clock() - t0, strategy=self.name)
        return True

    def _adoptable(self, name: str) -> bool:
        """Hook: whether a parked database may be adopted (False: it is dropped instead)."""
        return True

    def _clone(self, admin: psycopg.Connection) -> None:
        t0 = self.session.clock()
        name = self.session.namer.name("w")
        self.session.create_database(name, conn=admin)
        self.ready.put(self._ready(name))
        self.session.record("pool_clone", self.session.clock() - t0, strategy=self.name)

    def wait_full(self, timeout: float = 60.0) -> bool:
        """Block until the target number of databases is ready (steady-state measurements)."""
        deadline = self.session.clock() + timeout
        while self.ready.qsize() < self.target():
            if self.error is not None:
                raise self.error
            if self.session.clock() > deadline:
                return False
            self.wake.set()
            self.stopping.wait(self.POLL_S / 5)
        return True

    # -- parking across runs (reuse) ----------------------------------------------------

    @property
    def _park_prefix(self) -> str:
        return f"{READY_PREFIX}{self.session.migrations_hash}_"

    def _adopt_parked(self) -> None:
        """Take over databases a previous run parked (rename = an atomic claim)."""
        if not self.session.settings.reuse:
            return
        admin = self.session.admin()
        for old in self.session.databases_with_prefix(self._park_prefix)[: self.size]:
            new = self.session.namer.name("w")
            try:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(old), sql.Identifier(new)
                    )
                )
            except psycopg.Error:  # another run took it first
                continue
            self.session.own(new)
            self.parked.put(new)  # the cloner threads connect to it (off the setup path)
        self._trim_parked("start")

    def park_limit(self) -> int:
        """Most databases left parked on the server: the pool of each worker of this run.

        (Concurrent runs each park a full pool; without a limit the parked
        databases grew to ``pool_size`` times the peak concurrency.)
        """
        workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
        return self.size * (int(workers) if workers.isdigit() and int(workers) > 0 else 1)

    def _trim_parked(self, when: str) -> None:
        """Hand the parked databases beyond :meth:`park_limit` to the janitor.

        A concurrent run that renames one of them first keeps it (the drop is
        by name); one that comes second finds it gone and clones instead.
        """
        names = self.session.databases_with_prefix(self._park_prefix)
        extra = names[self.park_limit() :]
        for name in extra:
            self.session.discard(name)
        self.session.record(
            "pool_trim", 0.0, strategy=self.name, when=when, parked=len(names), dropped=len(extra)
        )

    def _park(self) -> None:
        """Refill to ``pool_size`` and rename the ready databases for the next run."""
        with self._books:
            self.remaining = None
        self.wait_full(self.PARK_TIMEOUT_S)
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout=60)
        admin = self.session.admin()
        while not self.ready.empty():
            item = self.ready.get()
            _close_quietly(item.conn)
            if not self._before_park(admin, item.dbname):
                self.session.discard(item.dbname)
                continue
            parked = self._park_prefix + item.dbname.rsplit("_", 1)[-1] + self.session.namer.token
            try:
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(item.dbname), sql.Identifier(parked[:63])
                    )
                )
                self.session.disown(item.dbname)
            except psycopg.Error:
                self.session.discard(item.dbname)
        self._trim_parked("end")

    def _before_park(self, admin: psycopg.Connection, dbname: str) -> bool:
        """Hook: prepare ``dbname`` for parking; False drops it instead."""
        return True

    # -- test side ---------------------------------------------------------------------

    def acquire(self, test_id: str) -> Lease:
        timeout = self.session.settings.acquire_timeout
        deadline = self.session.clock() + timeout
        item = self._take(deadline, timeout)
        with self._books:  # counted after the take: a waiting test still needs its clone
            self.handed_out += 1
            if self.remaining is not None:
                self.remaining = max(self.remaining - 1, 0)
        self.wake.set()
        return Lease(
            strategy=self.name,
            test_id=test_id,
            dbname=item.dbname,
            server=self.server,
            dsn=item.dsn,
            conn=item.conn,
        )

    def _take(self, deadline: float, timeout: float) -> _Ready:
        """The next ready database, waiting (and counting the wait) when there is none."""
        try:
            return self.ready.get_nowait()
        except queue.Empty:
            pass
        with self._books:
            self.waited += 1
            self.waiting += 1
        self.wake.set()
        try:
            while True:
                if self.error is not None:
                    raise self.error
                try:
                    return self.ready.get(timeout=self.POLL_S)
                except queue.Empty:
                    self.wake.set()
                if self.session.clock() > deadline:
                    raise TimeoutError(f"warm pool had no database ready within {timeout:g} s")
        finally:
            with self._books:
                self.waiting -= 1

    def release(self, lease: Lease) -> None:
        _close_quietly(lease.opened)  # client side only: the janitor terminates the rest
        self.session.discard(lease.dbname)

    def abandon(self) -> None:
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:  # each is at most one admin deadline from noticing
            thread.join(timeout=30)
        while not self.ready.empty():
            _close_quietly(self.ready.get().conn)

    def close(self) -> None:
        if self.session.settings.reuse and self.error is None:
            with contextlib.suppress(Exception):
                self._park()
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout=60)
        while not self.ready.empty():
            item = self.ready.get()
            _close_quietly(item.conn)
            self.session.discard(item.dbname)
        while not self.parked.empty():
            self.session.discard(self.parked.get())


BY_NAME: dict[str, type[IsolationStrategy]] = {
    cls.name: cls for cls in (PerTestServer, Rollback, Truncate, Template, WarmPool, NoIsolation)
}
