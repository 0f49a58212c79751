"""SIGTERM and SIGHUP clean up like Ctrl-C, and exit 143 and 129 (issue 24, item 4).

Each test starts a real process, waits until it runs a server (a local
postgres or a container), sends the signal, and checks the exit code and that
nothing the process tree owned is left: data directories, postgres processes,
containers, kernels and their connection files. Without the signal handlers
the processes die at once (return code -15 / -1) and leave all of it.

- a pytest session using the plugin: signalled inside a test (a later test
  must not run) and while the main thread still waits for the server the
  prewarm thread is starting;
- ``perfkit run`` of a quick lab: the kernel started the server;
- ``perfkit report --quick``: signalled once its first lab's server is up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from pluginrun import SCHEMA, InnerPytest, inner_pytest_command

from perfkit.errors import BackendUnavailable
from perfkit.postgres import cleanup, leaks

pytestmark = pytest.mark.fault

PERFKIT = Path(sys.executable).parent / "perfkit"
REPO = Path(__file__).resolve().parent.parent
QUICK_LAB = REPO / "notebooks" / "04_streaming.ipynb"  # the smallest lab: one server, seconds
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGHUP, id="SIGHUP")]
BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]
SERVER_TIMEOUT_S = 120  # until the process under test runs a server
EXIT_TIMEOUT_S = 90  # from the signal to its exit


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_or_skip")
    return str(request.param)


def _docker() -> Any | None:
    from perfkit.postgres.docker import docker_client

    try:
        return docker_client()
    except BackendUnavailable:
        return None


@dataclass
class Owned:
    """What a process tree runs: its pids, and the servers and kernel files they own."""

    pids: set[int] = field(default_factory=set)
    tempdirs: set[Path] = field(default_factory=set)
    postmasters: dict[int, psutil.Process] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)  # id -> status
    connection_files: set[Path] = field(default_factory=set)

    @staticmethod
    def tree(root: int) -> list[psutil.Process]:
        try:
            parent = psutil.Process(root)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def add_tree(self, root: int) -> None:
        for proc in self.tree(root):
            self.pids.add(proc.pid)
            try:
                cmdline = proc.cmdline()
            except psutil.Error:
                continue
            if "ipykernel_launcher" in " ".join(cmdline) and "-f" in cmdline:
                self.connection_files.add(Path(cmdline[cmdline.index("-f") + 1]))

    def add_servers(self, client: Any | None) -> None:
        owners = {str(pid) for pid in self.pids}
        self.tempdirs |= {p for p in cleanup.owned_tempdirs() if cleanup.owner_of(p) in self.pids}
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info.get("name") != "postgres" or "-D" not in cmdline or "-p" not in cmdline:
                continue  # initdb's bootstrap postgres has no port
            datadir = Path(cmdline[cmdline.index("-D") + 1])
            if any(d in datadir.parents for d in self.tempdirs):
                self.postmasters[proc.pid] = proc
        if client is not None:
            from perfkit.postgres.docker import perfkit_containers

            for container in perfkit_containers(client):
                if container.labels.get(cleanup.OWNER_LABEL, "") in owners:
                    self.containers[container.id] = container.status

    @property
    def server_up(self) -> bool:
        return bool(self.postmasters) or "running" in self.containers.values()

    def describe(self) -> str:
        return (
            f"pids {sorted(self.pids)}, data directories {sorted(map(str, self.tempdirs))}, "
            f"postgres {sorted(self.postmasters)}, containers {sorted(self.containers)}"
        )


def wait_for_server(proc: subprocess.Popen[str], client: Any | None) -> Owned:
    """Poll until ``proc``'s process tree runs a server; return what it owns then."""
    owned = Owned()
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        owned.add_tree(proc.pid)
        owned.add_servers(client)
        if owned.server_up:
            owned.add_tree(proc.pid)  # the kernel's connection file, if it appeared late
            return owned
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited with {proc.returncode} before a server was up:\n{out}\n{err}")
        time.sleep(0.1)
    pytest.fail(f"no server up after {SERVER_TIMEOUT_S} s: {owned.describe()}")


def signal_and_wait(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[float, str, str]:
    """Send ``sig``; return the seconds until ``proc`` exited, and its output."""
    t0 = time.monotonic()
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    elapsed = time.monotonic() - t0
    print(f"{sig.name}: exit {proc.returncode} after {elapsed * 1000:.0f} ms")
    return elapsed, out, err


def assert_nothing_left(owned: Owned, client: Any | None) -> None:
    """Nothing ``owned`` recorded is left, and no leftover of a dead owner names it."""
    assert owned.tempdirs or owned.containers, "the run never showed a server"
    _, alive = psutil.wait_procs(list(owned.postmasters.values()), timeout=15)
    assert alive == [], f"postgres still running: {alive}"
    assert [d for d in owned.tempdirs if d.exists()] == []
    assert [p for p in owned.pids if psutil.pid_exists(p) and _not_zombie(p)] == []
    if client is not None:
        from perfkit.postgres.docker import perfkit_containers

        ids = {c.id for c in perfkit_containers(client)}
        assert set(owned.containers) & ids == set(), "containers left behind"
    left = [
        item
        for item in leaks.find_leftovers()
        if any(str(d) in item for d in owned.tempdirs)
        or any(c[:10] in item for c in owned.containers)
        or any(f"process {pid} " in item for pid in owned.postmasters)
    ]
    assert left == []
    for connection_file in owned.connection_files:  # the kernels' /tmp/tmpXXXX.json and sockets
        assert not connection_file.exists()
        assert list(connection_file.parent.glob(connection_file.stem + "-ipc-*")) == []


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed (with their trees) if the test leaves one running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            for child in Owned.tree(proc.pid):
                with contextlib.suppress(psutil.Error):
                    child.kill()
            proc.wait(30)
    if procs:  # what such a kill left (owners are gone now), for the suite's leak check
        leaks.sweep_dead_owners()


def start(cmd: list[str], running: list[subprocess.Popen[str]], **kwargs: Any) -> Any:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the signal goes to this process alone, as `kill PID` does
        **kwargs,
    )
    running.append(proc)
    return proc


# -- a pytest session using the plugin ------------------------------------------

INNER_TESTS = """
import time
from pathlib import Path

def test_1_holds_its_database(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('held')")
    Path("ready").touch()
    time.sleep(120)

def test_2_never_runs(perfkit_db):
    Path("second-test-ran").touch()
"""


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("when", ["in-test", "during-prewarm"])
@pytest.mark.parametrize("sig", SIGNALS)
def test_plugin_session_stops_cleanly(
    inner_pytest: InnerPytest,
    running: list[subprocess.Popen[str]],
    backend: str,
    when: str,
    sig: signal.Signals,
) -> None:
    path = inner_pytest.path
    test_file = inner_pytest.pytester.makepyfile(test_inner=INNER_TESTS)
    ini = inner_pytest.pytester.makefile(".ini", pytest="[pytest]\n")
    schema = inner_pytest.pytester.makefile(".sql", schema=SCHEMA)
    client = _docker() if backend == "docker" else None
    with inner_pytest.environment():
        proc = start(
            inner_pytest_command(
                ini,
                path,
                f"--perfkit-backend={backend}",
                f"--perfkit-migrations={schema}",
                str(test_file),
            ),
            running,
            cwd=path,
        )
    if when == "in-test":
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while not (path / "ready").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "the first test never got its database"
            time.sleep(0.05)
        owned = Owned()
        owned.add_tree(proc.pid)
        owned.add_servers(client)
    else:  # signalled as soon as the prewarm thread has begun making the server
        owned = Owned(pids={proc.pid})
        deadline = time.monotonic() + SERVER_TIMEOUT_S
        while not (owned.tempdirs or owned.containers) and proc.poll() is None:
            assert time.monotonic() < deadline, "the prewarm never started a server"
            owned.add_servers(client)
            time.sleep(0.02)
        assert not (path / "ready").exists()
    elapsed, out, err = signal_and_wait(proc, sig)

    assert proc.returncode == 128 + sig, f"{out}\n{err}"
    assert f"{sig.name} received" in out
    assert not (path / "second-test-ran").exists(), "the session went on after the signal"
    owned.add_servers(client)  # also what the prewarm made after the signal
    assert_nothing_left(owned, client)
    assert elapsed < EXIT_TIMEOUT_S


# -- perfkit run and perfkit report ----------------------------------------------


def _cli_env() -> dict[str, str]:
    """This checkout's perfkit, also in the kernels; no DSN that would steer a lab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PERFKIT_DSN"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def _check_cli_exit(
    proc: subprocess.Popen[str], sig: signal.Signals, owned: Owned, client: Any | None
) -> None:
    elapsed, out, err = signal_and_wait(proc, sig)
    assert proc.returncode == 128 + sig, f"{out}\n{err}"
    assert f"perfkit: terminated by {sig.name}" in err
    assert owned.connection_files, "no kernel was seen"
    owned.add_servers(client)
    assert_nothing_left(owned, client)
    assert elapsed < EXIT_TIMEOUT_S


@pytest.mark.notebook
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("sig", SIGNALS)
def test_perfkit_run_stops_its_kernel_and_servers(
    tmp_path: Path, running: list[subprocess.Popen[str]], backend: str, sig: signal.Signals
) -> None:
    client = _docker() if backend == "docker" else None
    proc = start(
        [
            str(PERFKIT),
            "run",
            str(QUICK_LAB),
            "-p",
            "quick",
            "True",
            "-p",
            "backend",
            backend,
            "-p",
            "out_dir",
            str(tmp_path / "data"),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
        running,
        cwd=tmp_path,
        env=_cli_env(),
    )
    owned = wait_for_server(proc, client)
    _check_cli_exit(proc, sig, owned, client)


@pytest.mark.notebook
@pytest.mark.parametrize("sig", SIGNALS)
def test_perfkit_report_stops_its_kernel_and_servers(
    tmp_path: Path, running: list[subprocess.Popen[str]], sig: signal.Signals
) -> None:
    client = _docker()
    proc = start(
        [
            str(PERFKIT),
            "report",
            "--quick",
            "--output-dir",
            str(tmp_path / "runs"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        running,
        cwd=tmp_path,
        env=_cli_env(),
    )
    owned = wait_for_server(proc, client)
    _check_cli_exit(proc, sig, owned, client)
