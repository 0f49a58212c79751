"""PgBouncer in front of a perfkit server: started, probed, queried and removed like a server.

``with PgBouncer(server, PgBouncerSettings(pool_mode="transaction")) as bouncer:``
runs the ``pgbouncer`` binary (not daemonized, in its own session) on a free
port of 127.0.0.1 in front of a local, docker or external server, and
connects clients through ``bouncer.dsn``. Its configuration, auth file, unix
socket and log live in a private (0700) ``perfkit-pg-bouncer-*`` temporary
directory with an owner file, so :mod:`perfkit.postgres.leaks` reports and
sweeps what a killed run left (process and directory). The auth file holds
the server's SCRAM verifier when the server lets us read ``pg_authid``
(superuser), else the password, mode 0600; the password is never logged.

Through a transaction-mode pool, psycopg must not prepare statements:
connect with ``prepare_threshold=None``. :meth:`PgBouncer.show` reads the
admin console (``SHOW POOLS``, ``SHOW STATS``, ...) as rows of dicts.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil
import psycopg
from psycopg.conninfo import conninfo_to_dict

from perfkit import validate
from perfkit.dsn import make_url, mask
from perfkit.errors import BackendUnavailable, ConfigError, ServerStartError
from perfkit.loopback import check_loopback
from perfkit.postgres import cleanup
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.local import free_port, kill_tree, server_user

log = logging.getLogger(__name__)

POOL_MODES = ("transaction", "session")
#: Where Debian's package puts the binary (not on a non-root user's PATH).
SYSTEM_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin")
#: Set to the pgbouncer binary to use instead of searching.
BINARY_ENV = "PERFKIT_PGBOUNCER"
CONFIG_NAME = "pgbouncer.ini"
AUTH_NAME = "userlist.txt"
LOG_NAME = "pgbouncer.log"
ADMIN_DB = "pgbouncer"
SHUTDOWN_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 0.01
PORT_ATTEMPTS = 3


def find_pgbouncer(binary: str | None = None, *, path: str | None = None) -> str:
    """The pgbouncer executable: ``binary``, else ``$PERFKIT_PGBOUNCER``, else a search.

    The search covers ``path`` (default: ``$PATH`` plus the sbin directories
    Debian installs to). Raises BackendUnavailable saying how to install it.
    """
    explicit = binary or os.environ.get(BINARY_ENV)
    if explicit:
        if os.access(explicit, os.X_OK) and not os.path.isdir(explicit):
            return explicit
        raise BackendUnavailable(
            f"pgbouncer binary {explicit!r} is not an executable file; fix the path "
            f"(or unset {BINARY_ENV}), or install it: apt-get install pgbouncer"
        )
    if path is None:
        path = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_DIRS])
    found = shutil.which("pgbouncer", path=path)
    if found is None:
        raise BackendUnavailable(
            "pgbouncer is not installed (searched "
            f"{path or 'an empty PATH'!r}); install it: apt-get install pgbouncer "
            f"(Debian/Ubuntu), or set {BINARY_ENV} to its path"
        )
    return found


@dataclass(frozen=True, kw_only=True)
class PgBouncerSettings:
    """How the pool in front of a server behaves (PgBouncer's own setting names).

    ``max_db_connections`` 0 means no per-database limit; ``query_wait_timeout``
    is how long a client may wait for a server connection and ``server_login_retry``
    how long PgBouncer waits after a failed server login before it tries again
    (while it waits, new clients are refused), both in seconds.
    """

    pool_mode: str = "transaction"
    default_pool_size: int = 20
    max_client_conn: int = 100
    min_pool_size: int = 0
    reserve_pool_size: int = 0
    max_db_connections: int = 0
    query_wait_timeout: float = 120.0
    server_login_retry: float = 15.0
    startup_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.pool_mode not in POOL_MODES:
            raise ConfigError(
                f"PgBouncerSettings.pool_mode must be one of {', '.join(POOL_MODES)}, "
                f"got {self.pool_mode!r}"
            )
        for name, minimum in (
            ("default_pool_size", 1),
            ("max_client_conn", 1),
            ("min_pool_size", 0),
            ("reserve_pool_size", 0),
            ("max_db_connections", 0),
        ):
            validate.integer(f"PgBouncerSettings.{name}", getattr(self, name), minimum=minimum)
        for name in ("query_wait_timeout", "server_login_retry", "startup_timeout"):
            validate.number(f"PgBouncerSettings.{name}", getattr(self, name), strict=True)

    def describe(self) -> dict[str, Any]:
        return {
            "pool_mode": self.pool_mode,
            "default_pool_size": self.default_pool_size,
            "max_client_conn": self.max_client_conn,
            "min_pool_size": self.min_pool_size,
            "reserve_pool_size": self.reserve_pool_size,
            "max_db_connections": self.max_db_connections,
            "query_wait_timeout": self.query_wait_timeout,
            "server_login_retry": self.server_login_retry,
        }


def _quote(value: str) -> str:
    """A double-quoted auth_file field (``"`` doubled)."""
    return '"' + value.replace('"', '""') + '"'


def _plain(value: Any) -> Any:
    """The console types its counters numeric: whole Decimals become ints."""
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


class PgBouncer:
    """A pgbouncer process in front of ``server``; a context manager.

    The binary is resolved when the object is made, so a missing pgbouncer
    raises BackendUnavailable before anything is created.
    """

    def __init__(
        self,
        server: PostgresServer,
        settings: PgBouncerSettings | None = None,
        *,
        binary: str | None = None,
        search_path: str | None = None,
    ) -> None:
        self.binary = find_pgbouncer(binary, path=search_path)
        self.server = server
        self.settings = settings or PgBouncerSettings()
        self.os_user = server_user()
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.workdir: Path | None = None
        self.auth_secret: str | None = None  # "scram-verifier" or "password", once started
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        check_loopback(server.dsn)  # PgBouncer forwards to it: the same guard as a client's
        params = conninfo_to_dict(server.dsn)
        self._user = str(params.get("user") or "postgres")
        self._password = str(params.get("password") or "")
        self._dbname = str(params.get("dbname") or self._user)
        self._upstream_host = str(params.get("host") or "127.0.0.1")
        self._upstream_port = int(params.get("port") or 5432)

    # -- connection details ------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The server's database through the pool, password included: log ``masked_dsn``."""
        return self.dsn_for(self._dbname)

    @property
    def masked_dsn(self) -> str:
        return mask(self.dsn)

    @property
    def admin_dsn(self) -> str:
        """The admin console (``pgbouncer`` database); the server's user is an admin user."""
        return self.dsn_for(ADMIN_DB)

    def dsn_for(self, dbname: str) -> str:
        if self.port is None:
            raise ServerStartError("pgbouncer has not been started")
        return make_url(
            host=self.host,
            port=self.port,
            user=self._user,
            password=self._password,
            dbname=dbname,
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        where = self.masked_dsn if self.port is not None else "not started"
        return f"<PgBouncer {self.settings.pool_mode} {where} -> {self.server!r}>"

    def describe(self) -> dict[str, Any]:
        """Facts for result metadata (no secrets)."""
        return {
            "component": "pgbouncer",
            "binary": self.binary,
            "version": self.version(),
            "dsn": self.masked_dsn if self.port is not None else None,
            "auth_secret": self.auth_secret,
            "settings": self.settings.describe(),
            "startup_s": (self.ready_at - self.started_at)
            if self.ready_at and self.started_at
            else None,
        }

    def version(self) -> str:
        """The binary's version, e.g. ``'1.18.0'``."""
        return self.binary_version(self.binary)

    @staticmethod
    def binary_version(binary: str) -> str:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        match = re.search(r"PgBouncer (\S+)", out)
        return match.group(1) if match else out.strip()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Self:
        """Write the private config, spawn pgbouncer and wait until a query goes through."""
        if self._proc is not None:
            return self
        if self.server.port is None:
            raise ServerStartError("start the server before the pgbouncer in front of it")
        cleanup.register_component(self)
        self.started_at = time.monotonic()
        try:
            self._make_workdir()
            self._write_auth_file()
            for attempt in range(PORT_ATTEMPTS):
                self.port = free_port()
                self._write_config()
                self._spawn()
                try:
                    self._wait_until_ready()
                    break
                except ServerStartError:
                    # Someone else took the free port between our check and the bind.
                    if attempt + 1 < PORT_ATTEMPTS and "already in use" in self.log_text():
                        self._shutdown_process()
                        continue
                    raise
        except BaseException:
            self.stop()
            raise
        log.info("pgbouncer (%s) at %s", self.settings.pool_mode, self.masked_dsn)
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove the directory. Idempotent."""
        try:
            self._shutdown_process()
        finally:
            if self.workdir is not None:
                cleanup.remove_owned(self.workdir)
                self.workdir = None
            cleanup.unregister_component(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """pgbouncer's log (its stderr) so far, or '' when there is none."""
        if self.workdir is None:
            return ""
        try:
            return (self.workdir / LOG_NAME).read_text(errors="replace")
        except OSError:
            return ""

    # -- admin console ---------------------------------------------------------------

    def show(self, what: str) -> list[dict[str, Any]]:
        """``SHOW <what>`` on the admin console (POOLS, STATS, CLIENTS, SERVERS ...)."""
        if not re.fullmatch(r"[A-Za-z_]+", what):
            raise ConfigError(f"SHOW {what!r}: expected one word such as POOLS or STATS")
        # The console speaks only the simple query protocol: a ClientCursor uses it.
        with (
            psycopg.connect(
                self.admin_dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
            ) as conn,
            psycopg.ClientCursor(conn) as cur,
        ):
            cur.execute(f"SHOW {what}")
            names = [column.name for column in cur.description or []]
            return [
                {name: _plain(value) for name, value in zip(names, row, strict=True)}
                for row in cur.fetchall()
            ]

    def pool(self, dbname: str | None = None) -> dict[str, Any]:
        """The ``SHOW POOLS`` row of ``dbname`` (default: the server's) and the server's user."""
        dbname = dbname or self._dbname
        for row in self.show("POOLS"):
            if row.get("database") == dbname and row.get("user") == self._user:
                return row
        return {}

    # -- internals ---------------------------------------------------------------------

    def _chown(self, path: Path) -> None:
        if self.os_user:
            account = pwd.getpwnam(self.os_user)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _make_workdir(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=cleanup.BOUNCER_PREFIX))  # mode 0700
        (self.workdir / cleanup.OWNER_FILE).write_text(str(os.getpid()))
        self._chown(self.workdir)

    def _auth_secret(self) -> tuple[str, str]:
        """The server's SCRAM verifier for our user where readable, else the password."""
        try:
            with psycopg.connect(self.server.dsn, connect_timeout=5, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
                ).fetchone()
        except psycopg.Error:
            row = None  # not a superuser: pg_authid is unreadable
        if row and isinstance(row[0], str) and row[0].startswith("SCRAM-SHA-256$"):
            return "scram-verifier", row[0]
        return "password", self._password

    def _write_auth_file(self) -> None:
        assert self.workdir is not None
        self.auth_secret, secret = self._auth_secret()
        path = self.workdir / AUTH_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{_quote(self._user)} {_quote(secret)}\n")
        self._chown(path)

    def _config_text(self) -> str:
        assert self.workdir is not None and self.port is not None
        s = self.settings
        upstream = f"host={self._upstream_host} port={self._upstream_port}"
        return "\n".join(
            [
                "[databases]",
                f"* = {upstream}",
                "",
                "[pgbouncer]",
                f"listen_addr = {self.host}",
                f"listen_port = {self.port}",
                f"unix_socket_dir = {self.workdir}",
                "auth_type = scram-sha-256",
                f"auth_file = {self.workdir / AUTH_NAME}",
                f"admin_users = {self._user}",
                f"stats_users = {self._user}",
                f"pool_mode = {s.pool_mode}",
                f"default_pool_size = {s.default_pool_size}",
                f"max_client_conn = {s.max_client_conn}",
                f"min_pool_size = {s.min_pool_size}",
                f"reserve_pool_size = {s.reserve_pool_size}",
                f"max_db_connections = {s.max_db_connections}",
                f"query_wait_timeout = {s.query_wait_timeout:g}",
                f"server_login_retry = {s.server_login_retry:g}",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )

    def _write_config(self) -> None:
        assert self.workdir is not None
        path = self.workdir / CONFIG_NAME
        path.write_text(self._config_text())
        path.chmod(0o600)
        self._chown(path)

    def _spawn(self) -> None:
        assert self.workdir is not None
        logfile = open(self.workdir / LOG_NAME, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                [self.binary, str(self.workdir / CONFIG_NAME)],
                user=self.os_user,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # its own process group; Ctrl-C reaches only us
            )
        finally:
            logfile.close()

    def _diagnostics(self) -> str:
        text = mask(self.log_text()).strip()
        if not text:
            return "no pgbouncer log"
        return "pgbouncer log tail:\n  " + "\n  ".join(text.splitlines()[-8:])

    def _wait_until_ready(self) -> None:
        timeout = self.settings.startup_timeout
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerStartError(
                    f"pgbouncer exited with code {self._proc.returncode} before it was ready; "
                    f"{self._diagnostics()}"
                )
            try:
                with psycopg.connect(
                    self.dsn, connect_timeout=2, autocommit=True, prepare_threshold=None
                ) as conn:
                    conn.execute("SELECT 1")
                self.ready_at = time.monotonic()
                return
            except psycopg.Error as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"pgbouncer at {self.host}:{self.port} did not pass a query to "
                    f"{self.server.backend} PostgreSQL within {timeout:g} s (last error: "
                    f"{mask(str(last_error)).strip()}); {self._diagnostics()}"
                )
            time.sleep(PROBE_INTERVAL_S)

    def _shutdown_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # immediate shutdown (SIGINT would wait for clients)
        try:
            proc.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait(SHUTDOWN_TIMEOUT_S)


# -- what a killed run left ------------------------------------------------------------


def _perfkit_bouncers() -> Iterator[tuple[int, Path]]:
    """(pid, private directory) of every pgbouncer running from a perfkit directory."""
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") != "pgbouncer" or len(cmdline) < 2:
            continue
        config = Path(cmdline[-1])
        if config.name == CONFIG_NAME and config.parent.name.startswith(cleanup.BOUNCER_PREFIX):
            yield proc.pid, config.parent


def stale_processes() -> list[tuple[int, Path]]:
    """perfkit's pgbouncer processes whose owning process is gone."""
    stale = []
    for pid, workdir in _perfkit_bouncers():
        owner = cleanup.owner_of(workdir)
        if owner is None or not cleanup.pid_alive(owner):
            stale.append((pid, workdir))
    return stale


def sweep_stale() -> list[str]:
    """Kill pgbouncers and remove their directories whose owning process is gone."""
    removed = []
    for pid, workdir in stale_processes():
        kill_tree(pid)
        removed.append(f"pgbouncer process {pid} ({workdir})")
    for path in cleanup.owned_tempdirs():
        if not path.name.startswith(cleanup.BOUNCER_PREFIX):
            continue
        owner = cleanup.owner_of(path)
        if owner is not None and not cleanup.pid_alive(owner):
            cleanup.remove_owned(path)
            removed.append(f"pgbouncer directory {path}")
    return removed
