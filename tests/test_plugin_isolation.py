"""The plugin on suites shaped like real ones: open connections, short tests, many drivers.

Release must not wait for connections a test left open; the warm pool must
fill ahead from what collection found; rollback must say when it does not
isolate; failed tests' databases can be kept; suites that share one database
per session, use pytest-postgresql's fixtures or read DATABASE_URL move in one
step. Every check runs a real pytest subprocess (through pytester) against real servers.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from pluginrun import SCHEMA, InnerPytest, databases, leftovers, test_records

from perfkit.postgres import PostgresServer, cleanup

LEAVES_CONNECTIONS_OPEN = """
import psycopg
import psycopg2

def test_psycopg2_with_block_does_not_close(perfkit_dsn):
    with psycopg2.connect(perfkit_dsn) as conn:  # commits on exit, stays open
        conn.cursor().execute("INSERT INTO items (name) VALUES ('psycopg2')")
    assert not conn.closed

def test_psycopg_connection_never_closed(perfkit_dsn):
    conn = psycopg.connect(perfkit_dsn, autocommit=True)
    conn.execute("INSERT INTO items (name) VALUES ('psycopg')")

def test_next_test_starts_clean(perfkit_db):
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (0,)
"""


#: The summary line naming a failed test's kept database.
KEPT = re.compile(r"kept database (\S+) ")


def external(server: PostgresServer) -> tuple[str, ...]:
    return ("--perfkit-backend=external", f"--perfkit-dsn={server.dsn}")


@pytest.mark.parametrize("isolation", ["template", "warm-pool"])
def test_connections_left_open_by_two_drivers_neither_block_nor_leak(
    inner_pytest: InnerPytest, pg_server: PostgresServer, isolation: str
) -> None:
    result, document = inner_pytest.run(
        LEAVES_CONNECTIONS_OPEN, f"--perfkit-isolation={isolation}", *external(pg_server)
    )
    result.assert_outcomes(passed=3)
    prefix = {r["dbname"].rsplit("_", 1)[0] for r in test_records(document)}.pop()
    assert not [d for d in databases(pg_server) if d.startswith(prefix)]
    drops = {r["dbname"]: r["seconds"] for r in document["records"] if r["event"] == "drop"}
    for record in test_records(document):
        # The drop (which terminates the open sessions) ran off the test's path.
        assert record["dbname"] in drops
        assert record["release_s"] < drops[record["dbname"]]


FIVE_TESTS_LOOK_AT_THE_POOL = """
import time
import pytest

@pytest.mark.parametrize("i", range(5))
def test_pool(perfkit_db, perfkit_session, i):
    pool = perfkit_session.strategy("warm-pool")
    if i == 0:  # the other four were filled ahead, without anyone waiting for them
        deadline = time.monotonic() + 20
        while pool.ready.qsize() < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.ready.qsize() == 4
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (0,)
    perfkit_db.execute("INSERT INTO items (name) VALUES ('x')")
    perfkit_db.commit()

def test_without_database():
    pass
"""


def test_warm_pool_fills_ahead_for_the_collected_tests_and_no_further(
    inner_pytest: InnerPytest,
) -> None:
    result, document = inner_pytest.run(
        FIVE_TESTS_LOOK_AT_THE_POOL,
        "--perfkit-isolation=warm-pool",
        "--perfkit-backend=local",
        "--perfkit-pool-size=8",
    )
    result.assert_outcomes(passed=6)
    clones = [r for r in document["records"] if r["event"] == "pool_clone"]
    assert len(clones) == 5  # five tests asked, the pool holds up to 8: five clones
    assert leftovers(document) == []


def test_terminal_summary_reports_waits_and_refill_against_consumption(
    inner_pytest: InnerPytest,
) -> None:
    result, _ = inner_pytest.run(
        FIVE_TESTS_LOOK_AT_THE_POOL,
        "--perfkit-isolation=warm-pool",
        "--perfkit-backend=local",
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        ["warm-pool: 5 tests on local, * waited for a database*refill * vs consumption *"]
    )


ROLLBACK_ESCAPE = """
import os
import psycopg

def test_writes_through_its_own_connection(perfkit_db):
    dsn = os.environ["LEAKY_DSN_TEMPLATE"].format(
        dbname=perfkit_db.info.dbname, port=perfkit_db.info.port
    )
    with psycopg.connect(dsn, autocommit=True) as own:
        own.execute("INSERT INTO items (name) VALUES ('escaped')")
"""


def _leaky_env(server: PostgresServer) -> dict[str, str]:
    template = server.dsn_for("DBNAME").replace("DBNAME", "{dbname}")
    return {"LEAKY_DSN_TEMPLATE": template}


def test_rollback_guard_warns_when_code_under_test_commits_through_another_connection(
    inner_pytest: InnerPytest, pg_server: PostgresServer
) -> None:
    result, _ = inner_pytest.run(
        ROLLBACK_ESCAPE,
        "--perfkit-isolation=rollback",
        *external(pg_server),
        env=_leaky_env(pg_server),
    )
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*IsolationWarning: rollback isolation did not isolate *test_writes_through_its_own*"]
    )


def test_rollback_guard_fail_turns_the_escape_into_an_error(
    inner_pytest: InnerPytest, pg_server: PostgresServer
) -> None:
    result, _ = inner_pytest.run(
        ROLLBACK_ESCAPE,
        "--perfkit-isolation=rollback",
        "--perfkit-rollback-guard=fail",
        *external(pg_server),
        env=_leaky_env(pg_server),
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["E *IsolationBroken: rollback isolation did not isolate *"])


def test_rollback_guard_is_silent_when_the_test_uses_only_its_connection(
    inner_pytest: InnerPytest,
) -> None:
    tests = """
    def test_uses_perfkit_db(perfkit_db):
        perfkit_db.execute("INSERT INTO items (name) VALUES ('inside')")
        perfkit_db.commit()
    """
    result, _ = inner_pytest.run(
        tests, "--perfkit-isolation=rollback", "--perfkit-backend=local", "-W", "error"
    )
    result.assert_outcomes(passed=1, warnings=0)


FAILS_AFTER_WRITING = """
def test_fails_after_writing(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('evidence')")
    perfkit_db.commit()
    assert False, "on purpose"
"""


def test_keep_failed_keeps_the_database_and_prints_its_masked_dsn(
    inner_pytest: InnerPytest, pg_server: PostgresServer
) -> None:
    result, _ = inner_pytest.run(FAILS_AFTER_WRITING, "--perfkit-keep-failed", *external(pg_server))
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(
        [r"kept database \S+ of failed test \S+::test_fails_after_writing \(after the run\): "]
    )
    assert pg_server.settings.password not in "\n".join([*result.outlines, *result.errlines])
    (kept,) = [m[1] for m in map(KEPT.match, result.outlines) if m]
    try:
        with psycopg.connect(pg_server.dsn_for(kept)) as conn:
            assert conn.execute("SELECT name FROM items").fetchall() == [("evidence",)]
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{kept}" WITH (FORCE)')


def test_without_keep_failed_a_failed_tests_database_is_dropped(
    inner_pytest: InnerPytest, pg_server: PostgresServer
) -> None:
    before = databases(pg_server)
    result, _ = inner_pytest.run(FAILS_AFTER_WRITING, *external(pg_server))
    result.assert_outcomes(failed=1)
    result.stdout.no_fnmatch_line("kept database *")
    assert databases(pg_server) == before


SESSION_DATABASE = """
import psycopg

def test_1_writes(perfkit_session_dsn):
    with psycopg.connect(perfkit_session_dsn) as conn:
        conn.execute("INSERT INTO items (name) VALUES ('shared')")

def test_2_sees_the_first_tests_row(perfkit_session_dsn):
    with psycopg.connect(perfkit_session_dsn) as conn:
        assert conn.execute("SELECT name FROM items").fetchall() == [("shared",)]
"""


def test_session_dsn_is_one_migrated_database_for_the_whole_session(
    inner_pytest: InnerPytest,
) -> None:
    result, document = inner_pytest.run(SESSION_DATABASE, "--perfkit-backend=local")
    result.assert_outcomes(passed=2)
    assert leftovers(document) == []


PYTEST_POSTGRESQL_SUITE = """
def test_postgresql_is_a_connection_to_a_fresh_database(postgresql):
    assert postgresql.execute("SELECT count(*) FROM items").fetchone() == (0,)
    postgresql.execute("INSERT INTO items (name) VALUES ('x')")
    postgresql.commit()

def test_and_again(postgresql):
    assert postgresql.execute("SELECT count(*) FROM items").fetchone() == (0,)

def test_postgresql_proc_describes_the_server(postgresql_proc):
    import psycopg
    with psycopg.connect(
        host=postgresql_proc.host, port=postgresql_proc.port, user=postgresql_proc.user,
        password=postgresql_proc.password, dbname=postgresql_proc.dbname,
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert postgresql_proc.version.split(".")[0].isdigit()
"""


def test_a_pytest_postgresql_suite_switches_with_one_conftest_line(
    inner_pytest: InnerPytest,
) -> None:
    inner_pytest.pytester.makeconftest(
        "from perfkit.lifecycle.pytest_postgresql import postgresql, postgresql_proc  # noqa\n"
    )
    result, _ = inner_pytest.run(PYTEST_POSTGRESQL_SUITE, "--perfkit-backend=local")
    result.assert_outcomes(passed=3)


DATABASE_URL_SUITE = """
import os
import psycopg
import pytest

@pytest.fixture(autouse=True)
def database_url(perfkit_dsn, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", perfkit_dsn)

def app_count():  # application code that reads its configuration from the environment
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]

def test_1(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('x')")
    perfkit_db.commit()
    assert app_count() == 1

def test_2():
    assert app_count() == 0
"""


def test_a_database_url_suite_gets_a_fresh_database_per_test(inner_pytest: InnerPytest) -> None:
    result, _ = inner_pytest.run(DATABASE_URL_SUITE, "--perfkit-backend=local")
    result.assert_outcomes(passed=2)


def test_a_bad_ini_value_names_the_ini_file(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        "def test_x(perfkit_db):\n    pass\n", ini="perfkit_isolation = snapshot\n"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: perfkit: perfkit_isolation in pytest.ini: *'snapshot'*"])
    assert document == {}


def test_a_bad_boolean_option_names_the_command_line(inner_pytest: InnerPytest) -> None:
    result, _ = inner_pytest.run("def test_x():\n    pass\n", "--perfkit-ram=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: perfkit: --perfkit-ram (command line): must be true or false*'maybe'"]
    )


def test_a_run_removes_what_a_killed_run_left_behind(inner_pytest: InnerPytest) -> None:
    """SIGKILL leaves a server; the next plugin session sweeps it (its owner is dead)."""
    first = inner_pytest.pytester.mkdir("first")
    (first / "test_hang.py").write_text(
        "import time\n\ndef test_hang(perfkit_db):\n    time.sleep(120)\n"
    )
    (first / "schema.sql").write_text(SCHEMA)
    with inner_pytest.environment():
        proc = inner_pytest.pytester.popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "--perfkit-backend=local", f"--perfkit-migrations={first / 'schema.sql'}",
             str(first / "test_hang.py")],
            cwd=first, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        owned: list[Path] = []
        while not owned and time.monotonic() < deadline:
            owned = [p for p in cleanup.owned_tempdirs() if cleanup.owner_of(p) == proc.pid]
            time.sleep(0.1)
        assert owned, "the inner run never started its server"
        time.sleep(1.0)  # let it finish the template
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert all(p.exists() for p in owned)  # a hard kill cleans nothing up
    result, _ = inner_pytest.run("def test_x(perfkit_db):\n    pass\n", "--perfkit-backend=local")
    result.assert_outcomes(passed=1)
    assert not any(p.exists() for p in owned)
