"""Isolation strategies on real servers: they isolate, clean up and fail cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from perfkit.errors import ConfigError, MigrationError
from perfkit.lifecycle import leakcheck
from perfkit.lifecycle.bench import SUITE_DIR
from perfkit.lifecycle.registry import NAMES
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.strategies import WarmPool
from perfkit.postgres import PostgresServer, create_server

MIGRATIONS = SUITE_DIR / "migrations.sql"
ISOLATING = [n for n in NAMES if n != "none"]


def external(pg_server: PostgresServer, **kw: object) -> IsolationSettings:
    return IsolationSettings(
        backend="external",
        dsn=pg_server.dsn,
        migrations=(MIGRATIONS,),
        **kw,  # type: ignore[arg-type]
    )


def databases_with_prefix(pg_server: PostgresServer, prefix: str) -> list[str]:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def leak_session() -> Iterator[IsolationSession]:
    settings = IsolationSettings(backend="local", migrations=(MIGRATIONS,))
    with IsolationSession(settings, extra_sql=leakcheck.PROBE_SQL) as session:
        yield session


@pytest.mark.parametrize("name", ISOLATING)
def test_strategy_isolates_everything_it_guarantees(
    leak_session: IsolationSession, name: str
) -> None:
    report = leakcheck.check(leak_session, name)
    assert "rows" in report.guarantees
    assert not (report.leaked & report.guarantees), report


def test_no_isolation_leaks_so_the_check_can_fail(leak_session: IsolationSession) -> None:
    report = leakcheck.check(leak_session, "none")
    assert report.leaked == {"rows", "sequences", "schema"}


def test_known_limits_are_reported_as_leaks_outside_the_guarantees(
    leak_session: IsolationSession,
) -> None:
    assert "sequences" in leakcheck.check(leak_session, "rollback").leaked
    assert "schema" in leakcheck.check(leak_session, "truncate").leaked


def test_rollback_commit_is_visible_inside_the_test_but_not_after(
    pg_server: PostgresServer,
) -> None:
    with IsolationSession(external(pg_server)) as session:
        lease = session.acquire("rollback", "t1")
        assert lease.connection is not None
        lease.connection.execute("INSERT INTO tags (name) VALUES ('x')")
        lease.connection.commit()
        assert lease.connection.execute("SELECT count(*) FROM tags").fetchone() == (1,)
        session.release(lease)
        again = session.acquire("rollback", "t2")
        assert again.connection is not None
        assert again.connection.execute("SELECT count(*) FROM tags").fetchone() == (0,)
        session.release(again)


def test_rollback_refuses_to_hand_out_a_dsn(pg_server: PostgresServer) -> None:
    with IsolationSession(external(pg_server)) as session:
        lease = session.acquire("rollback", "t")
        try:
            with pytest.raises(ConfigError, match="perfkit_db"):
                lease.require_dsn()
        finally:
            session.release(lease)


def test_truncate_keeps_the_listed_tables(pg_server: PostgresServer) -> None:
    with IsolationSession(external(pg_server, keep_tables=("tags",))) as session:
        lease = session.acquire("truncate", "t1")
        assert lease.connection is not None
        lease.connection.execute("INSERT INTO tags (name) VALUES ('kept')")
        lease.connection.execute("INSERT INTO executors (name, kind) VALUES ('gone', 'http')")
        lease.connection.commit()
        session.release(lease)
        again = session.acquire("truncate", "t2")
        assert again.connection is not None
        counts = again.connection.execute(
            "SELECT (SELECT count(*) FROM tags), (SELECT count(*) FROM executors)"
        ).fetchone()
        session.release(again)
    assert counts == (1, 0)


@pytest.mark.parametrize("strategy", ["file_copy", "wal_log"])
def test_template_clone_strategy_is_selectable(pg_server: PostgresServer, strategy: str) -> None:
    with IsolationSession(external(pg_server, template_strategy=strategy)) as session:
        assert f"STRATEGY {strategy.upper()}" in session.clone_sql("x").as_string(session.admin())
        lease = session.acquire("template", "t")
        assert lease.connection is not None
        assert lease.connection.execute("SELECT count(*) FROM tasks").fetchone() == (0,)
        session.release(lease)


def test_warm_pool_hands_out_distinct_ready_databases(pg_server: PostgresServer) -> None:
    with IsolationSession(external(pg_server, pool_size=2)) as session:
        pool = session.strategy("warm-pool")
        assert isinstance(pool, WarmPool)
        assert pool.wait_full(timeout=60)
        leases = [session.acquire("warm-pool", f"t{i}") for i in range(4)]
        names = {lease.dbname for lease in leases}
        for lease in leases:
            assert lease.connection is not None
            assert lease.connection.execute("SELECT current_database()").fetchone() == (
                lease.dbname,
            )
            session.release(lease)
    assert len(names) == 4


def test_closing_a_session_drops_every_database_it_made(pg_server: PostgresServer) -> None:
    session = IsolationSession(external(pg_server))
    for name in ("rollback", "truncate", "template", "warm-pool", "none"):
        session.release(session.acquire(name, "t"))
    held = session.acquire("template", "still-open")  # a test that never released
    assert held.dbname in databases_with_prefix(pg_server, session.namer.prefix)
    session.close()
    assert databases_with_prefix(pg_server, session.namer.prefix) == []


def test_closing_a_local_session_stops_every_server_it_started() -> None:
    started: list[PostgresServer] = []

    def factory(settings: object) -> PostgresServer:
        server = create_server(settings)  # type: ignore[arg-type]
        started.append(server)
        return server

    settings = IsolationSettings(backend="local", migrations=(MIGRATIONS,))
    session = IsolationSession(settings, server_factory=factory)
    session.release(session.acquire("per-test-server", "a"))
    session.acquire("per-test-server", "never released")
    session.acquire("template", "b")
    assert session.servers_started == 3
    session.close()
    assert len(started) == 3
    assert not any(server.is_ready() for server in started)


def test_failing_migration_shows_the_sql_and_leaves_no_database(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE ok (id int);\n\nINSERT INTO missing_table VALUES (1);\n")
    session = IsolationSession(
        IsolationSettings(backend="external", dsn=pg_server.dsn, migrations=(bad,))
    )
    with pytest.raises(MigrationError) as info:
        session.acquire("template", "t")
    message = str(info.value)
    assert "INSERT INTO missing_table VALUES (1)" in message
    assert f"{bad}:3" in message
    assert "missing_table" in message and "does not exist" in message
    assert databases_with_prefix(pg_server, session.namer.prefix) == []
    with pytest.raises(MigrationError):  # the same error again, nothing restarted
        session.acquire("rollback", "t2")
    session.close()


def test_failing_migration_stops_the_server_it_started(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN id int;\n")
    started: list[PostgresServer] = []

    def factory(settings: object) -> PostgresServer:
        started.append(create_server(settings))  # type: ignore[arg-type]
        return started[-1]

    for name in ("per-test-server", "template"):
        session = IsolationSession(
            IsolationSettings(backend="local", migrations=(bad,)), server_factory=factory
        )
        with pytest.raises(MigrationError, match="ALTER TABLE t ADD COLUMN id int"):
            session.acquire(name, "t")
        session.close()
    assert len(started) == 2
    assert not any(server.is_ready() for server in started)


def test_per_test_server_refuses_an_external_backend(pg_server: PostgresServer) -> None:
    with (
        IsolationSession(external(pg_server)) as session,
        pytest.raises(ConfigError, match="per-test-server"),
    ):
        session.acquire("per-test-server", "t")


def test_every_test_gets_an_acquire_and_release_record(pg_server: PostgresServer) -> None:
    with IsolationSession(external(pg_server)) as session:
        session.release(session.acquire("template", "test_a"))
        session.release(session.acquire("rollback", "test_b"))
    tests = [r for r in session.records if r["event"] == "test"]
    assert [(r["test"], r["strategy"]) for r in tests] == [
        ("test_a", "template"),
        ("test_b", "rollback"),
    ]
    assert all(r["acquire_s"] >= 0 and r["release_s"] >= 0 for r in tests)
    assert {r["event"] for r in session.records} >= {"template_build", "session_setup"}


def test_strategies_use_only_what_strategy_host_lists_and_the_session_has_it() -> None:
    import ast
    import inspect

    from perfkit.lifecycle import strategies
    from perfkit.lifecycle.host import StrategyHost

    listed = {
        name for name in vars(StrategyHost) if not name.startswith("_") and name not in vars(object)
    } | set(StrategyHost.__annotations__)
    used = {
        node.attr
        for node in ast.walk(ast.parse(inspect.getsource(strategies)))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "session"
    }
    assert used <= listed, f"strategies use {sorted(used - listed)} outside StrategyHost"
    session_class = vars(IsolationSession)
    instance_attributes = {"settings", "namer", "clock"}  # set in IsolationSession.__init__
    assert all(n in session_class or n in instance_attributes for n in listed)
    assert not [n for n in used if n.startswith("_")]


class _SteppedClock:
    """A clock that moves only when told to (and by a hair on every reading)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


def test_rollback_guard_runs_outside_the_timed_acquire_and_release(
    pg_server: PostgresServer,
) -> None:
    clock = _SteppedClock()
    with IsolationSession(external(pg_server), clock=clock) as session:
        strategy = session.strategy("rollback")
        real_begin, real_audit = strategy.begin, strategy.audit

        def slow_begin(lease: object) -> None:
            clock.now += 100.0  # anything the guard does before the test: not isolation cost
            real_begin(lease)  # type: ignore[arg-type]

        def slow_audit(lease: object) -> str | None:
            clock.now += 100.0  # and after it
            return real_audit(lease)  # type: ignore[arg-type]

        strategy.begin, strategy.audit = slow_begin, slow_audit  # type: ignore[method-assign]
        lease = session.acquire("rollback", "t")
        assert "commits_before" in lease.extra  # the real guard still ran
        session.release(lease)
    assert lease.acquire_s < 1.0 and lease.release_s < 1.0


def test_rollback_guard_still_warns_about_another_session_after_the_release(
    pg_server: PostgresServer,
) -> None:
    from perfkit.errors import IsolationWarning

    with IsolationSession(external(pg_server)) as session:
        lease = session.acquire("rollback", "test_escapes")
        dsn = session.dsn_for(lease.dbname)
        with psycopg.connect(dsn) as other, pytest.warns(IsolationWarning, match="test_escapes"):
            other.execute("SELECT 1")
            session.release(lease)
        assert session.records[-1]["test"] == "test_escapes"  # released and recorded first


def test_rollback_micro_benchmark_raises_no_isolation_warning(pg_server: PostgresServer) -> None:
    import warnings

    from perfkit.lifecycle import micro

    with IsolationSession(external(pg_server), extra_sql=leakcheck.PROBE_SQL) as session:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an IsolationWarning fails the test
            rows = micro.rollback(session, 3)
        leftovers = databases_with_prefix(pg_server, session.namer.prefix + "raw")
    assert {r["case"] for r in rows} == {
        "raw_insert_rollback",
        "rollback_cycle",
        "rollback_overhead",
        "rollback_guard",
    }
    assert len(rows) == 12
    guard = [r["seconds"] for r in rows if r["case"] == "rollback_guard"]
    assert all(s > 0 for s in guard)  # the guard queried the server, outside the cycle
    assert leftovers == []
