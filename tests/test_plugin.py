"""The pytest plugin, driven the way users drive it: real pytest subprocesses.

Each test writes a small test module into a pytester project and runs pytest
there in a subprocess (the plugin loads through its entry point), then reads
the outcomes, the exit code and the plugin's timings document.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pluginrun import (
    ISOLATING,
    SCHEMA,
    WRITE_THEN_LOOK,
    InnerPytest,
    databases,
    leftovers,
    test_records,
)
from sampling import sampled

from perfkit.lifecycle.registry import NAMES
from perfkit.postgres import PostgresServer


def test_importing_the_plugin_loads_no_database_code() -> None:
    code = (
        "import sys, perfkit.lifecycle.plugin; "
        "print([m for m in sys.modules if m.split('.')[0] in ('psycopg', 'pandas', 'docker') "
        "or m.startswith('perfkit.postgres')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_tests_without_perfkit_fixtures_start_nothing(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run("def test_plain():\n    assert True\n")
    result.assert_outcomes(passed=1)
    assert document["workers"][0]["servers_started"] == 0
    assert document["records"] == []


def test_unknown_isolation_option_is_a_usage_error_listing_the_names(
    inner_pytest: InnerPytest,
) -> None:
    result, document = inner_pytest.run(WRITE_THEN_LOOK, "--perfkit-isolation=per-test-container")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: perfkit: *'per-test-container'*; choose one of {', '.join(NAMES)}"]
    )
    assert document == {}


def test_unknown_marker_name_is_a_usage_error(inner_pytest: InnerPytest) -> None:
    tests = """
    import pytest

    @pytest.mark.perfkit_isolation("snapshot")
    def test_marked(perfkit_db):
        pass
    """
    result, _ = inner_pytest.run(tests, "--perfkit-backend=local")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *'snapshot'*template*"])


@pytest.mark.parametrize("isolation", ISOLATING)
def test_state_written_by_one_test_is_invisible_to_the_next(
    inner_pytest: InnerPytest, isolation: str
) -> None:
    result, document = inner_pytest.run(
        WRITE_THEN_LOOK, f"--perfkit-isolation={isolation}", "--perfkit-backend=local"
    )
    result.assert_outcomes(passed=2)
    assert [r["strategy"] for r in test_records(document)] == [isolation, isolation]


def test_without_isolation_the_second_test_sees_the_first_ones_row(
    inner_pytest: InnerPytest,
) -> None:
    result, _ = inner_pytest.run(
        WRITE_THEN_LOOK, "--perfkit-isolation=none", "--perfkit-backend=local"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_inner.py::test_2_sees_nothing - assert (1,) == (0,)"])


XDIST_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_starts_clean(perfkit_db, i):
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (0,)
    perfkit_db.execute("INSERT INTO items (name) VALUES ('x')")
    perfkit_db.commit()
"""


# Two strategies in the default run (a shared server, a server per test); every one with -m slow.
@pytest.mark.parametrize("isolation", sampled(ISOLATING, ["template", "per-test-server"]))
def test_two_xdist_workers_each_get_their_own_server_and_names(
    inner_pytest: InnerPytest, isolation: str
) -> None:
    result, document = inner_pytest.run(
        XDIST_TESTS,
        "-n",
        "2",
        f"--perfkit-isolation={isolation}",
        "--perfkit-backend=local",
    )
    result.assert_outcomes(passed=6)
    workers = {w["worker"]: w for w in document["workers"]}
    assert set(workers) == {"gw0", "gw1"}
    records = test_records(document)
    assert len(records) == 6
    for record in records:
        assert f"_{record['worker']}_" in record["dbname"] or isolation == "per-test-server"
    expected = 6 if isolation == "per-test-server" else 2
    assert sum(w["servers_started"] for w in workers.values()) == expected
    assert leftovers(document) == []


FAILING_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(4))
def test_fails_after_writing(perfkit_dsn, perfkit_db, i):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('x')")
    perfkit_db.commit()
    assert i % 2 == 0, "failing on purpose"

def test_errors_in_the_middle(perfkit_db):
    raise RuntimeError("boom")
"""


@pytest.mark.parametrize("isolation", sampled(["template", "warm-pool", "truncate"], ["template"]))
def test_failed_runs_leave_no_database_on_an_external_server(
    inner_pytest: InnerPytest, fresh_pg_server: PostgresServer, isolation: str
) -> None:
    before = databases(fresh_pg_server)
    result, document = inner_pytest.run(
        FAILING_TESTS,
        "-n",
        "2",
        f"--perfkit-isolation={isolation}",
        env={"PERFKIT_DSN": fresh_pg_server.dsn},
    )
    result.assert_outcomes(passed=2, failed=3)
    assert document["workers"][0]["settings"]["backend"] == "external"
    output = "\n".join([*result.outlines, *result.errlines, json.dumps(document)])
    assert fresh_pg_server.settings.password not in output
    assert databases(fresh_pg_server) == before


def test_failed_runs_leave_no_local_server_behind(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        FAILING_TESTS,
        "-n",
        "2",
        "--perfkit-isolation=template",
        "--perfkit-backend=local",
    )
    result.assert_outcomes(passed=2, failed=3)
    assert leftovers(document) == []


def test_failing_migration_shows_the_sql_and_leaves_nothing(
    inner_pytest: InnerPytest, fresh_pg_server: PostgresServer
) -> None:
    before = databases(fresh_pg_server)
    schema = SCHEMA + "CREATE INDEX items_missing ON items (no_such_column);\n"
    result, document = inner_pytest.run(
        WRITE_THEN_LOOK,
        "--perfkit-isolation=template",
        schema=schema,
        env={"PERFKIT_DSN": fresh_pg_server.dsn},
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "E *MigrationError: migration failed at *schema.sql:2 (statement 2): *",
            "E *SQL: CREATE INDEX items_missing ON items (no_such_column)",
        ]
    )
    result.stdout.no_fnmatch_line("*template_build*")
    assert databases(fresh_pg_server) == before
    assert not [r for r in document["records"] if r["event"] == "test"]


def test_failing_migration_on_a_local_backend_stops_the_server(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        WRITE_THEN_LOOK,
        "--perfkit-isolation=rollback",
        "--perfkit-backend=local",
        schema="CREATE TABLE items (id int REFERENCES nowhere (id));\n",
    )
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["E *SQL: CREATE TABLE items (id int REFERENCES nowhere (id))"])
    assert document["workers"][0]["servers_started"] == 1  # started once, not per test
    assert leftovers(document) == []


def test_marker_overrides_the_strategy_for_one_test(inner_pytest: InnerPytest) -> None:
    tests = """
    import pytest

    def test_default(perfkit_db):
        pass

    @pytest.mark.perfkit_isolation("template")
    def test_needs_a_dsn(perfkit_dsn):
        import psycopg
        with psycopg.connect(perfkit_dsn) as conn:
            assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
    """
    result, document = inner_pytest.run(
        tests, "--perfkit-isolation=rollback", "--perfkit-backend=local"
    )
    result.assert_outcomes(passed=2)
    assert [r["strategy"] for r in test_records(document)] == ["rollback", "template"]


def test_dsn_fixture_under_rollback_is_one_usage_error_at_collection(
    inner_pytest: InnerPytest,
) -> None:
    tests = "".join(f"def test_wants_dsn_{i}(perfkit_dsn):\n    pass\n" for i in range(30))
    tests += "def test_fine(perfkit_db):\n    pass\n"
    result, document = inner_pytest.run(
        tests, "--perfkit-isolation=rollback", "--perfkit-backend=local"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("cannot hand out a DSN") == 1
    assert "which 30 test(s) ask for" in err
    assert "test_inner.py::test_wants_dsn_0 (perfkit_dsn)" in err
    assert "... and 20 more" in err and "test_fine" not in err
    assert "choose template, warm-pool, verified, truncate or per-test-server" in err
    assert document["records"] == [] and document["phases"] == []  # no test, no server ran


def test_a_marker_that_gives_a_dsn_test_a_dsn_strategy_is_no_usage_error(
    inner_pytest: InnerPytest,
) -> None:
    tests = (
        "import pytest\n"
        "@pytest.mark.perfkit_isolation('template')\n"
        "def test_wants_dsn(perfkit_dsn):\n    pass\n"
    )
    result, _ = inner_pytest.run(tests, "--perfkit-isolation=rollback", "--perfkit-backend=local")
    result.assert_outcomes(passed=1)


def test_ini_keys_configure_the_plugin(inner_pytest: InnerPytest) -> None:
    inner_pytest.pytester.makefile(".sql", schema=SCHEMA)
    ini = """
    perfkit_isolation = truncate
    perfkit_backend = local
    perfkit_migrations = schema.sql
    """
    result, document = inner_pytest.run(WRITE_THEN_LOOK, ini=ini, schema=None)
    result.assert_outcomes(passed=2)
    assert {r["strategy"] for r in test_records(document)} == {"truncate"}


def test_timings_file_has_setup_and_teardown_for_every_test(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        WRITE_THEN_LOOK, "--perfkit-isolation=template", "--perfkit-backend=local"
    )
    result.assert_outcomes(passed=2)
    phases = {(p["test"].split("::")[-1], p["when"]) for p in document["phases"]}
    for name in ("test_1_writes", "test_2_sees_nothing"):
        assert {(name, "setup"), (name, "call"), (name, "teardown")} <= phases
    events = {r["event"] for r in document["records"]}
    assert events >= {"server_start", "template_build", "session_setup", "test"}
    assert document["session_s"] > 0


@pytest.mark.docker
@pytest.mark.parametrize("isolation", sampled(["per-test-server", "template"], ["per-test-server"]))
def test_docker_backend_with_two_workers_leaves_no_container(
    inner_pytest: InnerPytest, docker_or_skip: None, isolation: str
) -> None:
    result, document = inner_pytest.run(
        XDIST_TESTS,
        "-n",
        "2",
        f"--perfkit-isolation={isolation}",
        "--perfkit-backend=docker",
    )
    result.assert_outcomes(passed=6)
    assert {w["settings"]["backend"] for w in document["workers"]} == {"docker"}
    assert leftovers(document) == []


def test_an_interrupted_run_still_removes_its_servers_and_databases(
    inner_pytest: InnerPytest,
) -> None:
    tests = """
    def test_1(perfkit_db):
        pass

    def test_2_interrupts(perfkit_db):
        raise KeyboardInterrupt

    def test_3_never_runs(perfkit_db):
        pass
    """
    result, document = inner_pytest.run(
        tests, "--perfkit-isolation=warm-pool", "--perfkit-backend=local"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert document["workers"][0]["servers_started"] == 1
    assert leftovers(document) == []


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("--perfkit-backend=podman", "podman"),
        ("--perfkit-pool-size=many", "--perfkit-pool-size (command line): must be an integer"),
        ("--perfkit-template-strategy=snapshot", "template_strategy"),
        ("--perfkit-migrations=/nonexistent/schema.sql", "cannot be read"),
    ],
)
def test_bad_settings_are_usage_errors_before_any_test_runs(
    inner_pytest: InnerPytest, option: str, needle: str
) -> None:
    result, document = inner_pytest.run(WRITE_THEN_LOOK, option, schema=None)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: perfkit: *{needle}*"])
    assert document == {}


def test_header_names_backend_version_isolation_and_reuse(inner_pytest: InnerPytest) -> None:
    result, _ = inner_pytest.run(
        WRITE_THEN_LOOK, "--perfkit-backend=local", "--perfkit-isolation=warm-pool"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "perfkit: backend local (PostgreSQL 1*.*), isolation warm-pool, reuse off",
            "warm-pool: 2 tests on local, * waited for a database*",
        ]
    )


def test_no_header_line_when_no_selected_test_needs_a_database(inner_pytest: InnerPytest) -> None:
    tests = WRITE_THEN_LOOK + "\ndef test_plain():\n    pass\n"
    result, document = inner_pytest.run(tests, "--perfkit-backend=local", "-k", "plain")
    result.assert_outcomes(passed=1)
    assert "perfkit: backend" not in result.stdout.str()
    assert document["workers"][0]["servers_started"] == 0


def test_xdist_controller_header_names_the_configured_settings(inner_pytest: InnerPytest) -> None:
    # -v cancels the inner run's -q: pytest shows no header under -q
    result, _ = inner_pytest.run(WRITE_THEN_LOOK, "--perfkit-backend=local", "-n", "2", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "perfkit: backend local, isolation template, reuse off (one server per xdist worker*",
            "template: * tests on local, *",
        ]
    )


def test_dsn_fixture_under_rollback_with_xdist_is_one_collection_error(
    inner_pytest: InnerPytest,
) -> None:
    tests = "".join(f"def test_wants_dsn_{i}(perfkit_dsn):\n    pass\n" for i in range(6))
    result, _ = inner_pytest.run(
        tests, "--perfkit-isolation=rollback", "--perfkit-backend=local", "-n", "2"
    )
    assert result.ret != 0
    out = result.stdout.str()
    assert out.count("cannot hand out a DSN") <= 2  # the error line and its short summary
    assert "which 6 test(s) ask for" in out
    assert "passed" not in out and "INTERNALERROR" not in out
