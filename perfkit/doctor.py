"""``perfkit doctor``: which PostgreSQL backends work on this machine, and why not the others."""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass

from perfkit.errors import BackendUnavailable
from perfkit.postgres import ServerSettings, choose_backend


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend is usable here, with the facts behind the verdict."""

    backend: str
    usable: bool
    detail: str


def check_docker() -> BackendStatus:
    from perfkit.postgres import docker as docker_backend

    try:
        client = docker_backend.docker_client()
    except BackendUnavailable as exc:
        return BackendStatus("docker", False, str(exc))
    version = client.version().get("Version", "?")
    image = docker_backend.resolve_image(client, None)
    if docker_backend.image_present(client, image):
        return BackendStatus("docker", True, f"daemon {version} answers; image {image} present")
    return BackendStatus(
        "docker",
        False,
        f"daemon {version} answers, but image {image} is not present and no registry may be "
        "reachable: run `perfkit image build` (or `docker pull postgres:17`)",
    )


def check_local() -> BackendStatus:
    from perfkit.postgres.binaries import find_binaries
    from perfkit.postgres.local import server_user

    try:
        binaries = find_binaries()
        user = server_user()
    except BackendUnavailable as exc:
        return BackendStatus("local", False, str(exc))
    runs_as = f", runs the server as user {user!r}" if user else ""
    return BackendStatus(
        "local",
        True,
        f"PostgreSQL {binaries.version} in {binaries.bindir} ({binaries.source}){runs_as}",
    )


def check_pgbench() -> BackendStatus:
    """Whether pgbench is here (optional: the pool lab's independent reference needs it)."""
    from perfkit.pool.pgbench import find_pgbench

    try:
        binary = find_pgbench()
    except BackendUnavailable as exc:
        return BackendStatus("pgbench", False, str(exc))
    return BackendStatus("pgbench", True, str(binary))


def check_pgbouncer() -> BackendStatus:
    """Whether a pgbouncer binary is here (optional: only pooled-through-PgBouncer runs need it)."""
    from perfkit.postgres.pgbouncer import PgBouncer, find_pgbouncer

    try:
        binary = find_pgbouncer()
    except BackendUnavailable as exc:
        return BackendStatus("pgbouncer", False, str(exc))
    version = PgBouncer.binary_version(binary)
    return BackendStatus("pgbouncer", True, f"PgBouncer {version} at {binary}")


def check_all() -> list[BackendStatus]:
    return [check_docker(), check_local()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perfkit doctor", description=__doc__)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="remove containers and data directories left by perfkit runs that have exited",
    )
    args = parser.parse_args(argv)
    statuses = check_all()
    for status in statuses:
        mark = "ok  " if status.usable else "no  "
        print(f"{mark}{status.backend:<9}{status.detail}")
    print("    external needs --dsn / ServerSettings(dsn=...) pointing at a loopback server")
    psql = shutil.which("psql")
    print(f"    psql client: {psql or 'not found (optional)'}")
    bench = check_pgbench()
    print(f"    pgbench: {bench.detail if bench.usable else bench.detail + ' (optional)'}")
    bouncer = check_pgbouncer()
    print(f"    pgbouncer: {bouncer.detail if bouncer.usable else bouncer.detail + ' (optional)'}")
    if any(s.usable for s in statuses):
        choice = choose_backend(ServerSettings(backend="auto"))
        print(f"auto -> {choice.backend}: {choice.reason}")
    else:
        print("no backend is usable: install PostgreSQL binaries (pip install pgserver) or Docker")
    if args.sweep:
        from perfkit.postgres import leaks

        client = None
        if statuses[0].usable or "image" in statuses[0].detail:
            from perfkit.postgres.docker import docker_client

            client = docker_client()
        for item in leaks.sweep(docker_client=client):
            print(f"removed {item}")
    return 0 if any(s.usable for s in statuses) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
