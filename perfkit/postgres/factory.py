"""Pick a backend (``auto`` explains its choice) and create servers from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from perfkit.errors import BackendUnavailable
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.settings import ServerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendChoice:
    """The backend ``auto`` resolved to and why."""

    backend: str
    reason: str


def choose_backend(settings: ServerSettings) -> BackendChoice:
    """Resolve ``auto``: Docker when a daemon answers and an image is usable, else local."""
    if settings.backend != "auto":
        return BackendChoice(settings.backend, "requested explicitly")
    from perfkit.postgres import docker as docker_backend

    try:
        client = docker_backend.docker_client()
    except BackendUnavailable as exc:
        return BackendChoice("local", f"Docker not usable: {exc}")
    image = docker_backend.resolve_image(client, settings.image)
    if docker_backend.image_present(client, image):
        return BackendChoice("docker", f"Docker daemon answers and image {image} is present")
    return BackendChoice(
        "local",
        f"Docker daemon answers but image {image} is not present locally "
        "(`perfkit image build` makes one without a registry)",
    )


def create_server(settings: ServerSettings | None = None, **overrides: object) -> PostgresServer:
    """A not-yet-started server for ``settings``; use it as a context manager.

    Everything that can be checked without starting anything (daemon, image,
    binaries, DSN) is checked here, so bad input fails before a server starts.
    """
    if settings is None:
        settings = ServerSettings(**overrides)  # type: ignore[arg-type]
    elif overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)  # type: ignore[arg-type]
    choice = choose_backend(settings)
    log.info("PostgreSQL backend: %s (%s)", choice.backend, choice.reason)
    backend = choice.backend
    if backend == "docker":
        from perfkit.postgres.docker import DockerServer

        return DockerServer(settings)
    if backend == "local":
        from perfkit.postgres.local import LocalServer

        return LocalServer(settings)
    from perfkit.postgres.external import ExternalServer

    return ExternalServer(settings)
