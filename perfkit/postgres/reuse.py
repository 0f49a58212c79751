"""Servers kept alive between runs (opt-in): found again by a key, or started to outlive the run.

A reused server is keyed by what makes two servers interchangeable: backend,
image (docker) or binaries (local), server settings, in-memory data, user
and database name, and the OS user (servers are never shared between users), plus
``PERFKIT_REUSE_NAMESPACE`` when set (separate servers per project or branch).

* docker: a container labelled ``perfkit.reuse-key`` / ``perfkit.reuse-uid``
  and *not* ``perfkit.owner-pid``, so sweeps of dead owners leave it alone.
  Its port is published on 127.0.0.1; its password lives only in the
  container's own configuration (perfkit writes it nowhere).
* local: a cluster in ``<tmp or /dev/shm>/perfkit-reuse-<uid>-<key>/`` that
  listens on a unix socket in that private (0700) directory only: no TCP
  port, no password to keep (``trust`` on the socket), reachable only by its
  OS user. Its DSN has the form ``postgresql://perfkit@/perfkit?host=<dir>&port=<n>``.

A file lock serialises find-or-start between concurrent runs (and xdist
workers, which then share one server). :func:`list_reused` and
:func:`stop_reused` back ``perfkit servers``; each server records its
namespace (the ``perfkit.reuse-namespace`` label, the ``namespace`` of the
local state file) so that they can keep to the current one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perfkit.dsn import make_socket_url
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.postgres import cleanup
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.docker import CONTAINER_PORT, DockerServer, docker_client
from perfkit.postgres.factory import choose_backend
from perfkit.postgres.local import LocalServer, free_port, kill_servers_using
from perfkit.postgres.settings import ServerSettings

REUSE_LABEL = "perfkit.reuse-key"
REUSE_UID_LABEL = "perfkit.reuse-uid"
REUSE_NAMESPACE_LABEL = "perfkit.reuse-namespace"
REUSE_PREFIX = "perfkit-reuse-"
STATE_FILE = "perfkit-reuse.json"
KEY_CHARS = 16
#: Set to keep separate reused servers apart (per project, branch or test run).
NAMESPACE_ENV = "PERFKIT_REUSE_NAMESPACE"


def current_namespace() -> str:
    """``PERFKIT_REUSE_NAMESPACE``, or ``""`` (the default namespace) when unset."""
    return os.environ.get(NAMESPACE_ENV, "")


def reuse_key(settings: ServerSettings, backend: str, identity: str) -> str:
    """A stable hash of everything that makes two reusable servers interchangeable."""
    material = json.dumps(
        {
            "backend": backend,
            "identity": identity,
            "settings": sorted((k, str(v)) for k, v in settings.server_settings.items()),
            "ram": settings.ram,
            "user": settings.user,
            "dbname": settings.dbname,
            "uid": os.getuid(),
            "namespace": current_namespace(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:KEY_CHARS]


def _lock_path(key: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{REUSE_PREFIX}{os.getuid()}-{key}.lock"


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    with open(_lock_path(key), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Reused:
    """Mixin: ``stop()`` leaves the server running; :meth:`remove` really removes it."""

    reused = True
    #: True when this run found the server already running (False: this run started it).
    adopted = False

    def stop(self) -> None:
        self._running = False  # type: ignore[attr-defined]
        cleanup.unregister(self)  # type: ignore[arg-type]

    def remove(self) -> None:
        PostgresServer.stop(self)  # type: ignore[arg-type]


class ReusedDockerServer(_Reused, DockerServer):
    """A labelled container that outlives the run, adopted by the next run with the same key."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        self.key = reuse_key(settings, "docker", self.client.images.get(self.image).id)
        self._adopted_container: Any | None = None

    def _labels(self) -> dict[str, str]:
        return {
            REUSE_LABEL: self.key,
            REUSE_UID_LABEL: str(os.getuid()),
            REUSE_NAMESPACE_LABEL: current_namespace(),
            "perfkit.backend": "docker",
        }

    def _find(self) -> Any | None:
        found = self.client.containers.list(
            filters={"label": [f"{REUSE_LABEL}={self.key}", f"{REUSE_UID_LABEL}={os.getuid()}"]},
            all=True,
        )
        for container in found:
            if container.status == "running":
                return container
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
        return None

    def _launch(self) -> None:
        container = self._find()
        if container is None:
            super()._launch()
            return
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"] if "=" in item)
        binding = container.attrs["NetworkSettings"]["Ports"][f"{CONTAINER_PORT}/tcp"][0]
        if binding["HostIp"] != "127.0.0.1":
            raise BackendUnavailable(
                f"reused container {container.short_id} is published on {binding['HostIp']}, "
                "not 127.0.0.1; remove it with `perfkit servers --stop`"
            )
        self.settings = replace(
            self.settings,
            user=env.get("POSTGRES_USER", self.settings.user),
            password=env["POSTGRES_PASSWORD"],
            dbname=env.get("POSTGRES_DB", self.settings.dbname),
        )
        self.port = int(binding["HostPort"])
        self._adopted_container = container
        self.adopted = True

    @property
    def container(self) -> Any:
        if self._adopted_container is not None:
            return self._adopted_container
        return super().container

    def _teardown(self) -> None:
        adopted, self._adopted_container = self._adopted_container, None
        if adopted is not None:
            with contextlib.suppress(Exception):
                adopted.remove(force=True, v=True)
        super()._teardown()


class ReusedLocalServer(_Reused, LocalServer):
    """A local cluster in a fixed private directory, on a unix socket only, outliving the run."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        identity = f"{self.binaries.bindir}:{self.binaries.version}"
        self.key = reuse_key(settings, "local", identity)
        root = (cleanup.ram_root() if settings.ram else None) or Path(tempfile.gettempdir())
        self.home = root / f"{REUSE_PREFIX}{os.getuid()}-{self.key}"

    # The socket directory is the host; authentication is trust on the socket.
    @property
    def dsn(self) -> str:
        return self.dsn_for(self.settings.dbname)

    def dsn_for(self, dbname: str) -> str:
        return self.socket_dsn_for(dbname)

    def socket_dsn_for(self, dbname: str) -> str:
        return make_socket_url(
            socket_dir=str(self.home / "socket"),
            port=self._port(),
            user=self.settings.user,
            dbname=dbname,
        )

    def _port(self) -> int:
        if self.port is None:
            raise BackendUnavailable("the reused local server has not been started")
        return self.port

    def _postgres_command(self) -> list[str]:
        args = super()._postgres_command()
        args[args.index("listen_addresses=127.0.0.1")] = "listen_addresses="
        return args

    def _running_pid(self) -> int | None:
        try:
            pid = int((self.home / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if cleanup.pid_alive(pid) else None

    def _launch(self) -> None:
        self.workdir = self.home
        state = self.home / STATE_FILE
        if self._running_pid() is not None and state.exists():
            self.port = int(json.loads(state.read_text())["port"])
            self.adopted = True
            return
        if self.home.exists():  # a dead or half-made cluster: start over
            kill_servers_using(self.home / "data")
            shutil.rmtree(self.home, ignore_errors=True)
        self.workdir = None
        self._initdb_at(self.home)
        self.port = free_port()
        state.write_text(json.dumps({"port": self.port, "namespace": current_namespace()}))
        self._spawn()

    def _initdb_at(self, home: Path) -> None:
        home.mkdir(mode=0o700)
        self._initdb(workdir=home)

    def _check_alive(self) -> None:
        if self.adopted and self._running_pid() is None:
            raise BackendUnavailable(f"the reused server in {self.home} is not running")
        super()._check_alive()

    def _teardown(self) -> None:
        super()._teardown()
        kill_servers_using(self.home / "data")
        shutil.rmtree(self.home, ignore_errors=True)


def reused_server(settings: ServerSettings) -> PostgresServer:
    """Find the running server for ``settings`` (same key) or start one that outlives the run.

    The returned server is started; ``server.adopted`` says whether it was found.
    ``stop()`` on it leaves it running; ``remove()`` removes it.
    """
    choice = choose_backend(settings)
    if choice.backend == "external":
        raise ConfigError("reuse needs a server perfkit starts (backend auto, docker or local)")
    server: DockerServer | LocalServer
    if choice.backend == "docker":
        server = ReusedDockerServer(settings)
    else:
        server = ReusedLocalServer(settings)
    key = server.key  # type: ignore[union-attr]
    with _locked(key):
        try:
            server.start()
        except Exception:
            if not server.adopted:  # type: ignore[union-attr]
                raise
            # The found server does not answer: remove it and start a fresh one.
            server.remove()  # type: ignore[union-attr]
            server = type(server)(settings)
            server.start()
    return server


@dataclass(frozen=True)
class ReusedServerInfo:
    """A reused server as ``perfkit servers`` lists it (no secrets)."""

    backend: str
    key: str
    where: str
    status: str
    namespace: str = ""


def _local_namespace(home: Path) -> str:
    try:
        return str(json.loads((home / STATE_FILE).read_text()).get("namespace", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def list_reused(*, namespace: str | None = None) -> list[ReusedServerInfo]:
    """The reused servers of this OS user on this machine: of ``namespace`` (None: all)."""
    found = _list_all()
    return [i for i in found if namespace is None or i.namespace == namespace]


def _list_all() -> list[ReusedServerInfo]:
    found: list[ReusedServerInfo] = []
    prefix = f"{REUSE_PREFIX}{os.getuid()}-"
    for root in cleanup.temp_roots():
        for home in sorted(root.glob(prefix + "*")):
            if not home.is_dir():
                continue
            try:
                pid = int((home / "data" / "postmaster.pid").read_text().split()[0])
                status = "running" if cleanup.pid_alive(pid) else "stopped"
            except (OSError, ValueError, IndexError):
                status = "stopped"
            found.append(
                ReusedServerInfo(
                    "local", home.name[len(prefix) :], str(home), status, _local_namespace(home)
                )
            )
    with contextlib.suppress(BackendUnavailable):
        client = docker_client()
        for container in reused_containers(client):
            found.append(
                ReusedServerInfo(
                    "docker",
                    container.labels.get(REUSE_LABEL, ""),
                    f"container {container.short_id}",
                    container.status,
                    container.labels.get(REUSE_NAMESPACE_LABEL, ""),
                )
            )
    return found


def reused_containers(client: Any) -> list[Any]:
    return list(
        client.containers.list(
            all=True, filters={"label": [REUSE_LABEL, f"{REUSE_UID_LABEL}={os.getuid()}"]}
        )
    )


def stop_reused(keys: Iterable[str] | None = None, *, namespace: str | None = None) -> list[str]:
    """Remove this OS user's reused servers: all, or those with the given keys, of
    ``namespace`` (None: of every namespace)."""
    wanted = None if keys is None else set(keys)
    removed: list[str] = []
    for info in list_reused(namespace=namespace):
        if wanted is not None and info.key not in wanted:
            continue
        if info.backend == "local":
            home = Path(info.where)
            kill_servers_using(home / "data")
            shutil.rmtree(home, ignore_errors=True)
            removed.append(f"local server {home}")
    with contextlib.suppress(BackendUnavailable):
        client = docker_client()
        for container in reused_containers(client):
            if wanted is not None and container.labels.get(REUSE_LABEL) not in wanted:
                continue
            if namespace is not None and container.labels.get(REUSE_NAMESPACE_LABEL, "") != (
                namespace
            ):
                continue
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
                removed.append(f"container {container.short_id}")
    _remove_idle_locks(keep={info.key for info in list_reused()})
    return removed


def _remove_idle_locks(*, keep: set[str]) -> None:
    """Delete lock files of keys with no reused server that nobody holds right now."""
    for path in Path(tempfile.gettempdir()).glob(f"{REUSE_PREFIX}{os.getuid()}-*.lock"):
        key = path.name[len(f"{REUSE_PREFIX}{os.getuid()}-") : -len(".lock")]
        if key in keep:
            continue
        with contextlib.suppress(OSError), open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a starter: leave it
            path.unlink()
