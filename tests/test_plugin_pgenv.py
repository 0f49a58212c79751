"""Suites that find their server through libpq's PG* variables (``--perfkit-export-pg-env``).

The inner suites connect with no arguments at all: psycopg 3, psycopg2 and a
``psql`` subprocess read only the variables. The outer environment carries a
CI's leftovers (a ``PGPASSWORD``, a ``PGHOST`` and ``PGDATABASE`` of another
server) that the plugin must replace or unset.
"""

from __future__ import annotations

import pytest
from pluginrun import InnerPytest, leftovers

from perfkit.lifecycle.pgenv import pg_env

pytestmark = pytest.mark.local

#: What a CI job exports for its own server; none of it may reach the tests.
CI_LEFTOVERS = {
    "PGHOST": "/var/run/postgresql",
    "PGPORT": "5432",
    "PGUSER": "ci",
    "PGPASSWORD": "left-over-from-ci",
    "PGDATABASE": "ci_db",
}

PG_VARIABLE_SUITE = """
import os
import subprocess

import psycopg
import psycopg2
import pytest


@pytest.fixture(scope="session")
def suite_session_database():
    # the suite's own session fixture: it connects before any test, with PG* only
    with psycopg.connect() as conn:
        return conn.execute("SELECT current_database()").fetchone()[0]


def _dbname(dsn):
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


def test_psycopg_reads_the_tests_database(perfkit_dsn, suite_session_database):
    assert "session" in suite_session_database
    with psycopg.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (_dbname(perfkit_dsn),)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (0,)
        conn.execute("INSERT INTO items (name) VALUES ('psycopg')")


def test_psycopg2_reads_the_tests_database(perfkit_dsn):
    conn = psycopg2.connect("")
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_database(), count(*) FROM items")
        assert cur.fetchone() == (_dbname(perfkit_dsn), 0)
        cur.execute("INSERT INTO items (name) VALUES ('psycopg2')")
        conn.commit()
    finally:
        conn.close()


def test_psql_reads_the_tests_database(perfkit_dsn):
    out = subprocess.run(
        ["psql", "-XAtc", "SELECT current_database(), count(*) FROM items"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    assert out.strip() == f"{_dbname(perfkit_dsn)}|0"


def test_what_the_unix_socket_dsn_lacks_is_unset(perfkit_dsn):
    assert "PGPASSWORD" not in os.environ
    assert os.path.isdir(os.environ["PGHOST"])  # the socket directory


def test_a_test_without_a_lease_sees_the_session_database(suite_session_database):
    with psycopg.connect() as conn:
        assert conn.execute("SELECT current_database()").fetchone() == (suite_session_database,)
"""

RESTORED_CONFTEST = """
import json
import os

def pytest_unconfigure(config):
    with open("env_after.json", "w") as f:
        json.dump({k: v for k, v in os.environ.items() if k.startswith("PG")}, f)
"""


@pytest.mark.parametrize("isolation", ["template", "warm-pool"])
def test_a_pg_variable_suite_passes_under_the_export_option(
    inner_pytest: InnerPytest, isolation: str
) -> None:
    result, document = inner_pytest.run(
        PG_VARIABLE_SUITE,
        f"--perfkit-isolation={isolation}",
        "--perfkit-backend=local",
        "--perfkit-export-pg-env",
        env=CI_LEFTOVERS,
    )
    result.assert_outcomes(passed=5)
    assert leftovers(document) == []


def test_a_pg_variable_suite_passes_with_two_xdist_workers(inner_pytest: InnerPytest) -> None:
    result, document = inner_pytest.run(
        PG_VARIABLE_SUITE,
        "-n",
        "2",
        "--perfkit-backend=local",
        env=CI_LEFTOVERS,
        ini="perfkit_export_pg_env = true\n",
    )
    result.assert_outcomes(passed=5)
    assert {w["worker"] for w in document["workers"]} == {"gw0", "gw1"}
    assert leftovers(document) == []


def test_the_variables_are_restored_when_the_session_ends(inner_pytest: InnerPytest) -> None:
    import json

    inner_pytest.pytester.makeconftest(RESTORED_CONFTEST)
    result, _ = inner_pytest.run(
        "def test_plain():\n    pass\n",
        "--perfkit-backend=local",
        "--perfkit-export-pg-env",
        env=CI_LEFTOVERS,
    )
    result.assert_outcomes(passed=1)
    after = json.loads((inner_pytest.path / "env_after.json").read_text())
    assert {k: after.get(k) for k in CI_LEFTOVERS} == CI_LEFTOVERS


OWN_TEMPLATE_SUITE = """
import itertools

import psycopg
import pytest
from psycopg import sql

_numbers = itertools.count()


@pytest.fixture(scope="session")
def own_template():
    # the suite's own session fixture builds its template on perfkit's server, through PG*
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute("CREATE DATABASE suite_tpl")
    with psycopg.connect(dbname="suite_tpl", autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (id serial PRIMARY KEY, state text)")
    yield "suite_tpl"


@pytest.fixture
def own_database(own_template):
    # ... and clones it per test, as it does natively
    name = f"suite_db_{next(_numbers)}"
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(own_template)
            )
        )
    yield name
    with psycopg.connect(dbname="postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.mark.parametrize("i", range(3))
def test_each_test_starts_with_an_empty_queue(own_database, i):
    with psycopg.connect(dbname=own_database) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        conn.execute("INSERT INTO jobs (state) VALUES ('queued')")
"""


def test_a_suite_that_clones_its_own_template_keeps_its_fixture_on_perfkits_server(
    inner_pytest: InnerPytest,
) -> None:
    result, document = inner_pytest.run(
        OWN_TEMPLATE_SUITE,
        "--perfkit-backend=local",
        "--perfkit-export-pg-env",
        env=CI_LEFTOVERS,
        schema=None,
    )
    result.assert_outcomes(passed=3)
    assert document["workers"][0]["servers_started"] == 1
    assert leftovers(document) == []


def test_pg_env_of_a_unix_socket_dsn_unsets_the_password() -> None:
    env = pg_env("postgresql://perfkit@/pk_1?host=/dev/shm/perfkit-pg-1/socket&port=5433")
    assert env == {
        "PGHOST": "/dev/shm/perfkit-pg-1/socket",
        "PGPORT": "5433",
        "PGUSER": "perfkit",
        "PGPASSWORD": None,
        "PGDATABASE": "pk_1",
    }


def test_pg_env_of_a_tcp_dsn_carries_every_part() -> None:
    env = pg_env("postgresql://perfkit:s3cret@127.0.0.1:5544/pk_2")
    assert env == {
        "PGHOST": "127.0.0.1",
        "PGPORT": "5544",
        "PGUSER": "perfkit",
        "PGPASSWORD": "s3cret",
        "PGDATABASE": "pk_2",
    }
