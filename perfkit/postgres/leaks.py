"""Find what perfkit runs left behind: containers, local data directories, postgres processes.

Used by the test suite's leak check and by ``perfkit doctor --sweep``. Only
items whose owning process has exited count: a live run's servers are not
leftovers.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from perfkit.errors import BackendUnavailable
from perfkit.postgres import cleanup


def find_leftovers() -> list[str]:
    """Describe every perfkit resource whose owner process is gone."""
    found: list[str] = []
    for path in cleanup.owned_tempdirs():
        owner = cleanup.owner_of(path)
        if owner is None or not cleanup.pid_alive(owner):
            found.append(f"local data directory {path}")
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
        from perfkit.postgres.docker import docker_client, perfkit_containers

        client = docker_client()
    except BackendUnavailable:
        return found
    for container in perfkit_containers(client):
        owner = container.labels.get(cleanup.OWNER_LABEL, "")
        if not (owner.isdigit() and cleanup.pid_alive(int(owner))):
            found.append(f"container {container.short_id} ({container.status})")
    return found
