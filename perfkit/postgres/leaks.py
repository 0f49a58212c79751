"""Find what perfkit runs left behind: containers, data directories, postgres and pgbouncers.

Used by the test suite's leak check and by ``perfkit doctor --sweep``. Only
items whose owning process has exited count: a live run's servers are not
leftovers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psutil

from perfkit.errors import BackendUnavailable
from perfkit.postgres import cleanup, local, pgbouncer
from perfkit.postgres import docker as docker_backend

log = logging.getLogger(__name__)


def find_leftovers() -> list[str]:
    """Describe every perfkit resource whose owner process is gone."""
    found: list[str] = []
    for path in cleanup.owned_tempdirs():
        owner = cleanup.owner_of(path)
        if owner is None or not cleanup.pid_alive(owner):
            kind = (
                "pgbouncer directory"
                if path.name.startswith(cleanup.BOUNCER_PREFIX)
                else "local data directory"
            )
            found.append(f"{kind} {path}")
    for pid, workdir in pgbouncer.stale_processes():
        found.append(f"pgbouncer process {pid} ({workdir})")
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") != "postgres" or "-D" not in cmdline:
            continue
        datadir = cmdline[cmdline.index("-D") + 1] if cmdline.index("-D") + 1 < len(cmdline) else ""
        if cleanup.TEMPDIR_PREFIX in datadir:
            owner = cleanup.owner_of(Path(datadir).parent)
            if owner is None or not cleanup.pid_alive(owner):
                found.append(f"postgres process {proc.pid} ({datadir})")
    try:
        client = docker_backend.docker_client()
    except BackendUnavailable:
        return found
    for container in docker_backend.perfkit_containers(client):
        owner = container.labels.get(cleanup.OWNER_LABEL, "")
        if not (owner.isdigit() and cleanup.pid_alive(int(owner))):
            found.append(f"container {container.short_id} ({container.status})")
    return found


def sweep_dead_owners() -> list[str]:
    """:func:`sweep`, including containers when a Docker daemon answers (quietly without)."""
    try:
        client = docker_backend.docker_client()
    except BackendUnavailable:
        client = None
    removed = sweep(docker_client=client)
    for item in removed:
        log.warning("perfkit: removed %s left by a run that is gone", item)
    return removed


def sweep(*, docker_client: Any | None = None) -> list[str]:
    """Remove what perfkit runs left behind whose owner process is gone.

    Returns a description of each removed item. Never touches anything
    whose owner is still alive.
    """
    removed = pgbouncer.sweep_stale()  # first: its directories look like data directories
    removed += local.sweep_stale()
    if docker_client is not None:
        removed += docker_backend.sweep_stale(docker_client)
    return removed
