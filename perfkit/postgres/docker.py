"""Docker backend: PostgreSQL in a container started through testcontainers.

The container's port is published on 127.0.0.1 only, on a port chosen up
front so that stop/start keeps it. Ryuk (testcontainers' reaper image) is
disabled when its image is not present locally, since no registry may be
reachable; perfkit's own cleanup (labels + :func:`sweep_stale`) covers it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psutil

from perfkit.errors import BackendUnavailable, ServerStartError
from perfkit.postgres import cleanup
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.local import free_port
from perfkit.postgres.settings import ServerSettings, preload_args

#: The image used when nothing else is configured and a registry is reachable.
DEFAULT_IMAGE = "postgres:17"
#: The tag ``perfkit image build`` gives the image it builds from local binaries.
LOCAL_IMAGE = "perfkit/postgres:local"
CONTAINER_PORT = 5432
#: PGDATA of the official image and of ``perfkit image build``'s image.
CONTAINER_PGDATA = "/var/lib/postgresql/data"
#: uid/gid of ``postgres`` in both images; the tmpfs must belong to it (initdb wants 0700).
CONTAINER_PG_UID = 999
PING_TIMEOUT_S = 3


def docker_client(timeout: float = PING_TIMEOUT_S) -> Any:
    """A docker SDK client whose daemon answered a ping, or BackendUnavailable."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a testcontainers dependency
        raise BackendUnavailable("the docker Python package is not installed") from exc
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        raise BackendUnavailable(
            "no Docker daemon answers "
            f"({os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}: {exc}). "
            "Start dockerd (e.g. `dockerd &` as root, or `systemctl start docker`) "
            "or use backend='local'."
        ) from None
    return client


def image_present(client: Any, image: str) -> bool:
    import docker.errors

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def resolve_image(client: Any, configured: str | None) -> str:
    """The image to run: the configured one, else a local one, else the official image."""
    configured = configured or os.environ.get("PERFKIT_DOCKER_IMAGE")
    if configured:
        return configured
    for candidate in (DEFAULT_IMAGE, LOCAL_IMAGE):
        if image_present(client, candidate):
            return candidate
    return DEFAULT_IMAGE


def configure_testcontainers(client: Any) -> None:
    """Point testcontainers at published localhost ports; disable Ryuk if it can't run."""
    from testcontainers.core.config import ConnectionMode
    from testcontainers.core.config import testcontainers_config as config

    config.connection_mode_override = ConnectionMode.docker_host
    config.tc_host_override = "localhost"
    if not os.environ.get("TESTCONTAINERS_RYUK_DISABLED") and not image_present(
        client, config.ryuk_image
    ):
        config.ryuk_disabled = True


class DockerServer(PostgresServer):
    """PostgreSQL in a throwaway container (testcontainers' PostgresContainer)."""

    backend = "docker"

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        # Checked now so that a missing daemon or image fails before anything starts.
        self.client = docker_client()
        self.image = resolve_image(self.client, settings.image)
        if not image_present(self.client, self.image):
            self._pull_or_explain()
        configure_testcontainers(self.client)
        self._container: Any | None = None

    def _pull_or_explain(self) -> None:
        try:
            self.client.images.pull(self.image)
        except Exception as exc:
            raise BackendUnavailable(
                f"Docker image {self.image!r} is not present and could not be pulled "
                f"({type(exc).__name__}). Without a registry, build one from local "
                f"PostgreSQL binaries: `perfkit image build` (tags {LOCAL_IMAGE})."
            ) from None

    def _launch(self) -> None:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.core.container import DockerContainer

        s = self.settings
        self.port = free_port()
        # The image perfkit builds carries every library of the local binaries, the official
        # images carry the contrib modules: pg_stat_statements is there in both.
        command = ["postgres", *preload_args(s)]
        for key, value in s.server_settings.items():
            command += ["-c", f"{key}={value}"]
        container = PostgresContainer(
            self.image,
            username=s.user,
            password=s.password,
            dbname=s.dbname,
            driver=None,
        )
        container.ports = {f"{CONTAINER_PORT}/tcp": ("127.0.0.1", self.port)}
        container.with_command(command)
        container.with_kwargs(labels=self._labels())
        if s.ram:
            # Mount options, not just a size: initdb wants a 0700 directory owned by postgres.
            container.tmpfs[CONTAINER_PGDATA] = (
                f"rw,mode=0700,uid={CONTAINER_PG_UID},gid={CONTAINER_PG_UID}"
            )
        self._container = container
        # DockerContainer.start: create + start without testcontainers' blocking
        # readiness exec; perfkit probes from the host so it can race the boot.
        DockerContainer.start(container)

    def _labels(self) -> dict[str, str]:
        """Labels that let a sweep find the container once its owner is gone."""
        return {cleanup.OWNER_LABEL: str(os.getpid()), "perfkit.backend": "docker"}

    @property
    def container(self) -> Any:
        if self._container is None or self._container._container is None:
            raise ServerStartError("the container has not been started")
        return self._container._container

    def _check_alive(self) -> None:
        container = self.container
        container.reload()
        if container.status in ("exited", "dead"):
            raise ServerStartError(
                f"container {container.short_id} exited before PostgreSQL was ready; "
                f"{self._diagnostics()}"
            )

    def log_text(self) -> str | None:
        """The container's output: the entrypoint's and the server's stderr log."""
        try:
            return self.container.logs(stdout=True, stderr=True).decode(errors="replace")
        except Exception:  # not started, or already removed
            return None

    def _teardown(self) -> None:
        wrapper, self._container = self._container, None
        if wrapper is not None and wrapper._container is not None:
            with contextlib.suppress(Exception):
                wrapper._container.remove(force=True, v=True)

    @property
    def container_id(self) -> str:
        return str(self.container.id)

    def server_pids(self) -> list[int]:
        """Host pids of the container's processes (its init, the postmaster, first).

        Empty when the daemon runs in another pid namespace (e.g. a remote daemon).
        """
        container = self.container
        container.reload()
        pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        if pid <= 0:
            return []
        try:
            root = psutil.Process(pid)
            return [pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.Error:
            return []

    def memory_bytes(self) -> int:
        """The container's memory as ``docker stats`` shows it (usage minus page cache)."""
        stats = self.container.stats(stream=False)
        mem = stats.get("memory_stats", {})
        usage = int(mem.get("usage", 0))
        detail = mem.get("stats", {})
        cache = detail.get(
            "total_inactive_file", detail.get("inactive_file", detail.get("cache", 0))
        )
        return max(usage - int(cache), 0)

    def take_down(self) -> None:
        """Fast shutdown (SIGINT, as ``pg_ctl -m fast``); the container stays, stopped."""
        container = self.container
        container.kill(signal="SIGINT")
        try:
            container.wait(timeout=15)
        except Exception:
            container.kill()
            container.wait(timeout=15)

    def bring_up(self, *, wait: bool = True) -> None:
        self.container.start()
        if wait:
            self.wait_until_ready()

    def pause(self) -> None:
        self.container.pause()

    def resume(self) -> None:
        self.container.reload()
        if self.container.status == "paused":
            self.container.unpause()


def perfkit_containers(client: Any) -> list[Any]:
    """Every container perfkit started, on this daemon.

    ``ignore_removed``: a container another run removes between the daemon's
    list and docker-py's inspect of it is simply gone, not an error.
    """
    return list(
        client.containers.list(
            all=True, filters={"label": cleanup.OWNER_LABEL}, ignore_removed=True
        )
    )


def sweep_stale(client: Any) -> list[str]:
    """Remove perfkit containers whose owning process is gone."""
    removed = []
    for container in perfkit_containers(client):
        owner = container.labels.get(cleanup.OWNER_LABEL, "")
        if owner.isdigit() and cleanup.pid_alive(int(owner)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed.append(f"container {container.short_id}")
    return removed
