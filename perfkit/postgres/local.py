"""Local backend: a throwaway PostgreSQL cluster made with initdb and run as a child process.

The cluster lives in a private temporary directory (data, unix socket, log)
that is removed on stop. It listens on 127.0.0.1 and a unix socket in that
directory, on a free port. As root, initdb and postgres run as an
unprivileged user (``PERFKIT_PG_USER``, else ``postgres`` if it exists, else
``nobody``), since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import psutil

from perfkit.dsn import make_socket_url
from perfkit.errors import BackendUnavailable, ServerStartError
from perfkit.postgres import cleanup
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.binaries import PgBinaries, find_binaries
from perfkit.postgres.settings import PRELOAD_LIBRARIES, ServerSettings, preload_args

SHUTDOWN_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_user() -> str | None:
    """The unprivileged account to run PostgreSQL as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("PERFKIT_PG_USER"), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise BackendUnavailable(
        "running as root, but no unprivileged user to run PostgreSQL as "
        "(set PERFKIT_PG_USER to an existing account)"
    )


class LocalServer(PostgresServer):
    """A PostgreSQL cluster in a temporary directory, run from local binaries."""

    backend = "local"

    def __init__(self, settings: ServerSettings, binaries: PgBinaries | None = None) -> None:
        super().__init__(settings)
        # Resolved now so a missing installation fails before anything is started.
        self.binaries = binaries or find_binaries(settings.bindir)
        self.os_user = server_user()
        self.workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- paths ------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "socket"

    @property
    def logfile(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "postgres.log"

    def socket_dsn_for(self, dbname: str) -> str | None:
        """The unix-socket DSN: the socket sits in a 0700 directory, so trust is private."""
        if self.workdir is None or self.port is None:
            return None
        return make_socket_url(
            socket_dir=str(self.socket_dir), port=self.port, user=self.settings.user, dbname=dbname
        )

    # -- launch / teardown ----------------------------------------------------

    def _run_as_server_user(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=self.os_user,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.workdir,
            check=False,
        )

    def _initdb(self, workdir: Path | None = None) -> None:
        """initdb into ``workdir`` (made by the caller), else a new owned temp directory."""
        if workdir is None:
            root = cleanup.ram_root() if self.settings.ram else None
            self.workdir = Path(tempfile.mkdtemp(prefix=cleanup.TEMPDIR_PREFIX, dir=root))
            (self.workdir / cleanup.OWNER_FILE).write_text(str(os.getpid()))
        else:
            self.workdir = workdir
        self.socket_dir.mkdir(mode=0o700)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.settings.password)
        if self.os_user:
            account = pwd.getpwnam(self.os_user)
            for path in (self.workdir, self.socket_dir, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        try:
            result = self._run_as_server_user(
                [
                    self.binaries.tool("initdb"),
                    "--pgdata",
                    str(self.datadir),
                    "--username",
                    self.settings.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth-host",
                    "scram-sha-256",
                    "--auth-local",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",
                    "--no-instructions",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed: {result.stderr.strip()[-2000:]}")
        if self.settings.dbname != "postgres":
            self._create_database_offline()

    def _create_database_offline(self) -> None:
        """Create the experiment database in single-user mode (no server needed yet)."""
        name = self.settings.dbname.replace('"', '""')
        result = subprocess.run(
            [self.binaries.tool("postgres"), "--single", "-D", str(self.datadir), "postgres"],
            input=f'CREATE DATABASE "{name}";\n',
            user=self.os_user,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.workdir,
            check=False,
        )
        if result.returncode != 0 or "ERROR" in result.stderr:
            raise ServerStartError(f"could not create database: {result.stderr.strip()[-2000:]}")

    def _postgres_command(self) -> list[str]:
        assert self.port is not None
        args = [
            self.binaries.tool("postgres"),
            "-D",
            str(self.datadir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            # Dynamic shared memory as files under the data directory, not POSIX
            # segments in /dev/shm: a server that is killed (SIGKILL, a dead owner's
            # sweep) cannot leave them behind, since they go with the data directory.
            "-c",
            "dynamic_shared_memory_type=mmap",
            *preload_args(self.settings, available=self.binaries.has_library(PRELOAD_LIBRARIES)),
        ]
        for key, value in self.settings.server_settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _spawn(self) -> None:
        log = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self._proc = subprocess.Popen(
                self._postgres_command(),
                user=self.os_user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # a terminal's Ctrl-C reaches us; we shut it down
            )
        finally:
            log.close()

    def _launch(self) -> None:
        self._initdb()
        self.port = free_port()
        self._spawn()

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServerStartError(
                f"postgres exited with code {self._proc.returncode} before it was ready; "
                f"{self._diagnostics()}"
            )

    def log_text(self) -> str | None:
        if self.workdir is None or not self.logfile.exists():
            return None
        return self.logfile.read_text(errors="replace")

    def _shutdown_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # Continue it even when perfkit did not pause it (someone's kill -STOP): a stopped
        # postmaster would sit on the SIGINT until the timeout below.
        self._signal_tree(proc.pid, signal.SIGCONT)
        self._paused = False
        proc.send_signal(signal.SIGINT)  # "fast" shutdown
        try:
            proc.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.wait(SHUTDOWN_TIMEOUT_S)

    def _teardown(self) -> None:
        try:
            self._shutdown_process()
        finally:
            if self.workdir is not None:
                kill_servers_using(self.datadir)
                cleanup.remove_owned(self.workdir)
                self.workdir = None

    # -- measurements and outages ------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid: our child, else the one ``postmaster.pid`` names."""
        if self._proc is not None:
            return self._proc.pid if self._proc.poll() is None else None
        if self.workdir is None:
            return None
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def _tree(self) -> list[psutil.Process]:
        pid = self.postmaster_pid()
        if pid is None:
            return []
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def server_pids(self) -> list[int]:
        """The postmaster and all its children (backends, background workers)."""
        return [proc.pid for proc in self._tree()]

    def memory_bytes(self) -> int:
        """Proportional set size (PSS) of postmaster and all backends, summed.

        PSS shares shared_buffers fairly between processes, so the sum is the
        server's real footprint (RSS would count shared memory once per process).
        """
        total = 0
        for proc in self._tree():
            try:
                total += getattr(proc.memory_full_info(), "pss", 0) or proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total

    def take_down(self) -> None:
        self._shutdown_process()

    def bring_up(self, *, wait: bool = True) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self.started_at = None
        self._spawn()
        if wait:
            self.wait_until_ready()

    def _signal_tree(self, pid: int, sig: signal.Signals) -> None:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(sig)

    def pause(self) -> None:
        if self._proc is None:
            raise ServerStartError("cannot pause: the server is not running")
        self._signal_tree(self._proc.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            self._signal_tree(self._proc.pid, signal.SIGCONT)
        self._paused = False


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
    psutil.wait_procs(procs, timeout=5)


def kill_servers_using(datadir: Path) -> list[int]:
    """Kill any postgres process whose command line names ``datadir``."""
    killed = []
    needle = str(datadir)
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") in ("postgres", "postmaster") and needle in cmdline:
            kill_tree(proc.pid)
            killed.append(proc.pid)
    return killed


def sweep_stale() -> list[str]:
    """Remove data directories (and their servers) whose owning process is gone."""
    removed = []
    for path in cleanup.owned_tempdirs():
        owner = cleanup.owner_of(path)
        if owner is None or cleanup.pid_alive(owner):
            continue
        kill_servers_using(path / "data")
        cleanup.remove_owned(path)
        removed.append(f"local data directory {path}")
    return removed
