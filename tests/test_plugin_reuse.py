"""``--perfkit-reuse``: a server and template kept between runs, found again, and removable.

Each test runs pytest subprocesses (through pytester) in its own reuse namespace
(``PERFKIT_REUSE_NAMESPACE``), so it never adopts a developer's reused server,
and removes the servers it made by key when it ends.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pluginrun import SCHEMA, WRITE_THEN_LOOK, InnerPytest, test_records

from perfkit.dsn import make_socket_url
from perfkit.postgres import reuse

BACKENDS = ["local", pytest.param("docker", marks=pytest.mark.docker)]


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A fresh reuse namespace; every reused server made in it is removed afterwards."""
    name = f"test-{secrets.token_hex(4)}"
    env = {reuse.NAMESPACE_ENV: name}
    keys: set[str] = set()
    request.node.stash[KEYS] = keys
    try:
        yield env
    finally:
        reuse.stop_reused(keys=keys)


KEYS = pytest.StashKey[set[str]]()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_or_skip")
    return str(request.param)


def reused_run(
    request: pytest.FixtureRequest,
    inner: InnerPytest,
    tests: str,
    env: dict[str, str],
    *args: str,
    schema: str = SCHEMA,
) -> tuple[pytest.RunResult, dict[str, Any]]:
    """One ``--perfkit-reuse`` run; the reused servers it names are removed after the test."""
    result, document = inner.run(tests, "--perfkit-reuse", *args, schema=schema, env=env)
    for record in document.get("records", []):
        if record.get("reuse_key"):
            request.node.stash[KEYS].add(record["reuse_key"])
    return result, document


def events(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in document["records"] if r["event"] == name]


def test_second_run_adopts_the_server_template_and_parked_databases(
    request: pytest.FixtureRequest,
    inner_pytest: InnerPytest,
    namespace: dict[str, str],
    backend: str,
) -> None:
    args = ("--perfkit-isolation=warm-pool", f"--perfkit-backend={backend}")
    first, doc1 = reused_run(request, inner_pytest, WRITE_THEN_LOOK, namespace, *args)
    first.assert_outcomes(passed=2)
    assert [r["adopted"] for r in events(doc1, "server_start")] == [False]
    assert events(doc1, "template_build")
    second, doc2 = reused_run(request, inner_pytest, WRITE_THEN_LOOK, namespace, *args)
    second.assert_outcomes(passed=2)
    assert [r["adopted"] for r in events(doc2, "server_start")] == [True]
    assert events(doc2, "template_reused") and not events(doc2, "template_build")
    assert len(events(doc2, "pool_adopt")) >= 2  # the first run refilled before it exited
    assert [r["strategy"] for r in test_records(doc2)] == ["warm-pool", "warm-pool"]
    listed = {info.key for info in reuse.list_reused()}
    assert request.node.stash[KEYS] <= listed


def test_a_changed_migration_builds_a_new_template_and_drops_the_stale_one(
    request: pytest.FixtureRequest, inner_pytest: InnerPytest, namespace: dict[str, str]
) -> None:
    look = "def test_x(perfkit_db):\n    perfkit_db.execute('SELECT * FROM items')\n"
    first, _ = reused_run(request, inner_pytest, look, namespace, "--perfkit-backend=local")
    first.assert_outcomes(passed=1)
    changed = SCHEMA + "ALTER TABLE items ADD COLUMN note text;\n"
    look2 = "def test_x(perfkit_db):\n    perfkit_db.execute('SELECT note FROM items')\n"
    second, doc2 = reused_run(
        request, inner_pytest, look2, namespace, "--perfkit-backend=local", schema=changed
    )
    second.assert_outcomes(passed=1)
    assert events(doc2, "template_build")
    stale = [r["dbname"] for r in events(doc2, "stale_dropped")]
    assert any(name.startswith("pk_tpl_") for name in stale)


def test_a_failing_migration_in_a_reused_server_leaves_no_half_built_template(
    request: pytest.FixtureRequest, inner_pytest: InnerPytest, namespace: dict[str, str]
) -> None:
    ok, _ = reused_run(request, inner_pytest, WRITE_THEN_LOOK, namespace, "--perfkit-backend=local")
    ok.assert_outcomes(passed=2)
    broken = SCHEMA + "ALTER TABLE nowhere ADD COLUMN x int;\n"
    failed, _ = reused_run(
        request, inner_pytest, WRITE_THEN_LOOK, namespace, "--perfkit-backend=local",
        schema=broken,
    )  # fmt: skip
    failed.assert_outcomes(errors=2)
    failed.stdout.fnmatch_lines(['E *MigrationError: *"nowhere"*', "E *SQL: ALTER TABLE nowhere *"])
    (server,) = [s for s in reuse.list_reused() if s.key in request.node.stash[KEYS]]
    dsn = make_socket_url(
        socket_dir=str(Path(server.where) / "socket"),
        port=_port(server),
        user="perfkit",
        dbname="perfkit",
    )
    with psycopg.connect(dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert len([n for n in names if n.startswith("pk_tpl_")]) == 1  # only the good one
    assert not [
        n for n in names if n.startswith("pk_") and not n.startswith(("pk_tpl_", "pk_ready_"))
    ]


def _port(info: reuse.ReusedServerInfo) -> int:
    import json

    return int(json.loads((Path(info.where) / reuse.STATE_FILE).read_text())["port"])


def test_two_xdist_workers_share_one_reused_server(
    request: pytest.FixtureRequest, inner_pytest: InnerPytest, namespace: dict[str, str]
) -> None:
    tests = """
    import pytest

    @pytest.mark.parametrize("i", range(6))
    def test_starts_clean(perfkit_db, i):
        assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (0,)
        perfkit_db.execute("INSERT INTO items (name) VALUES ('x')")
        perfkit_db.commit()
    """
    result, document = reused_run(
        request, inner_pytest, tests, namespace, "--perfkit-backend=local", "-n", "2"
    )
    result.assert_outcomes(passed=6)
    starts = [r for r in document["records"] if r["event"] == "server_start"]
    assert len(starts) == 2 and len({r["reuse_key"] for r in starts}) == 1
    assert sorted(r["adopted"] for r in starts) == [False, True]


def test_reuse_with_the_external_backend_is_a_usage_error(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        WRITE_THEN_LOOK,
        "--perfkit-reuse",
        "--perfkit-backend=external",
        "--perfkit-dsn=postgresql://u@127.0.0.1:1/db",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: perfkit: *reuse*backend 'external'*"])
    assert document == {}


def test_servers_command_lists_and_stops_reused_servers(
    request: pytest.FixtureRequest, inner_pytest: InnerPytest, namespace: dict[str, str]
) -> None:
    result, _ = reused_run(
        request, inner_pytest, WRITE_THEN_LOOK, namespace, "--perfkit-backend=local"
    )
    result.assert_outcomes(passed=2)
    (key,) = request.node.stash[KEYS]
    cli = [sys.executable, "-m", "perfkit.cli", "servers"]
    env = {**os.environ, **namespace}
    listing = subprocess.run(cli, capture_output=True, text=True, check=True, env=env).stdout
    assert key in listing and "running" in listing
    stopped = subprocess.run(
        [*cli, "--stop", key], capture_output=True, text=True, check=True, env=env
    )
    assert "1 reused server(s) of namespace" in stopped.stdout
    assert key not in {info.key for info in reuse.list_reused()}
    assert not list(Path(tempfile.gettempdir()).glob(f"{reuse.REUSE_PREFIX}*{key}.lock"))
