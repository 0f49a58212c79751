"""An isolation session: the servers, template database and strategies of one test run.

One session lives per pytest process (so per xdist worker). It starts the
shared server and builds the migrated template lazily, on the first test that
needs them; it records how long every step took; and :meth:`close` removes
everything it created (databases, servers), also after a failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg import sql

from perfkit.dsn import mask
from perfkit.errors import ConfigError, IsolationBroken, IsolationWarning, ServerUnresponsive
from perfkit.lifecycle import clonechoice, migrations, owners
from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.lifecycle.guard import SessionGuard
from perfkit.lifecycle.janitor import Janitor, drop_force
from perfkit.lifecycle.names import FAILED_PREFIX, READY_PREFIX, TEMPLATE_PREFIX, Namer, worker_id
from perfkit.lifecycle.registry import check_name, strategy_class
from perfkit.lifecycle.settings import AUTO, IsolationSettings

if TYPE_CHECKING:
    from perfkit.lifecycle.strategies import IsolationStrategy, Lease
    from perfkit.postgres import PostgresServer

log = logging.getLogger(__name__)
ServerFactory = Callable[..., "PostgresServer"]
HASH_CHARS = 12
_SLUG = re.compile(r"[^a-z0-9]+")


class IsolationSession:
    """Servers, template and strategies for one pytest process.

    ``extra_sql`` is appended to the migrations (used by the leak check).
    ``clock`` is injectable for tests of the bookkeeping.
    """

    def __init__(
        self,
        settings: IsolationSettings,
        *,
        worker: str | None = None,
        extra_sql: str = "",
        clock: Callable[[], float] = time.perf_counter,
        server_factory: ServerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker or worker_id()
        self.namer = Namer(self.worker)
        self.clock = clock
        self.statements = migrations.load(settings.migrations)
        if extra_sql:
            self.statements += migrations.split_sql(extra_sql, source="<extra>")
        if server_factory is None:
            from perfkit.postgres import create_server

            server_factory = create_server
        self._server_factory = server_factory
        self.records: list[dict[str, Any]] = []
        self.servers_started = 0
        self.databases_created = 0
        self._servers: list[PostgresServer] = []
        self._shared: PostgresServer | None = None
        self._admin: psycopg.Connection | None = None
        self._template: str | None = None
        self._created: set[str] = set()
        self._strategies: dict[str, IsolationStrategy] = {}
        self._guard = SessionGuard()  # the failure that ended the session; closing, closed
        self._janitor: Janitor | None = None
        self._session_db: str | None = None
        #: CREATE DATABASE strategy clones use (resolved from ``auto`` with the template).
        self.clone_strategy: str | None = (
            None if settings.template_strategy == AUTO else settings.template_strategy
        )
        #: Databases kept for failed tests: test id, database name, masked DSN, until when.
        self.kept: list[dict[str, str]] = []
        self._lock = threading.RLock()  # lazy creation of server, template, strategies
        self._books = threading.Lock()  # records and counters (also used by pool threads)

    # -- bookkeeping ------------------------------------------------------------

    def record(self, event: str, seconds: float, **fields: Any) -> None:
        with self._books:
            self.records.append(
                {"event": event, "worker": self.worker, "seconds": seconds, **fields}
            )

    # -- servers -----------------------------------------------------------------

    def start_server(self, purpose: str) -> PostgresServer:
        """Start a new server (counted and recorded); stopped by :meth:`close` at the latest."""
        t0 = self.clock()
        reuse = purpose == "shared" and self.settings.reuse
        if reuse:
            from perfkit.postgres.reuse import reused_server

            server = reused_server(self.settings.server())  # started; stop() leaves it running
        else:
            server = self._server_factory(self.settings.server())
        with self._books:
            self._servers.append(server)  # before start(): close() stops a failed start too
        if not reuse:
            server.start()
        adopted = bool(getattr(server, "adopted", False))
        with self._books:
            self.servers_started += 0 if adopted else 1
        self.record(
            "server_start",
            self.clock() - t0,
            purpose=purpose,
            backend=server.backend,
            reused=reuse,
            adopted=adopted,
            reuse_key=getattr(server, "key", None),
        )
        return server

    def stop_server(self, server: PostgresServer) -> None:
        t0 = self.clock()
        try:
            server.stop()
        finally:
            with self._books:
                if server in self._servers:
                    self._servers.remove(server)
        self.record("server_stop", self.clock() - t0, backend=server.backend)

    @property
    def shared_server(self) -> PostgresServer:
        """The one server shared by every shared strategy (started on first use)."""
        with self._lock:
            self._guard.check_usable()
            if self._shared is None:
                server = self.start_server("shared")
                if self.settings.reuse:
                    self._register_owner(server)  # before any database of ours exists
                self._shared = server
                if self.settings.reuse:
                    self._reclaim_orphans()
            return self._shared

    def _register_owner(self, server: PostgresServer) -> None:
        """Write this process as the owner of the session's databases on a reused server.

        A later session drops them if this process dies without doing so (see
        :mod:`perfkit.lifecycle.owners`). The connection becomes :meth:`admin`'s.
        """
        dbname = server.settings.dbname
        on_socket = server.socket_dsn_for(dbname) if self.settings.unix_socket else None
        self._admin = admin_connect(on_socket or server.dsn_for(dbname))
        owners.register(self._admin, self.namer.token, owners.Owner.this_process())

    def _reclaim_orphans(self) -> None:
        """Drop what sessions that died (SIGKILL) left on the reused server; best effort.

        The janitor drops them, off the way to the first test. Databases of live
        concurrent sessions are left alone.
        """
        t0 = self.clock()
        try:
            admin = self.admin()
            found = owners.orphans(admin)
            for name, is_template in found.databases:
                if is_template:
                    admin.execute(
                        sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(
                            sql.Identifier(name)
                        )
                    )
                self.discard(name)
            owners.forget(admin, found.tokens)  # a failed drop is found again: no owner row
        except Exception as exc:  # the next session tries again
            log.warning("perfkit: could not reclaim dead sessions' databases: %s", mask(str(exc)))
            return
        self.record(
            "orphans_reclaimed",
            self.clock() - t0,
            databases=[name for name, _ in found.databases],
            owners=len(found.tokens),
        )

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to the shared server's default database."""
        with self._lock:
            if self._admin is None or self._admin.closed:
                self._admin = admin_connect(self.admin_dsn)
            return self._admin

    @contextlib.contextmanager
    def admin_locked(self) -> Iterator[psycopg.Connection]:
        """:meth:`admin`, held for the caller alone while several statements run."""
        admin = self.admin()
        with self._lock:
            yield admin

    @property
    def admin_dsn(self) -> str:
        """DSN of the shared server's default database (unix socket when offered)."""
        server = self._shared or self.shared_server  # no lock once started (threads call this)
        return self.dsn_for(server.settings.dbname) if server.backend != "external" else server.dsn

    def dsn_for(self, dbname: str) -> str:
        """The DSN tests get for ``dbname``: a unix socket where the server has one
        (local backend) and ``unix_socket`` is on, else host, port and password."""
        server = self._shared or self.shared_server  # no lock once started (threads call this)
        if self.settings.unix_socket:
            socket = server.socket_dsn_for(dbname)
            if socket is not None:
                return socket
        return server.dsn_for(dbname)

    @property
    def server_outlives_session(self) -> bool:
        """Whether the shared server stays after close (reused, or external: not ours)."""
        server = self._shared or self.shared_server
        return self.settings.reuse or server.backend == "external"

    def server_version_num(self) -> int:
        row = self.admin().execute("SHOW server_version_num").fetchone()
        assert row is not None
        return int(row[0])

    # -- databases ----------------------------------------------------------------

    def apply_migrations(self, dsn: str) -> float:
        """Apply the session's migrations to the database at ``dsn``; return seconds."""
        t0 = self.clock()
        with connect(dsn, autocommit=True) as conn:
            migrations.apply(conn, self.statements)
        return self.clock() - t0

    @property
    def template(self) -> str:
        """Name of the migrated template database (built on first use)."""
        if self._template is not None:
            return self._template
        with self._lock:
            self._guard.check_usable()
            if self._template is None:
                try:
                    self._template = self._build_template()
                except BaseException as exc:
                    self._guard.failure = exc
                    self.close()
                    raise
            return self._template

    @functools.cached_property
    def migrations_hash(self) -> str:
        """Hash of the migration statements: a reused template is valid while it matches."""
        digest = hashlib.sha256()
        for statement in self.statements:
            digest.update(statement.sql.encode())
            digest.update(b"\0")
        return digest.hexdigest()[:HASH_CHARS]

    def _build_template(self) -> str:
        t0 = self.clock()
        strategy = self.settings.template_strategy
        if strategy not in (None, AUTO) and self.server_version_num() < 150000:
            raise ConfigError(f"template_strategy={strategy!r} needs PostgreSQL 15+")
        if not self.settings.reuse:
            name = self.namer.name("tpl", numbered=False)
            self._make_template(name)
        else:
            name = TEMPLATE_PREFIX + self.migrations_hash
            admin = self.admin()
            # One builder at a time per reused server (other runs, xdist workers).
            admin.execute("SELECT pg_advisory_lock(hashtext(%s))", [name])
            try:
                if self._database_exists(name):
                    self.record("template_reused", self.clock() - t0, template=name)
                    self._choose_clone_strategy(name)
                    return name
                self._make_template(name)
                # Only now that the new template stands: the old ones are stale.
                self._drop_stale(TEMPLATE_PREFIX, keep=name)
                self._drop_stale(READY_PREFIX, keep=READY_PREFIX + self.migrations_hash)
            finally:
                admin.execute("SELECT pg_advisory_unlock(hashtext(%s))", [name])
        self._choose_clone_strategy(name)
        self.record("template_build", self.clock() - t0, statements=len(self.statements))
        return name

    def _make_template(self, name: str) -> None:
        """Create, migrate, freeze and checkpoint ``name``, then mark it a template.

        A failure drops the half-built database (also on a reused server).
        """
        self.create_database(name, template=None)
        try:
            dsn = self.dsn_for(name)
            self.apply_migrations(dsn)
            with admin_connect(dsn) as conn:
                conn.execute("VACUUM (FREEZE)")  # smaller clones, no later anti-wraparound work
            with contextlib.suppress(psycopg.Error):  # needs superuser or pg_checkpoint
                self.admin().execute("CHECKPOINT")
            self.admin().execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                    sql.Identifier(name)
                )
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.drop_database(name)
            raise

    def databases_with_prefix(
        self, prefix: str, *, conn: psycopg.Connection | None = None
    ) -> list[str]:
        """Names of the server's databases that start with ``prefix``, sorted."""
        rows = (conn or self.admin()).execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname",
            [prefix],
        )
        return [r[0] for r in rows.fetchall()]

    def own(self, name: str) -> None:
        """Count ``name`` among this session's databases (dropped at close where needed)."""
        with self._books:
            self._created.add(name)

    def _database_exists(self, name: str) -> bool:
        row = self.admin().execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return row.fetchone() is not None

    def _drop_stale(self, prefix: str, *, keep: str) -> None:
        """Drop databases named ``prefix*`` that do not start with ``keep`` (old migrations)."""
        admin = self.admin()
        for name in self.databases_with_prefix(prefix):
            if name.startswith(keep):
                continue
            with contextlib.suppress(psycopg.Error):  # in use by another run: leave it
                admin.execute(
                    sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
                )
                drop_force(admin, name)
                self.record("stale_dropped", 0.0, dbname=name)

    def _choose_clone_strategy(self, template: str) -> None:
        """Resolve ``template_strategy="auto"``: time both strategies on ``template``.

        The choice is kept as the template's comment, so a reused template is
        not timed again (see :mod:`perfkit.lifecycle.clonechoice`).
        """
        if self.settings.template_strategy != AUTO:
            return
        if self.server_version_num() < 150000:
            self.clone_strategy = None
            return
        admin = self.admin()
        kept = clonechoice.remembered(admin, template)
        if kept is not None:
            self.clone_strategy = kept
            return
        medians = clonechoice.time_strategies(
            admin, template, probe_name=lambda: self.namer.name("probe"), clock=self.clock
        )
        self.clone_strategy = min(medians, key=lambda s: medians[s])
        clonechoice.remember(admin, template, self.clone_strategy)
        self.record(
            "clone_strategy",
            0.0,
            chosen=self.clone_strategy,
            **{f"{s}_s": v for s, v in medians.items()},
        )

    def clone_sql(self, name: str) -> sql.Composed:
        """``CREATE DATABASE name TEMPLATE <template> [STRATEGY ...]``."""
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(self.template)
        )
        if self.clone_strategy:
            query += sql.SQL(" STRATEGY {}").format(sql.SQL(self.clone_strategy.upper()))
        return query

    def create_database(
        self, name: str, *, template: str | None = "", conn: psycopg.Connection | None = None
    ) -> None:
        """Create ``name`` (a clone of the template unless ``template`` is None)."""
        self.own(name)
        with self._books:
            self.databases_created += 1
        query = (
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is None
            else self.clone_sql(name)
        )
        if conn is None:
            with self._lock:
                self.admin().execute(query)
        else:
            conn.execute(query)

    def drop_database(self, name: str, *, conn: psycopg.Connection | None = None) -> None:
        """Drop ``name`` now (terminating its sessions); see :meth:`discard` for off-path drops."""
        if conn is None:
            with self._lock:
                drop_force(self.admin(), name)
        else:
            drop_force(conn, name)
        self.disown(name)

    def disown(self, name: str) -> None:
        """Stop counting ``name`` as ours (dropped, renamed away, or parked for the next run)."""
        with self._books:
            self._created.discard(name)

    @property
    def janitor(self) -> Janitor:
        """The background dropper of used databases (started on first use)."""
        with self._lock:
            if self._janitor is None:
                dsn = self.admin_dsn  # resolved now: the thread must not touch the session

                def dropped(name: str, seconds: float) -> None:
                    self.disown(name)
                    self.record("drop", seconds, dbname=name)

                self._janitor = Janitor(
                    lambda: admin_connect(dsn), on_dropped=dropped, on_hung=self.declare_dead
                )
            return self._janitor

    def discard(self, name: str) -> None:
        """Drop ``name`` off the caller's path: a queue put; the janitor drops it (FORCE)."""
        self.janitor.drop(name)

    def keep(self, name: str, test_id: str) -> str:
        """Keep a failed test's database for inspection; return its masked DSN.

        On reused and external servers it is renamed ``pk_failed_<test>`` and
        outlives the run (the next failure of the same test replaces it); on a
        server perfkit removes at the end of the session it lives until then.
        """
        outlives = self.server_outlives_session
        if outlives:
            slug = _SLUG.sub("_", test_id.lower()).strip("_")
            kept = (FAILED_PREFIX + slug)[:63]
            admin = self.admin()
            with self._lock:
                drop_force(admin, kept)
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                )
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        sql.Identifier(name), sql.Identifier(kept)
                    )
                )
            self.disown(name)
            name = kept
        masked = mask(self.dsn_for(name))
        until = "after the run" if outlives else "until the session ends"
        self.kept.append({"test": test_id, "dbname": name, "dsn": masked, "until": until})
        return masked

    def session_database(self) -> str:
        """The DSN of one migrated database shared by the whole session (per xdist worker)."""
        with self._lock:
            if self._session_db is None:
                name = self.namer.name("session", numbered=False)
                self.create_database(name)
                self._session_db = name
            return self.dsn_for(self._session_db)

    # -- strategies and leases ------------------------------------------------------

    def strategy(self, name: str) -> IsolationStrategy:
        """The (set-up) strategy called ``name``; session-level setup is recorded once."""
        check_name(name)
        with self._lock:
            self._guard.check_usable()
            if name not in self._strategies:
                t0 = self.clock()
                strategy = strategy_class(name)(self)
                self._strategies[name] = strategy
                try:
                    strategy.setup()
                except BaseException as exc:
                    self._guard.failure = exc
                    self.close()
                    raise
                self.record(
                    "session_setup",
                    self.clock() - t0,
                    strategy=name,
                    clone_workers=self.settings.clone_workers,
                )
            return self._strategies[name]

    def acquire(self, name: str, test_id: str = "") -> Lease:
        """A clean database for one test under strategy ``name``.

        Once the server has stopped answering (see :meth:`declare_dead`) this
        raises that failure at once, without touching the server.
        """
        self._guard.check_usable()
        strategy = self.strategy(name)
        t0 = self.clock()
        try:
            lease = strategy.acquire(test_id)
            lease.acquired_at = self.clock()
            lease.acquire_s = lease.acquired_at - t0
            strategy.begin(lease)  # the guard's bookkeeping: not part of the isolation cost
        except ServerUnresponsive as exc:
            raise self.declare_dead(exc, test_id) from None
        return lease

    def connection(self, lease: Lease) -> psycopg.Connection:
        """The lease's psycopg connection, opened now if needed; a hung server ends the session."""
        self._guard.check_usable()
        try:
            conn = lease.connection
        except ServerUnresponsive as exc:
            raise self.declare_dead(exc, lease.test_id) from None
        assert conn is not None
        return conn

    def release(self, lease: Lease, *, failed: bool = False) -> None:
        """Give the database back; the strategy cleans it (record written either way).

        With ``keep_failed`` a failed test's database is kept (see :meth:`keep`)
        where the strategy gives each test its own database.
        """
        strategy = self._strategies[lease.strategy]
        problem, unresponsive = self._audit(strategy, lease, failed=failed)
        t0 = self.clock()
        try:
            if self.dead:  # no SQL to a server that stopped answering: let go client-side
                with contextlib.suppress(Exception):
                    if lease.opened is not None:
                        lease.opened.close()
            elif failed and self.settings.keep_failed and strategy.keeps_databases:
                strategy.forget(lease)
                self.keep(lease.dbname, lease.test_id)
            else:
                strategy.release(lease)
        except ServerUnresponsive as exc:
            raise self.declare_dead(exc, lease.test_id) from None
        finally:
            lease.release_s = self.clock() - t0
            self.record(
                "test",
                lease.acquire_s + lease.release_s,
                strategy=lease.strategy,
                test=lease.test_id,
                acquire_s=lease.acquire_s,
                release_s=lease.release_s,
                t_acquired=lease.acquired_at,
                dbname=lease.dbname,
            )
        if unresponsive is not None:
            raise unresponsive
        if problem is not None:
            if self.settings.rollback_guard == "fail":
                raise IsolationBroken(problem)
            warnings.warn(problem, IsolationWarning, stacklevel=2)

    def _audit(
        self, strategy: IsolationStrategy, lease: Lease, *, failed: bool
    ) -> tuple[str | None, ServerUnresponsive | None]:
        """The strategy's guard, asked before the timed release: (what escaped, or None;
        the server's death, declared, when it stopped answering: the release then lets go
        client-side and raises it)."""
        if self.dead or (failed and self.settings.keep_failed and strategy.keeps_databases):
            return None, None
        try:
            return strategy.audit(lease), None
        except ServerUnresponsive as exc:
            return None, self.declare_dead(exc, lease.test_id)

    # -- teardown ---------------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """True once the server stopped answering: teardown then skips SQL work."""
        return self._guard.dead

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has removed everything."""
        return self._guard.closed

    def declare_dead(self, cause: BaseException, test_id: str = "") -> ServerUnresponsive:
        """Record that the server stopped answering; every later acquire raises the result."""
        return self._guard.declare_dead(cause, self._shared, test_id)

    def close(self) -> None:
        """Remove everything the session created. Safe to call twice and after failures."""
        with self._lock:
            if self._guard.closed or self._guard.closing:
                return
            self._guard.closing = True
            t0 = self.clock()
            errors: list[BaseException] = []
            for strategy in reversed(list(self._strategies.values())):
                try:
                    strategy.abandon() if self.dead else strategy.close()
                except Exception as exc:
                    errors.append(exc)
            if self._janitor is not None:
                try:
                    self._janitor.close(abandon=self.dead)
                except Exception as exc:
                    errors.append(exc)
            if self._shared is not None and self.server_outlives_session and not self.dead:
                # Drop every database of ours there.
                try:
                    self._drop_leftovers()
                except Exception as exc:
                    errors.append(exc)
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
            for server in list(self._servers):
                try:
                    self.stop_server(server)
                except Exception as exc:
                    errors.append(exc)
            self._guard.closed = True
            self.record("session_close", self.clock() - t0)
        if errors and self._guard.failure is None:
            raise errors[0]

    def _drop_leftovers(self) -> None:
        conn = self._admin
        if conn is None or conn.closed:
            assert self._shared is not None
            conn = self._admin = admin_connect(self.admin_dsn)
        names = set(self.databases_with_prefix(self.namer.prefix, conn=conn)) | self._created
        if self.settings.reuse:  # the hashed template stays for the next run
            names.discard(self._template or "")
        for name in sorted(names, key=lambda n: n == self._template):
            if name == self._template:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
                )
            self.drop_database(name, conn=conn)
        if self.settings.reuse:
            owners.forget(conn, [self.namer.token])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "settings": self.settings.describe(),
            "servers_started": self.servers_started,
            "databases_created": self.databases_created,
            "strategies": sorted(self._strategies),
            "clone_strategy": self.clone_strategy,
        }


def open_session(
    settings: IsolationSettings | None = None, *, extra_sql: str = "", **overrides: Any
) -> IsolationSession:
    """Convenience: ``open_session(isolation="rollback", backend="local", migrations=[...])``."""
    if settings is None:
        settings = IsolationSettings(**overrides)
    elif overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
    return IsolationSession(settings, extra_sql=extra_sql)


__all__: Sequence[str] = ["IsolationSession", "open_session"]
