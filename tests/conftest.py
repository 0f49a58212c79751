"""Shared fixtures: real PostgreSQL servers, Docker availability, and a leak check.

The leak check runs at the end of the session: any perfkit container, local
data directory or postgres process whose owning process is gone and that
was not there when the session began fails the run. Reused servers
(``--perfkit-reuse``) are meant to outlive a run, so the plugin's own sweeps
leave them; but a test that makes one must remove it, so a reused server
that was not there at the start fails the run too.

``inner_pytest`` runs the plugin in a pytest subprocess through ``pytester``
(see pluginrun.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pluginrun import InnerPytest

from perfkit.errors import BackendUnavailable
from perfkit.postgres import (
    FAST_SERVER_SETTINGS,
    PostgresServer,
    ServerSettings,
    create_server,
    leaks,
    reuse,
)

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
TEST_SERVER_SETTINGS = {**FAST_SERVER_SETTINGS, "max_connections": 300}

_before: set[str] = set()


def _reused() -> set[str]:
    return {f"reused {info.backend} server {info.where}" for info in reuse.list_reused()}


def pytest_sessionstart(session: pytest.Session) -> None:
    _before.update(leaks.find_leftovers())
    _before.update(_reused())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller checks
        return
    left = [item for item in [*leaks.find_leftovers(), *_reused()] if item not in _before]
    if left:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            "perfkit leak check: left behind by this test session:\n  " + "\n  ".join(left),
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def docker_unavailable_reason() -> str | None:
    """Why Docker-backend tests cannot run here, or None when they can."""
    from perfkit.postgres import docker as docker_backend

    try:
        client = docker_backend.docker_client()
    except BackendUnavailable as exc:
        return f"{exc}"
    image = docker_backend.resolve_image(client, None)
    if not docker_backend.image_present(client, image):
        return f"no PostgreSQL image present ({image}); run `perfkit image build`"
    return None


@pytest.fixture(scope="session")
def docker_or_skip() -> None:
    """Skip (or, with PERFKIT_REQUIRE_DOCKER=1 as in CI, fail) when Docker is unusable."""
    reason = docker_unavailable_reason()
    if reason is None:
        return
    message = (
        f"Docker backend unavailable: {reason}. To enable these tests start dockerd as root "
        "and run `perfkit image build` (bash .ci/run does both)."
    )
    if os.environ.get("PERFKIT_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One running local PostgreSQL server shared by the whole session."""
    with create_server(
        ServerSettings(backend="local", server_settings=TEST_SERVER_SETTINGS)
    ) as server:
        yield server


@pytest.fixture
def fresh_pg_server() -> Iterator[PostgresServer]:
    """A running local server of the test's own, for outages and other disturbances."""
    with create_server(
        ServerSettings(backend="local", server_settings=TEST_SERVER_SETTINGS)
    ) as server:
        yield server


@pytest.fixture
def docker_pg_server(docker_or_skip: None) -> Iterator[PostgresServer]:
    """A running PostgreSQL container of the test's own."""
    with create_server(
        ServerSettings(backend="docker", server_settings=TEST_SERVER_SETTINGS)
    ) as server:
        yield server


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> InnerPytest:
    """A temporary project to run the plugin in, with pytest in a subprocess.

    The subprocesses (inner runs, and the CLI a test starts from inside the
    project) import perfkit from this checkout: PYTHONPATH leads with it,
    so an editable install of another checkout does not stand in for it.
    """
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    return InnerPytest(pytester, monkeypatch)


# -- a template with one of everything a test can change (tests/dbstate.py) --------------


@pytest.fixture(scope="module")
def state_template(request: pytest.FixtureRequest, pg_server: PostgresServer) -> Iterator[str]:
    """:data:`dbstate.SCHEMA` in a template database of the test module's own."""
    from dbstate import made_template

    name = "perfkit_st_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with made_template(pg_server, name[:63]) as made:
        yield made


@pytest.fixture(scope="module")
def reference(pg_server: PostgresServer, state_template: str) -> Any:
    """The fingerprint of a fresh clone of :func:`state_template`."""
    from perfkit.lifecycle import template_fingerprint

    return template_fingerprint(pg_server, state_template)


@pytest.fixture
def clone(pg_server: PostgresServer, state_template: str) -> Iterator[str]:
    """A fresh clone of :func:`state_template`, dropped after the test."""
    from dbstate import made_clone

    with made_clone(pg_server, state_template) as name:
        yield name
