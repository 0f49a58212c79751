"""The run's perfkit header line: backend, server version, isolation, reuse.

Found without starting a server (the background start is not waited for):
the local backend's version is that of the binaries it will run, the docker
backend's that of its image (the ``perfkit.postgres-version`` label of
``perfkit image build`` images, ``PG_VERSION`` of official ones), an external
server's is asked for. Called only when a selected test needs a database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perfkit.dsn import mask

if TYPE_CHECKING:
    from perfkit.lifecycle.settings import IsolationSettings


def _docker_version(image_name: str | None) -> str:
    from perfkit.postgres.docker import docker_client, resolve_image

    client = docker_client()
    name = resolve_image(client, image_name)
    image = client.images.get(name)
    labels = image.labels or {}
    version = labels.get("perfkit.postgres-version")
    if not version:
        env = dict(
            item.split("=", 1) for item in image.attrs["Config"].get("Env") or [] if "=" in item
        )
        version = env.get("PG_VERSION", "").split("-")[0] or "?"
    return f"PostgreSQL {version}, image {name}"


def _external_version(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {str(row[0]).split()[0] if row else '?'}"


def backend_and_version(settings: IsolationSettings) -> tuple[str, str]:
    """The backend ``auto`` resolves to here and the server version it will run."""
    from perfkit.postgres.factory import choose_backend

    backend = choose_backend(settings.server()).backend
    try:
        if backend == "local":
            from perfkit.postgres.binaries import find_binaries

            return backend, f"PostgreSQL {find_binaries(settings.bindir).version}"
        if backend == "docker":
            return backend, _docker_version(settings.image)
        assert settings.dsn is not None
        return backend, _external_version(settings.dsn)
    except Exception as exc:  # the first test reports the real failure; the header only says so
        return backend, f"version unknown: {mask(str(exc)).splitlines()[0][:120]}"


def header_line(settings: IsolationSettings) -> str:
    """``perfkit: backend local (PostgreSQL 15.18), isolation template, reuse off``."""
    backend, version = backend_and_version(settings)
    line = (
        f"perfkit: backend {backend} ({version}), isolation {settings.isolation}"
        f"{' (stable DSN)' if settings.stable_dsn else ''}, "
        f"reuse {'on' if settings.reuse else 'off'}"
    )
    if settings.export_pg_env:
        line += ", PG* variables exported"
    return line


def configured_line(settings: IsolationSettings) -> str:
    """The xdist controller's line: settings only (each worker starts its own server)."""
    return (
        f"perfkit: backend {settings.backend}, isolation {settings.isolation}"
        f"{' (stable DSN)' if settings.stable_dsn else ''}, "
        f"reuse {'on' if settings.reuse else 'off'} "
        f"({'one reused server' if settings.reuse else 'one server per xdist worker'}; "
        "the summary names the server)"
    )
