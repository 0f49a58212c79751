"""Run the pytest plugin the way users do: a real pytest subprocess in a temporary project.

``run_pytest`` writes a test module, a pytest.ini and a schema into a folder
and runs ``python -m pytest`` there (the plugin loads through its entry
point); the helpers read the plugin's timing file and look for leftovers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg

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


def run_pytest(
    tmp_path: Path,
    tests: str,
    *args: str,
    ini: str = "",
    schema: str | None = SCHEMA,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run pytest on ``tests`` in ``tmp_path``; return the process and the timings document."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(tests))
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + textwrap.dedent(ini))
    extra = []
    if schema is not None:
        (tmp_path / "schema.sql").write_text(schema)
        extra.append(f"--perfkit-migrations={tmp_path / 'schema.sql'}")
    timings = tmp_path / "timings.json"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PERFKIT_DSN"))}
    environ.update(env or {})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(tmp_path / "pytest.ini"),
            "--rootdir",
            str(tmp_path),
            f"--perfkit-timings={timings}",
            *extra,
            *args,
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    document = json.loads(timings.read_text()) if timings.exists() else {}
    return proc, document


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
