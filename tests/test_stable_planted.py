"""Every planted kind of change, made from a connection the application keeps open, is undone.

Under a stable DSN the application's idle connections survive the release, so
the check cannot wait for their statistics; each change here is made on such
a connection just before the release, and the next test must get a database
equal to the template (:func:`perfkit.lifecycle.equals_template`, which is
told that idle sessions may stay) under the same name.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dbstate import CLEAN, PLANTED, SCHEMA, play, random_steps

from perfkit.lifecycle import equals_template, template_fingerprint
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.postgres import PostgresServer

NAME = "verified"


@pytest.fixture(scope="module")
def stable(
    pg_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[IsolationSession, Any]]:
    migrations = tmp_path_factory.mktemp("stable") / "schema.sql"
    migrations.write_text(SCHEMA)
    settings = IsolationSettings(
        isolation=NAME,
        backend="external",
        dsn=pg_server.dsn,
        migrations=(migrations,),
        pool_size=1,
        clone_workers=1,
        stable_dsn=True,
    )
    with IsolationSession(settings) as session:
        yield session, template_fingerprint(pg_server, session.template)


def _left_by_kept_connection(
    stable: tuple[IsolationSession, Any], statements: str | list[str]
) -> tuple[str, str]:
    """One test: run ``statements`` on a connection it keeps open; (its event, next dbname)."""
    session, reference = stable
    lease = session.acquire(NAME, "plants")
    server = session.shared_server
    before = equals_template(
        server, lease.dbname, session.template, reference=reference, sessions_allowed=True
    )
    assert before.equal, str(before)
    kept = psycopg.connect(lease.require_dsn(), autocommit=True)
    try:
        for statement in [statements] if isinstance(statements, str) else statements:
            kept.execute(statement)
        session.release(lease)
    finally:
        kept.close()
    event = [r["event"] for r in session.records if r.get("stable")][-1]
    after = equals_template(
        server, lease.dbname, session.template, reference=reference, sessions_allowed=True
    )
    assert after.equal, f"{event}: {after}"
    nxt = session.acquire(NAME, "next")
    session.release(nxt)
    return event, nxt.dbname


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_a_planted_change_from_a_kept_connection_is_undone(
    stable: tuple[IsolationSession, Any], kind: str
) -> None:
    event, _ = _left_by_kept_connection(stable, PLANTED[kind])
    assert event in ("pool_reset", "pool_dirty")  # seen, not equal by luck


@pytest.mark.parametrize("kind", sorted(CLEAN))
def test_clean_work_from_a_kept_connection_leaves_the_template(
    stable: tuple[IsolationSession, Any], kind: str
) -> None:
    _left_by_kept_connection(stable, CLEAN[kind])


def test_every_test_of_the_module_got_the_same_name(
    stable: tuple[IsolationSession, Any],
) -> None:
    session, _ = stable
    for test in ("one", "two", "three"):
        session.release(session.acquire(NAME, test))
    names = {r["dbname"] for r in session.records if r["event"] == "test"}
    assert len(names) == 1


def _random_case(
    stable: tuple[IsolationSession, Any], rng: random.Random
) -> tuple[list[tuple[str, str]], bool, str]:
    """One test: up to four statements on two kept connections, B maybe left uncommitted."""
    session, reference = stable
    steps = random_steps(rng)
    commit_b = rng.random() < 0.5
    lease = session.acquire(NAME, "random")
    dsn = lease.require_dsn()
    a = psycopg.connect(dsn, autocommit=True, options="-c lock_timeout=200")
    b = psycopg.connect(dsn, options="-c lock_timeout=200")
    try:
        play(a, b, steps, commit_b)
        session.release(lease)  # both kept open: A idle, B idle or idle in a transaction
    finally:
        a.close()
        b.close()
    found = equals_template(
        session.shared_server,
        lease.dbname,
        session.template,
        reference=reference,
        sessions_allowed=True,
    )
    return steps, commit_b, "" if found.equal else str(found)


def _run_randomized(
    stable: tuple[IsolationSession, Any], cases: int, seed: int
) -> tuple[list[str], dict[str, int]]:
    """(misses, how many releases took each path) over ``cases`` seeded cases."""
    session, _ = stable
    rng = random.Random(seed)
    start = len(session.records)
    misses = []
    for case in range(cases):
        steps, commit_b, miss = _random_case(stable, rng)
        if miss:
            misses.append(f"case {case} (seed {seed}): {steps} commit_b={commit_b}: {miss}")
    paths = Counter(r["event"] for r in session.records[start:] if r.get("stable"))
    return misses, dict(paths)


def test_randomized_cases_from_kept_connections_have_no_miss(
    stable: tuple[IsolationSession, Any],
) -> None:
    misses, paths = _run_randomized(stable, 40, seed=1517)
    assert misses == []
    assert len(paths) > 1  # the generator makes clean and changed cases, or it proves little


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_bench_one_thousand_randomized_stable_cases_have_no_miss(
    stable: tuple[IsolationSession, Any],
) -> None:
    misses, paths = _run_randomized(stable, 1000, seed=2026)
    print(f"\nrandomized stable-DSN cases: 1000, {len(misses)} misses, paths {paths}")
    assert misses == []
