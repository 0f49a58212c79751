"""Where the short suite's tests get their database: perfkit's plugin or one shared database.

``PERFKIT_SUITE_MODE`` picks the mode; the tests are the same in both:

* ``perfkit`` (default): the ``dsn`` fixture is the plugin's ``perfkit_dsn``, a
  fresh database per test under the plugin's isolation strategy.
* ``native``: the suite isolates itself, as suites on one shared database do.
  One database per session (per xdist worker) is created on the server at
  ``PERFKIT_SUITE_DSN`` and migrated (or, without that variable, the plugin's
  ``perfkit_session_dsn`` is used); tests that need scratch tables create
  ``TEMP`` tables, and after every test the rows it committed to the app's
  tables are deleted.

``PERFKIT_SUITE_TESTS`` scales the suite (default 250 tests); ``PERFKIT_SUITE_SEED``
seeds the test data.
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from shop import DRIVERS

MODE_ENV = "PERFKIT_SUITE_MODE"
SERVER_ENV = "PERFKIT_SUITE_DSN"
TESTS_ENV = "PERFKIT_SUITE_TESTS"
MODES = ("perfkit", "native")
FULL_TESTS = 250
#: Test cases per driver at full size, by test function (sums to FULL_TESTS / 2).
WEIGHTS = {
    "test_rows_round_trip_through_a_temp_table": 25,
    "test_update_touches_only_matching_rows": 20,
    "test_unique_violation_leaves_the_connection_usable": 15,
    "test_order_total_joins_lines_and_products": 20,
    "test_customer_history_is_newest_first": 15,
    "test_stock_is_never_oversold": 15,
    "test_other_connections_see_only_committed_orders": 15,
}
#: What a test may have committed to the shared database, deleted after it (native mode).
CLEANUP = "DELETE FROM order_lines; DELETE FROM orders; DELETE FROM products; DELETE FROM customers"
MIGRATIONS = Path(__file__).parent / "migrations.sql"


def mode() -> str:
    value = os.environ.get(MODE_ENV, "perfkit")
    if value not in MODES:
        raise pytest.UsageError(f"{MODE_ENV}={value!r}; choose one of {', '.join(MODES)}")
    return value


def size() -> int:
    value = os.environ.get(TESTS_ENV, str(FULL_TESTS))
    if not value.isdigit() or int(value) < 1:
        raise pytest.UsageError(f"{TESTS_ENV}={value!r} must be a positive integer")
    return int(value)


def pytest_configure(config: pytest.Config) -> None:
    mode()
    size()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test function runs on both drivers, ``WEIGHTS`` cases each (scaled by size).

    Cases differ in their data: ``rng`` is seeded with the test id (``driver-case``).
    """
    if "driver" not in metafunc.fixturenames:
        return
    weight = WEIGHTS[metafunc.function.__name__]
    cases = max(1, round(weight * size() / FULL_TESTS))
    metafunc.parametrize(
        "driver",
        [driver for driver in DRIVERS for _ in range(cases)],
        ids=[f"{driver}-{case}" for driver in DRIVERS for case in range(cases)],
    )


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("PERFKIT_SUITE_SEED", "0"))
    return random.Random(f"{seed}:{request.node.nodeid}")


@pytest.fixture(scope="session")
def shared_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """Native mode: the session's one database, migrated, dropped at the end."""
    server = os.environ.get(SERVER_ENV)
    if not server:
        try:
            session_dsn = request.getfixturevalue("perfkit_session_dsn")
        except pytest.FixtureLookupError:
            raise pytest.UsageError(
                f"native mode needs {SERVER_ENV} (a server DSN) or the perfkit plugin's "
                "perfkit_session_dsn fixture"
            ) from None
        yield session_dsn
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"short_{worker}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        dsn = make_conninfo(server, dbname=name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(MIGRATIONS.read_bytes())
        yield dsn
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def cleaner(shared_dsn: str) -> Iterator[psycopg.Connection]:
    """Native mode: the session connection that cleans up after each test."""
    with psycopg.connect(shared_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        yield conn


@pytest.fixture
def dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """The DSN of the test's database: fresh per test (perfkit) or shared (native)."""
    if mode() == "perfkit":
        yield request.getfixturevalue("perfkit_dsn")
        return
    cleaner = request.getfixturevalue("cleaner")
    yield request.getfixturevalue("shared_dsn")
    cleaner.execute(CLEANUP)
