"""``perfkit servers`` keeps to the current ``PERFKIT_REUSE_NAMESPACE`` unless told ``--all``.

Two real reused servers (local backend: quickest) in two fresh namespaces; the
command runs as a subprocess with one namespace or the other set. Nothing here
runs ``--all --stop`` without answering no: other projects' servers on this
machine are not this test's to remove.
"""

from __future__ import annotations

import os
import pty
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from perfkit.postgres import ServerSettings, reuse

pytestmark = pytest.mark.local

CLI = [sys.executable, "-m", "perfkit.cli", "servers"]


@pytest.fixture(scope="module")
def two_namespaces() -> Iterator[dict[str, str]]:
    """Namespace name -> reuse key of the running server made in it (removed afterwards)."""
    made: dict[str, str] = {}
    mp = pytest.MonkeyPatch()
    try:
        for _ in range(2):
            name = f"test-{secrets.token_hex(4)}"
            mp.setenv(reuse.NAMESPACE_ENV, name)
            server = reuse.reused_server(ServerSettings(backend="local", ram=False))
            made[name] = server.key  # type: ignore[attr-defined]
            server.stop()  # a reused server stays running
        yield made
    finally:
        mp.undo()
        reuse.stop_reused(keys=made.values())


def servers(namespace: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, reuse.NAMESPACE_ENV: namespace}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=60, **kwargs
    )


def test_servers_lists_only_the_current_namespace(two_namespaces: dict[str, str]) -> None:
    (a, key_a), (_, key_b) = two_namespaces.items()
    listing = servers(a).stdout
    assert key_a in listing and key_b not in listing
    assert "more in other namespaces" in listing


def test_servers_all_lists_every_namespace_with_its_name(two_namespaces: dict[str, str]) -> None:
    (a, key_a), (b, key_b) = two_namespaces.items()
    listing = servers(a, "--all").stdout
    assert f"[{a}]" in listing and f"[{b}]" in listing
    assert key_a in listing and key_b in listing


def test_all_stop_on_a_terminal_asks_and_no_removes_nothing(
    two_namespaces: dict[str, str],
) -> None:
    a = next(iter(two_namespaces))
    primary, secondary = pty.openpty()
    try:
        os.write(primary, b"n\n")
        done = servers(a, "--all", "--stop", stdin=secondary)
    finally:
        os.close(primary)
        os.close(secondary)
    assert "remove the reused servers of every namespace? [y/N]" in done.stdout
    assert "nothing removed" in done.stdout and done.returncode == 2
    listed = {info.key for info in reuse.list_reused()}
    assert set(two_namespaces.values()) <= listed


def test_stop_removes_only_the_current_namespaces_server(two_namespaces: dict[str, str]) -> None:
    (a, key_a), (_, key_b) = two_namespaces.items()
    done = servers(a, "--stop")
    assert done.returncode == 0
    assert f"1 reused server(s) of namespace '{a}' removed" in done.stdout
    listed = {info.key for info in reuse.list_reused()}
    assert key_a not in listed and key_b in listed
