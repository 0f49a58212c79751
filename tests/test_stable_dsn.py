"""``verified`` with a stable DSN: one database name per worker, checked and reset between tests.

The application's idle connections stay open across tests, so the check cannot
trust the statistics counters (an idle backend may hold them back for up to
10 s); these tests write from such connections and release at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pluginrun import InnerPytest, leftovers

from perfkit.lifecycle import equals_template
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.strategies import Lease
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server

NAME = "verified"
#: Three tables, two with seed rows, and their sequences.
SCHEMA = """
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL UNIQUE, balance int NOT NULL);
INSERT INTO accounts (name, balance) SELECT 'a' || g, g FROM generate_series(1, 50) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, account_id int REFERENCES accounts, amount int);
INSERT INTO orders (account_id, amount) SELECT g, g * 10 FROM generate_series(1, 50) g;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
"""
SEED_ROWS = "SELECT count(*) FROM accounts"


def _stable_session(server: PostgresServer, tmp_path: Path, **kw: object) -> IsolationSession:
    migrations = tmp_path / "schema.sql"
    migrations.write_text(SCHEMA)
    settings = IsolationSettings(
        isolation=NAME,
        backend="external",
        dsn=server.dsn,
        migrations=(migrations,),
        pool_size=2,
        stable_dsn=True,
        **kw,  # type: ignore[arg-type]
    )
    return IsolationSession(settings)


@pytest.fixture
def session(pg_server: PostgresServer, tmp_path: Path) -> Iterator[IsolationSession]:
    with _stable_session(pg_server, tmp_path) as made:
        yield made


def _run(session: IsolationSession, test_id: str, *statements: str) -> Lease:
    """One test: acquire, run ``statements`` on the test's connection (committed), release."""
    lease = session.acquire(NAME, test_id)
    conn = session.connection(lease)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    session.release(lease)
    return lease


def _events(session: IsolationSession) -> list[str]:
    return [r["event"] for r in session.records if r.get("stable")]


def _equal(session: IsolationSession, dbname: str) -> bool:
    server = session.shared_server
    return equals_template(server, dbname, session.template, sessions_allowed=True).equal


def _rows(conn: psycopg.Connection, query: str = SEED_ROWS) -> int:
    row = conn.execute(query).fetchone()
    conn.rollback()
    assert row is not None
    return int(row[0])


def test_every_test_of_a_worker_gets_the_same_database_name(session: IsolationSession) -> None:
    names = {_run(session, f"t{i}", "SELECT 1").dbname for i in range(4)}
    assert len(names) == 1
    assert _events(session) == ["pool_reuse"] * 4


def test_a_kept_idle_connection_survives_and_sees_the_reset_data(
    session: IsolationSession,
) -> None:
    first = session.acquire(NAME, "first")
    kept = psycopg.connect(first.require_dsn())  # the application's cached connection
    try:
        before = _rows(kept, "SELECT count(*) FROM orders")
        kept.execute("DELETE FROM orders WHERE id > 10")
        kept.commit()
        session.release(first)
        second = _run(session, "second")
        assert second.dbname == first.dbname
        assert not kept.closed and not kept.broken
        assert _rows(kept, "SELECT count(*) FROM orders") == before == 50
        assert _events(session) == ["pool_reset", "pool_reuse"]
    finally:
        kept.close()


def test_a_write_from_a_kept_connection_just_before_release_is_reset(
    session: IsolationSession,
) -> None:
    """Well inside the statistics flush interval: the counters have not moved yet."""
    lease = session.acquire(NAME, "writer")
    kept = psycopg.connect(lease.require_dsn(), autocommit=True)
    try:
        kept.execute("UPDATE accounts SET balance = 0 WHERE id = 7")
        kept.execute("INSERT INTO notes (body) VALUES ('left behind')")
        session.release(lease)
        assert _events(session) == ["pool_reset"]
        assert _equal(session, lease.dbname)
        assert not kept.closed
    finally:
        kept.close()


def test_uncommitted_writes_of_a_kept_connection_are_ended_and_not_visible(
    session: IsolationSession,
) -> None:
    lease = session.acquire(NAME, "open transaction")
    kept = psycopg.connect(lease.require_dsn())
    try:
        kept.execute("INSERT INTO notes (body) VALUES ('uncommitted')")
        kept.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        session.release(lease)
        with pytest.raises(psycopg.OperationalError):
            kept.execute("SELECT 1")
        assert _equal(session, lease.dbname)
        nxt = _run(session, "next", "SELECT count(*) FROM accounts")  # the lock went with it
        assert nxt.dbname == lease.dbname
    finally:
        kept.close()


def test_ddl_recreates_the_database_under_the_same_name(session: IsolationSession) -> None:
    first = _run(session, "ddl", "CREATE TABLE left_behind (x int)")
    second = _run(session, "after")
    assert second.dbname == first.dbname
    assert _events(session)[0] == "pool_dirty"
    assert _equal(session, second.dbname)


def test_a_sequence_moved_by_a_kept_connection_is_set_back(session: IsolationSession) -> None:
    lease = session.acquire(NAME, "nextval")
    kept = psycopg.connect(lease.require_dsn(), autocommit=True)
    try:
        kept.execute("SELECT nextval('notes_id_seq')")
        session.release(lease)
        assert _equal(session, lease.dbname)
    finally:
        kept.close()


def test_temporary_tables_end_their_session_and_leave_nothing(session: IsolationSession) -> None:
    lease = session.acquire(NAME, "temp")
    kept = psycopg.connect(lease.require_dsn(), autocommit=True)
    try:
        kept.execute("CREATE TEMP TABLE scratch AS SELECT * FROM accounts")
        session.release(lease)
        assert kept.closed or kept.broken or _broken(kept)
        assert _equal(session, lease.dbname)
        assert _events(session) == ["pool_reuse"]
    finally:
        kept.close()


def test_a_transaction_left_prepared_is_rolled_back_and_the_database_recreated(
    tmp_path: Path,
) -> None:
    settings = ServerSettings(
        backend="local", server_settings={**FAST_SERVER_SETTINGS, "max_prepared_transactions": 4}
    )
    with create_server(settings) as server, _stable_session(server, tmp_path) as session:
        lease = session.acquire(NAME, "prepares")
        with psycopg.connect(lease.require_dsn()) as conn:
            conn.execute("INSERT INTO notes (body) VALUES ('prepared')")
            conn.execute("PREPARE TRANSACTION 'left'")
        session.release(lease)
        assert _events(session) == ["pool_dirty"]
        assert _equal(session, lease.dbname)
        assert _run(session, "next").dbname == lease.dbname


def test_an_idle_connection_holding_an_advisory_lock_is_ended(session: IsolationSession) -> None:
    lease = session.acquire(NAME, "advisory")
    kept = psycopg.connect(lease.require_dsn(), autocommit=True)
    try:
        kept.execute("SELECT pg_advisory_lock(42)")
        session.release(lease)
        assert _broken(kept)
        nxt = session.acquire(NAME, "next")
        conn = session.connection(nxt)
        assert conn.execute("SELECT pg_try_advisory_lock(42)").fetchone() == (True,)
        session.release(nxt)
    finally:
        kept.close()


def test_a_kept_failed_database_is_left_and_the_next_test_gets_a_new_home(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    with _stable_session(pg_server, tmp_path, keep_failed=True) as session:
        failed = session.acquire(NAME, "fails")
        session.connection(failed).execute("INSERT INTO notes (body) VALUES ('evidence')")
        session.connection(failed).commit()
        session.release(failed, failed=True)
        nxt = _run(session, "next")
        assert nxt.dbname != failed.dbname
        (kept,) = session.kept  # on a server perfkit does not own: renamed pk_failed_<test>
        try:
            with psycopg.connect(pg_server.dsn_for(kept["dbname"])) as conn:
                assert _rows(conn, "SELECT count(*) FROM notes") == 1
            assert _run(session, "after").dbname == nxt.dbname
        finally:
            session.drop_database(kept["dbname"])


def _broken(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


def test_a_stable_dsn_needs_isolation_verified() -> None:
    from perfkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--perfkit-stable-dsn.*'verified'"):
        IsolationSettings(isolation="warm-pool", stable_dsn=True, ram=False)


def test_a_write_just_before_release_is_reset_on_a_docker_server(
    docker_pg_server: PostgresServer, tmp_path: Path
) -> None:
    with _stable_session(docker_pg_server, tmp_path) as session:
        lease = session.acquire(NAME, "writer")
        kept = psycopg.connect(lease.require_dsn(), autocommit=True)
        try:
            kept.execute("DELETE FROM orders")
            session.release(lease)
            assert _events(session) == ["pool_reset"]
            assert _equal(session, lease.dbname)
            assert _run(session, "next").dbname == lease.dbname
        finally:
            kept.close()


# -- the plugin, as users run it: pytest-xdist with two workers ----------------------------

INNER_SCHEMA = """
CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL);
INSERT INTO items (name) SELECT 'seed ' || g FROM generate_series(1, 20) g;
"""

#: Every test first checks that its database equals the template, then leaves a change
#: behind from a connection cached per DSN (as an application's engine would), often
#: uncommitted, and writes its database name to a per-worker file.
EVERY_TEST_SEES_THE_TEMPLATE = r"""
import os

import psycopg
import pytest

from perfkit.lifecycle import equals_template, template_fingerprint

ENGINES = {}
REFERENCE = []
CHANGES = [
    "INSERT INTO items (name) VALUES ('left behind')",
    "UPDATE items SET name = 'changed' WHERE id = 3",
    "SELECT nextval('items_id_seq')",
    "CREATE TABLE extra (x int)",
    "DELETE FROM items WHERE id > 10",
    "SELECT 1",
    "CREATE TEMP TABLE scratch (x int)",
]


def engine(dsn):
    conn = ENGINES.get(dsn)
    if conn is None or conn.closed or conn.broken:
        conn = ENGINES[dsn] = psycopg.connect(dsn)
    return conn


@pytest.mark.parametrize("i", range(14))
def test_sees_the_template_then_changes_it(i, perfkit_lease, perfkit_session, perfkit_dsn):
    server, template = perfkit_session.shared_server, perfkit_session.template
    if not REFERENCE:
        REFERENCE.append(template_fingerprint(server, template))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(f"names-{worker}.txt", "a") as names:
        names.write(perfkit_lease.dbname + "\n")
    found = equals_template(
        server, perfkit_lease.dbname, template, reference=REFERENCE[0], sessions_allowed=True
    )
    assert found.equal, str(found)
    conn = engine(perfkit_dsn)
    try:
        conn.execute("SELECT 1")
        conn.rollback()
    except psycopg.OperationalError:  # ended by perfkit (it held a transaction): reconnect
        conn = ENGINES[perfkit_dsn] = psycopg.connect(perfkit_dsn)
    conn.execute(CHANGES[i % len(CHANGES)])
    if i % 2:
        conn.commit()
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("stable", [True, False], ids=["stable-dsn", "new-name-per-test"])
def test_every_test_under_xdist_gets_a_database_equal_to_the_template(
    inner_pytest: InnerPytest, stable: bool
) -> None:
    args = ["--perfkit-backend=local", "--perfkit-isolation=verified", "-p", "xdist", "-n", "2"]
    args.append("-v")
    result, document = inner_pytest.run(
        EVERY_TEST_SEES_THE_TEMPLATE,
        *args,
        ini="perfkit_stable_dsn = true\n" if stable else "",  # the ini key; the option: below
        schema=INNER_SCHEMA,
    )
    result.assert_outcomes(passed=14)
    assert leftovers(document) == []
    if stable:  # -v cancels the inner run's -q (which hides the header)
        result.stdout.fnmatch_lines(["perfkit: *, isolation verified (stable DSN), reuse off*"])
    per_worker = [
        path.read_text().split() for path in sorted(inner_pytest.path.glob("names-gw*.txt"))
    ]
    assert len(per_worker) == 2 and sum(map(len, per_worker)) == 14
    if stable:
        assert all(len(set(names)) == 1 for names in per_worker)
        events = {r["event"] for r in document["records"] if r.get("stable")}
        assert {"pool_reset", "pool_dirty"} <= events
    else:
        assert all(len(set(names)) == len(names) for names in per_worker)


def test_a_stable_dsn_ini_value_that_is_not_a_boolean_is_a_usage_error(
    inner_pytest: InnerPytest,
) -> None:
    result, _ = inner_pytest.run(
        "def test_x(perfkit_db):\n    pass\n",
        "--perfkit-backend=local",
        "--perfkit-isolation=verified",
        ini="perfkit_stable_dsn = maybe\n",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*perfkit_stable_dsn in pytest.ini: must be true or false*"])


def test_a_stable_dsn_without_verified_is_a_usage_error_naming_the_option(
    inner_pytest: InnerPytest,
) -> None:
    result, _ = inner_pytest.run(
        "def test_x(perfkit_db):\n    pass\n", "--perfkit-backend=local", "--perfkit-stable-dsn"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perfkit-stable-dsn*works only with isolation 'verified'*"])
