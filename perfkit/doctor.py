"""``perfkit doctor``: which PostgreSQL backends work on this machine, and why not the others.

``--dsn DSN`` also checks a server you run yourself (the ``external`` backend):
the loopback guard first (exit 2 when it refuses), then one real connection
with a 5 s timeout. The DSN is only ever printed masked.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass

import psycopg

from perfkit.dsn import mask
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.postgres import ServerSettings, choose_backend, create_server

#: Printed when no --dsn is given: how the external backend is reached.
EXTERNAL_HINT = (
    "    external: a server you run (loopback or unix socket only); check it with "
    "`perfkit doctor --dsn DSN`\n"
    "    external in the pytest plugin: `pytest --perfkit-backend external --perfkit-dsn DSN`; "
    'in Python: ServerSettings(backend="external", dsn=...)'
)


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
    if image in (docker_backend.DEFAULT_IMAGE, docker_backend.LOCAL_IMAGE):
        fix = f"run `perfkit image build` (or `docker pull {docker_backend.DEFAULT_IMAGE}`)"
    else:  # PERFKIT_DOCKER_IMAGE names another image: build that one
        fix = f"run `perfkit image build --tag {image}`"
    return BackendStatus(
        "docker",
        False,
        f"daemon {version} answers, but image {image} is not present and no registry may be "
        f"reachable: {fix}",
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


def check_external(dsn: str) -> BackendStatus:
    """Whether the server at ``dsn`` answers a real connection (5 s connect timeout).

    Raises ConfigError, before connecting, when the loopback guard refuses the DSN.
    """
    settings = ServerSettings(backend="external", dsn=dsn)  # the loopback guard
    where = settings.masked_dsn
    try:
        with create_server(settings) as server:
            version = server.server_version()
    except BackendUnavailable as exc:
        return BackendStatus("external", False, f"{where}: {_one_line(str(exc))}")
    except psycopg.Error as exc:
        return BackendStatus("external", False, f"{where}: {_one_line(mask(str(exc)))}")
    return BackendStatus("external", True, f"PostgreSQL {version} answers at {where}")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def check_all() -> list[BackendStatus]:
    return [check_docker(), check_local()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfkit doctor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="remove containers and data directories left by perfkit runs that have exited",
    )
    parser.add_argument(
        "--dsn",
        default=None,
        metavar="DSN",
        help="also check this server of yours (external backend; loopback or unix socket "
        "only): one connection, 5 s timeout, printed masked",
    )
    return parser


def _print_status(status: BackendStatus) -> None:
    mark = "ok  " if status.usable else "no  "
    print(f"{mark}{status.backend:<9}{status.detail}")


def _print_tools() -> None:
    psql = shutil.which("psql")
    print(f"    psql client: {psql or 'not found (optional)'}")
    bench = check_pgbench()
    print(f"    pgbench: {bench.detail if bench.usable else bench.detail + ' (optional)'}")
    bouncer = check_pgbouncer()
    print(f"    pgbouncer: {bouncer.detail if bouncer.usable else bouncer.detail + ' (optional)'}")


def _sweep(docker: BackendStatus) -> None:
    from perfkit.postgres import leaks

    client = None
    if docker.usable or "image" in docker.detail:
        from perfkit.postgres.docker import docker_client

        client = docker_client()
    for item in leaks.sweep(docker_client=client):
        print(f"removed {item}")


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when a backend is usable (and the --dsn server answers), 1 if not, 2 bad input."""
    args = build_parser().parse_args(argv)
    if args.dsn is not None:
        try:
            ServerSettings(backend="external", dsn=args.dsn)  # refused before anything runs
        except ConfigError as exc:
            print(f"perfkit doctor: error: --dsn: {mask(str(exc))}", file=sys.stderr)
            return 2
    statuses = check_all()
    for status in statuses:
        _print_status(status)
    external = check_external(args.dsn) if args.dsn is not None else None
    if external is None:
        print(EXTERNAL_HINT)
    else:
        _print_status(external)
    _print_tools()
    if any(s.usable for s in statuses):
        choice = choose_backend(ServerSettings(backend="auto"))
        print(f"auto -> {choice.backend}: {choice.reason}")
    else:
        print("no backend is usable: install PostgreSQL binaries (pip install pgserver) or Docker")
    if args.sweep:
        _sweep(statuses[0])
    usable = any(s.usable for s in statuses)
    return 0 if usable and (external is None or external.usable) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
