"""Nothing leaks: servers are removed on error, on SIGINT/SIGTERM, and swept after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perfkit.postgres import ServerSettings, cleanup, create_server, leaks
from perfkit.postgres.local import LocalServer

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from perfkit.postgres import ServerSettings, create_server
    with create_server(ServerSettings(backend=sys.argv[1])) as server:
        docker = sys.argv[1] == "docker"
        info = {"workdir": str(getattr(server, "workdir", "") or ""),
                "container": server.container_id if docker else None}
        print(json.dumps(info), flush=True)
        time.sleep(120)
    """
)


def start_child(backend: str) -> tuple[subprocess.Popen[str], dict[str, str | None]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, backend],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        pytest.fail(f"child exited with {proc.returncode} before starting a server")
    return proc, json.loads(line)


def container_exists(container_id: str) -> bool:
    from perfkit.postgres.docker import docker_client, perfkit_containers

    return any(c.id == container_id for c in perfkit_containers(docker_client()))


def test_server_is_removed_when_the_body_raises() -> None:
    server = create_server(ServerSettings(backend="local"))
    assert isinstance(server, LocalServer)
    with pytest.raises(RuntimeError, match="midway"), server:
        workdir = server.workdir
        raise RuntimeError("test failed midway")
    assert workdir is not None and not workdir.exists()
    assert server not in cleanup.live_servers()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_local_server_is_removed_when_the_run_is_interrupted(sig: signal.Signals) -> None:
    proc, info = start_child("local")
    proc.send_signal(sig)
    proc.wait(30)
    assert info["workdir"] and not Path(info["workdir"]).exists()
    assert not any(info["workdir"] in item for item in leaks.find_leftovers())


@pytest.mark.docker
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_container_is_removed_when_the_run_is_interrupted(
    docker_or_skip: None, sig: signal.Signals
) -> None:
    proc, info = start_child("docker")
    proc.send_signal(sig)
    proc.wait(30)
    assert info["container"] and not container_exists(info["container"])


def test_sweep_removes_what_a_killed_run_left(docker_or_skip: None) -> None:
    from perfkit.postgres.docker import docker_client

    local_proc, local_info = start_child("local")
    docker_proc, docker_info = start_child("docker")
    for proc in (local_proc, docker_proc):
        os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
        proc.wait(30)
    assert local_info["workdir"] and Path(local_info["workdir"]).exists()
    assert docker_info["container"] and container_exists(docker_info["container"])

    removed = leaks.sweep(docker_client=docker_client())

    assert any(local_info["workdir"] in item for item in removed)
    assert not Path(local_info["workdir"]).exists()
    assert not container_exists(docker_info["container"])


def test_sweep_removes_an_owned_temp_directory_whose_owner_was_killed() -> None:
    # The suite runner's scratch directory (perfkit-pg-suite-*) is made this way.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from perfkit.postgres import cleanup; import time; "
            "print(cleanup.make_owned_tempdir('suite'), flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    path = Path(child.stdout.readline().strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    assert path.name.startswith(cleanup.TEMPDIR_PREFIX + "suite-") and path.is_dir()

    removed = leaks.sweep()

    assert any(str(path) in item for item in removed)
    assert not path.exists()
