"""The pool lab with your workload: scripts, schema/seed files, pgbench's tables, your server.

Real local servers; the "external" server is one the test starts itself and
hands to the lab by DSN, so the test can check what the lab left on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import psycopg
import pytest

from perfkit import labrun
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.notebooks import mask_file
from perfkit.pool.lab import LAB
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.workload import SchemaError, ScriptError, leftover_schemas

TASKS = {
    "workload": [
        "perfkit:scheduled_tasks/insert_task.sql@3",
        "perfkit:scheduled_tasks/lookup_due.sql@5",
        "perfkit:scheduled_tasks/get_task.sql@2",
    ],
    "schema": ["perfkit:scheduled_tasks/schema.sql"],
    "seed_data": ["perfkit:scheduled_tasks/seed.sql"],
}
#: The smallest pool lab: one short run per experiment.
SMALL = {
    "quick": True,
    "duration_s": 0.3,
    "worker_counts": [2],
    "pool_sizes": [2],
    "spike_min_sizes": [0],
    "spike_workers": 2,
    "timeouts_s": [0.5],
    "max_waitings": [0],
    "churn_pairs_s": [[600.0, 3600.0]],
    "checkout_n": 20,
    "preset_workers": 2,
    "recovery": False,
    "async_compare": False,
    "process_counts": [1],
    "process_workers": 2,
    "process_pool_size": 1,
    "long_outage": False,
    "pgbench": False,
}


@pytest.fixture
def external() -> Iterator[PostgresServer]:
    """A server of the test's own that the lab reaches as an external one, by DSN."""
    with create_server(ServerSettings(backend="local")) as server:
        yield server


def _tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT schemaname || '.' || tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    return [r[0] for r in rows]


def _run(params: Any, progress: Callable[[str], None] = lambda _m: None) -> Any:
    return labrun.run(LAB, params, progress=progress)


def test_the_default_workload_is_the_shipped_default_mix() -> None:
    mix = LAB.Params(quick=True, pgbench=False).mix
    assert [(q.name, q.weight) for q in mix] == [("select1", 6), ("sleep2ms", 3), ("scan20k", 1)]
    assert [q.sql.splitlines()[-1] for q in mix] == [
        "SELECT 1;",
        "SELECT pg_sleep(0.002);",
        "SELECT count(*) FROM generate_series(1, 20000);",
    ]


def test_a_bad_script_fails_the_parameters_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("SELECT 1;\n\\set x random(1,\n")
    with pytest.raises(ScriptError, match=rf"{bad}:2: "):
        LAB.Params(quick=True, pgbench=False, workload=[str(bad)])


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.slow])]
)
def test_a_custom_workload_runs_through_the_pool_lab_in_its_own_schema(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_or_skip")
    params = LAB.Params(backend=backend, **SMALL | TASKS | {"pgbench": True})
    results = _run(params)
    requests = results["requests"]
    size = requests[requests["experiment"] == "size"]
    assert set(size["query"]) == {"insert_task", "lookup_due", "get_task"}
    assert (size["error"] == "").all()
    assert set(results["pgbench"]["failed"]) == {0}
    assert results["pgbench"]["transactions"].min() > 0
    text = LAB.conclusions(results)
    assert "`insert_task` (3), `lookup_due` (5), `get_task` (2)" in text
    assert "perfkit:scheduled_tasks/seed.sql" in text


def test_an_external_server_refuses_a_writing_workload_and_names_what_it_would_create(
    external: PostgresServer,
) -> None:
    with pytest.raises(ConfigError, match="allow_writes") as info:
        LAB.Params(backend="external", dsn=external.dsn, **SMALL | TASKS)
    message = str(info.value)
    assert "schema perfkit_workload_<id>" in message
    assert "table scheduled_tasks" in message
    assert "insert_task.sql" in message
    assert external.dsn not in message


def test_an_external_server_refuses_pgbench_tables_without_allow_writes(
    external: PostgresServer,
) -> None:
    with pytest.raises(ConfigError, match="pgbench_accounts"):
        LAB.Params(backend="external", dsn=external.dsn, builtin="tpcb-like", **SMALL)


@pytest.mark.slow
def test_a_read_only_workload_runs_on_an_external_server_without_allow_writes(
    external: PostgresServer,
) -> None:
    params = LAB.Params(backend="external", dsn=external.dsn, **SMALL)
    assert not params.recovery and not params.long_outage  # an external server is not restarted
    results = _run(params)
    assert results["runs"]["requests"].sum() > 0


def test_an_external_dsn_that_does_not_answer_fails_the_parameters() -> None:
    dsn = "postgresql://someone:s3cret-pw@127.0.0.1:1/db"
    with pytest.raises(BackendUnavailable, match="does not answer") as info:
        LAB.Params(backend="external", dsn=dsn, **SMALL)
    assert "s3cret-pw" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_an_external_dsn_must_be_loopback() -> None:
    with pytest.raises(ConfigError, match=r"db\.example\.invalid"):
        LAB.Params(backend="external", dsn="postgresql://u@db.example.invalid/x", **SMALL)


def test_dsn_needs_the_external_backend() -> None:
    with pytest.raises(ConfigError, match="external"):
        LAB.Params(backend="local", dsn="postgresql://u@127.0.0.1/x", **SMALL)


def test_everything_the_lab_created_on_an_external_server_is_dropped(
    external: PostgresServer,
) -> None:
    before = _tables(external.dsn)
    for extra in (TASKS, {"builtin": "tpcb-like"}):
        params = LAB.Params(
            backend="external", dsn=external.dsn, allow_writes=True, **SMALL | extra
        )
        results = _run(params)
        assert (results["requests"]["error"] == "").any()
        assert leftover_schemas(external.dsn) == []
        assert _tables(external.dsn) == before


def test_a_failing_seed_file_names_its_line_and_leaves_nothing(
    external: PostgresServer, tmp_path: Path
) -> None:
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO scheduled_tasks (name) VALUES ('x');\n\nSELECT nonsense;\n")
    params = LAB.Params(
        backend="external",
        dsn=external.dsn,
        allow_writes=True,
        **SMALL | TASKS | {"seed_data": [str(seed)]},
    )
    with pytest.raises(SchemaError, match=rf"{seed}:1: .*null value"):
        _run(params)
    assert leftover_schemas(external.dsn) == []


def test_ctrl_c_during_the_load_drops_the_run_s_schema(external: PostgresServer) -> None:
    params = LAB.Params(backend="external", dsn=external.dsn, allow_writes=True, **SMALL | TASKS)

    def interrupt(message: str) -> None:
        if message.startswith("size"):
            assert len(leftover_schemas(external.dsn)) == 1  # made, and in use
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(params, progress=interrupt)
    assert leftover_schemas(external.dsn) == []


def test_an_executed_notebook_keeps_no_dsn_password(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell('dsn = "postgresql://me:s3cret-pw@127.0.0.1/db"'))
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    mask_file(path)
    assert "s3cret-pw" not in path.read_text()
    assert nbformat.read(path, as_version=4).cells[0].source.startswith('dsn = "postgresql://me:')
