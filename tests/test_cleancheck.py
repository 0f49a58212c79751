"""The fast clean check agrees with the complete comparison: never a changed database called clean.

A "miss" (the fast check says unchanged, :func:`equals_template` finds a
difference) would hand the next test a changed database: every test here
fails on one. Calling a clean database changed ("false dirty") only costs a
clone; the randomized run reports its rate.
"""

from __future__ import annotations

import pytest
from dbstate import CLEAN, PLANTED, made_clone, play, random_cases, run_statements

from perfkit.lifecycle import Fingerprint, equals_template
from perfkit.lifecycle.cleancheck import State, end_other_sessions, read_state, unchanged
from perfkit.lifecycle.dbconnect import admin_connect, connect
from perfkit.postgres import PostgresServer

pytestmark = pytest.mark.local


def _state(server: PostgresServer, dbname: str) -> State:
    with connect(server.dsn_for(dbname), autocommit=True) as conn:
        return read_state(conn)


def _verdict(server: PostgresServer, dbname: str, baseline: State) -> list[str]:
    """What perfkit does at release: end the test's sessions, then read and compare."""
    with admin_connect(server.dsn) as admin:
        assert end_other_sessions(admin, dbname) == 0
    return unchanged(baseline, _state(server, dbname))


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_fast_check_sees_a_planted_change(
    kind: str, pg_server: PostgresServer, clone: str
) -> None:
    baseline = _state(pg_server, clone)
    run_statements(pg_server, clone, PLANTED[kind])
    assert _verdict(pg_server, clone, baseline), f"{kind}: the change was not seen"


@pytest.mark.parametrize("kind", ["nothing", "reads", "session_settings", "analyze_and_vacuum"])
def test_the_fast_check_calls_work_without_writes_clean(
    kind: str, pg_server: PostgresServer, clone: str
) -> None:
    baseline = _state(pg_server, clone)
    run_statements(pg_server, clone, CLEAN[kind])
    assert _verdict(pg_server, clone, baseline) == []


def test_an_uncommitted_write_on_a_connection_left_open_is_seen(
    pg_server: PostgresServer, clone: str
) -> None:
    baseline = _state(pg_server, clone)
    left_open = connect(pg_server.dsn_for(clone))
    try:
        left_open.execute("INSERT INTO empty_things VALUES (1)")
        assert _verdict(pg_server, clone, baseline)
    finally:
        left_open.close()


def test_a_committed_write_on_an_idle_connection_within_the_flush_interval_is_seen(
    pg_server: PostgresServer, clone: str
) -> None:
    """The writer's counters are still in its local memory: ending it flushes them."""
    baseline = _state(pg_server, clone)
    left_open = connect(pg_server.dsn_for(clone), autocommit=True)
    try:
        left_open.execute("UPDATE accounts SET balance = balance + 1")
        left_open.execute("UPDATE accounts SET balance = balance - 1")  # same content again
        assert _verdict(pg_server, clone, baseline)
    finally:
        left_open.close()


def test_statistics_reset_then_writes_matching_the_old_counts_is_seen(
    pg_server: PostgresServer, clone: str
) -> None:
    baseline = _state(pg_server, clone)
    run_statements(
        pg_server,
        clone,
        ["SELECT pg_stat_reset()", "INSERT INTO accounts (name) VALUES ('x'), ('y')"],
    )
    assert "statistics were reset" in _verdict(pg_server, clone, baseline)


def test_a_prepared_transaction_left_behind_is_seen(pg_server: PostgresServer, clone: str) -> None:
    with connect(pg_server.dsn_for(clone), autocommit=True) as conn:
        allowed = int(conn.execute("SHOW max_prepared_transactions").fetchone()[0])
    if not allowed:
        pytest.skip("max_prepared_transactions is 0 on this server")
    baseline = _state(pg_server, clone)
    with connect(pg_server.dsn_for(clone)) as conn:
        conn.execute("BEGIN; SELECT 1; PREPARE TRANSACTION 'left'")
    try:
        assert _verdict(pg_server, clone, baseline)
    finally:
        with connect(pg_server.dsn_for(clone), autocommit=True) as conn:
            conn.execute("ROLLBACK PREPARED 'left'")


# -- randomized: seeded statement sequences from two connections -------------------------


def _play(server: PostgresServer, dbname: str, steps: list[tuple[str, str]], commit_b: bool):
    """Run the steps on two connections; B is returned open for the release to end."""
    a = connect(server.dsn_for(dbname), autocommit=True, options="-c lock_timeout=200")
    b = connect(server.dsn_for(dbname), options="-c lock_timeout=200")
    play(a, b, steps, commit_b)
    a.close()
    return b  # left open: the release must end it


def run_randomized(
    server: PostgresServer, template: str, reference: Fingerprint, seed: int, cases: range
) -> tuple[int, int, list[str]]:
    """``(clean cases, false-dirty cases, misses)`` over the seeded cases numbered ``cases``."""
    drawn = random_cases(seed, cases.stop)
    clean = false_dirty = 0
    misses: list[str] = []
    for case in cases:
        steps, commit_b = drawn[case]
        with made_clone(server, template) as dbname:
            baseline = _state(server, dbname)
            left_open = _play(server, dbname, steps, commit_b)
            fast = _verdict(server, dbname, baseline)
            left_open.close()
            truth = equals_template(server, dbname, template, reference=reference)
        if not fast and not truth.equal:
            misses.append(f"case {case} (seed {seed}): {steps} commit_b={commit_b}: {truth}")
        clean += truth.equal
        false_dirty += bool(fast) and truth.equal
    return clean, false_dirty, misses


#: 40 seeded cases: the default run plays the first 10, ``-m slow`` the other 30.
SEED, SAMPLE, CASES = 17, 10, 40


def test_randomized_cases_have_no_miss(
    pg_server: PostgresServer, state_template: str, reference: Fingerprint
) -> None:
    clean, _, misses = run_randomized(pg_server, state_template, reference, SEED, range(SAMPLE))
    assert misses == []
    assert clean > 0  # the generator makes clean cases too, or the test proves little


@pytest.mark.slow
def test_the_rest_of_the_forty_randomized_cases_have_no_miss(
    pg_server: PostgresServer, state_template: str, reference: Fingerprint
) -> None:
    cases = range(SAMPLE, CASES)
    clean, _, misses = run_randomized(pg_server, state_template, reference, SEED, cases)
    assert misses == []
    assert clean > 0


@pytest.mark.bench
@pytest.mark.timeout(3600)
def test_bench_one_thousand_randomized_cases_have_no_miss(
    pg_server: PostgresServer, state_template: str, reference: Fingerprint
) -> None:
    clean, false_dirty, misses = run_randomized(
        pg_server, state_template, reference, 2026, range(1000)
    )
    print(
        f"\nrandomized clean check: 1000 cases, {clean} clean, {len(misses)} misses, "
        f"false dirty {false_dirty} of {clean} clean ({false_dirty / max(clean, 1):.0%})"
    )
    assert misses == []
