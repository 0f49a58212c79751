"""Run the pytest plugin the way users do: a real pytest subprocess in a temporary project.

The ``inner_pytest`` fixture (tests/conftest.py) hands out an :class:`InnerPytest`:
its ``run`` writes a test module, a pytest.ini and a schema through pytest's
``pytester`` and runs them with ``runpytest_subprocess`` (the plugin loads
through its entry point, and its servers, threads and atexit handlers live and
die in that subprocess, never in this one). The helpers read the plugin's
timing file and look for leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from perfkit.errors import BackendUnavailable
from perfkit.lifecycle.registry import NAMES
from perfkit.postgres import PostgresServer, cleanup

ISOLATING = [n for n in NAMES if n != "none"]

SCHEMA = "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL);\n"

WRITE_THEN_LOOK = """
def test_1_writes(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('from test 1')")
    perfkit_db.commit()
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (1,)

def test_2_sees_nothing(perfkit_db):
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (0,)
"""

#: Variables of the outer run that would steer an inner one: xdist's worker
#: names and pytest's own settings, and a DSN that would make it external.
STEERING_ENV = ("PYTEST_", "PERFKIT_DSN")


@dataclass
class InnerPytest:
    """A temporary project (``path``) and a way to run pytest on it in a subprocess."""

    pytester: pytest.Pytester
    monkeypatch: pytest.MonkeyPatch

    @property
    def path(self) -> Path:
        return self.pytester.path

    @contextlib.contextmanager
    def environment(self, env: dict[str, str] | None = None) -> Iterator[None]:
        """``os.environ`` for an inner run: the steering variables dropped, ``env`` added.

        Subprocesses started inside the block inherit it; it is restored after.
        """
        with self.monkeypatch.context() as mp:
            for name in list(os.environ):
                if name.startswith(STEERING_ENV):
                    mp.delenv(name)
            for name, value in (env or {}).items():
                mp.setenv(name, value)
            yield

    def run(
        self,
        tests: str,
        *args: str,
        ini: str = "",
        schema: str | None = SCHEMA,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> tuple[pytest.RunResult, dict[str, Any]]:
        """Run pytest on ``tests`` (test_inner.py); return the result and the timings document."""
        test_file = self.pytester.makepyfile(test_inner=tests)
        ini_file = self.pytester.makefile(".ini", pytest="[pytest]\n" + textwrap.dedent(ini))
        extra = []
        if schema is not None:
            extra.append(f"--perfkit-migrations={self.pytester.makefile('.sql', schema=schema)}")
        timings = self.path / "timings.json"
        timings.unlink(missing_ok=True)  # a run that stops early must not show the last one's
        with self.environment(env):
            result = self.pytester.runpytest_subprocess(
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                str(ini_file),
                "--rootdir",
                str(self.path),
                f"--perfkit-timings={timings}",
                *extra,
                *args,
                str(test_file),
                timeout=timeout,
            )
        document = json.loads(timings.read_text()) if timings.exists() else {}
        return result, document


def inner_pytest_command(ini: Path, rootdir: Path, *args: str) -> list[str]:
    """The command line of an inner pytest run started by hand (to signal or kill it)."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(ini),
        "--rootdir",
        str(rootdir),
        *args,
    ]


def test_records(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in document.get("records", []) if r["event"] == "test"]


test_records.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def leftovers(document: dict[str, Any]) -> list[str]:
    """Data directories, postgres processes and containers owned by the run's processes.

    (Other runs on this machine come and go; only what the inner pytest owned counts.)
    """
    pids = {int(w["pid"]) for w in document["workers"]}
    assert pids, "the timings file names no process"
    found = []
    for path in cleanup.owned_tempdirs():
        if cleanup.owner_of(path) in pids:
            found.append(f"data directory {path}")
    try:
        from perfkit.postgres.docker import docker_client, perfkit_containers

        client = docker_client()
    except BackendUnavailable:
        return found
    for container in perfkit_containers(client):
        if container.labels.get(cleanup.OWNER_LABEL, "") in {str(p) for p in pids}:
            found.append(f"container {container.short_id}")
    return found


def databases(server: PostgresServer) -> set[str]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
