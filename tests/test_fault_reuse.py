"""Reuse and SIGKILL: a killed session's databases are reclaimed, parked ones stay bounded
(issue 24, item 5).

With ``--perfkit-reuse`` the server outlives every session, so what a session
killed with SIGKILL made (its ``pk_<token>_main_w…`` databases, one still
holding the test's rows) stayed forever, one more set per kill; and the
parked ``pk_ready_*`` databases grew to ``pool_size`` times the peak
concurrency. Each test here runs real pytest subprocesses against a real
reused local server in a namespace of its own (``PERFKIT_REUSE_NAMESPACE``),
counts the databases through the maintenance database, and removes the
server at the end:

- kill -9 mid-test (twice; ``PERFKIT_FAULT_KILL_CYCLES`` for more), then a
  normal run: no orphan database, no owner row left, parked ones trimmed;
- live concurrent sessions keep their databases while another session starts
  and ends, all pass, and afterwards the parked pool is bounded;
- extra parked databases (as many concurrent runs leave) are trimmed;
- the owner-is-dead decision, as a pure function.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pluginrun import SCHEMA, WRITE_THEN_LOOK, InnerPytest, inner_pytest_command

from perfkit.dsn import make_socket_url
from perfkit.lifecycle import owners
from perfkit.lifecycle.names import READY_PREFIX
from perfkit.postgres import leaks, reuse

pytestmark = pytest.mark.fault

POOL = 4
ARGS = ("--perfkit-backend=local", "--perfkit-isolation=warm-pool", f"--perfkit-pool-size={POOL}")
KILL_CYCLES = int(os.environ.get("PERFKIT_FAULT_KILL_CYCLES", "2"))
WAIT_S = 120.0

#: A session that is killed inside its test, after it committed a row.
KILLED_TESTS = """
import time
from pathlib import Path

def test_holds_rows(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('held')")
    perfkit_db.commit()
    Path("ready").touch()
    time.sleep(600)
"""

#: A session that holds its database (with a row) until the file ``go`` appears.
HOLDER_TESTS = """
import time
from pathlib import Path

def test_keeps_its_rows(perfkit_db):
    perfkit_db.execute("INSERT INTO items (name) VALUES ('mine')")
    perfkit_db.commit()
    Path("ready-{n}").touch()
    deadline = time.monotonic() + 120
    while not Path("go").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert perfkit_db.execute("SELECT count(*) FROM items").fetchone() == (1,)
"""


@dataclass
class Reused:
    """The namespace's environment and the keys of the reused servers its runs used."""

    env: dict[str, str]
    keys: set[str]

    def run(self, inner: InnerPytest, tests: str = WRITE_THEN_LOOK) -> dict[str, Any]:
        result, document = inner.run(tests, "--perfkit-reuse", *ARGS, env=self.env)
        result.assert_outcomes(passed=tests.count("def test_"))
        self.note(document)
        return document

    def note(self, document: dict[str, Any]) -> None:
        for record in document.get("records", []):
            if record.get("reuse_key"):
                self.keys.add(record["reuse_key"])

    def maintenance_dsn(self) -> str:
        (info,) = [s for s in reuse.list_reused() if s.key in self.keys]
        home = Path(info.where)
        port = int(json.loads((home / reuse.STATE_FILE).read_text())["port"])
        return make_socket_url(
            socket_dir=str(home / "socket"), port=port, user="perfkit", dbname="perfkit"
        )


@pytest.fixture
def reused() -> Iterator[Reused]:
    """A fresh reuse namespace; every reused server made in it is removed afterwards."""
    state = Reused({reuse.NAMESPACE_ENV: f"fault-{secrets.token_hex(4)}"}, set())
    try:
        yield state
    finally:
        reuse.stop_reused(keys=state.keys)


@pytest.fixture
def running(reused: Reused) -> Iterator[list[subprocess.Popen[str]]]:
    """Inner pytest processes a test starts; killed if the test leaves one running."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    leaks.sweep_dead_owners()  # what such a kill left beside the reused server


def start(
    inner: InnerPytest,
    reused: Reused,
    running: list[subprocess.Popen[str]],
    tests: str,
    name: str,
) -> subprocess.Popen[str]:
    """Start ``pytest --perfkit-reuse`` on ``tests`` (as ``<name>.py``) without waiting."""
    test_file = inner.pytester.makepyfile(**{name: tests})
    ini = inner.pytester.makefile(".ini", pytest="[pytest]\n")
    schema = inner.pytester.makefile(".sql", schema=SCHEMA)
    log = open(inner.path / f"{name}.log", "w")  # noqa: SIM115 - the child keeps it
    with inner.environment(reused.env):
        proc = subprocess.Popen(
            inner_pytest_command(
                ini,
                inner.path,
                f"--perfkit-migrations={schema}",
                f"--perfkit-timings={inner.path / (name + '.json')}",
                "--perfkit-reuse",
                *ARGS,
                str(test_file),
            ),
            cwd=inner.path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    log.close()
    running.append(proc)
    return proc


def wait_for(path: Path, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert proc.poll() is None, f"the inner pytest exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {path.name} within {WAIT_S} s"
        time.sleep(0.05)


@dataclass
class Census:
    """The reused server's perfkit databases, read through the maintenance database."""

    orphans: list[str]  # per-session databases whose owner is dead (or unknown)
    session_dbs: list[str]  # every per-session database
    parked: list[str]
    owner_rows: list[tuple[str, int]]
    held_rows: int  # rows in the orphans' items tables

    @classmethod
    def of(cls, dsn: str) -> Census:
        with psycopg.connect(dsn, autocommit=True) as conn:
            names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
            found = owners.orphans(conn)
            rows = conn.execute(f"SELECT token, pid FROM {owners.TABLE}").fetchall()
        orphans = [name for name, _ in found.databases]
        held = 0
        for name in orphans:
            with (
                contextlib.suppress(psycopg.Error),  # dropped meanwhile, or not a clone
                psycopg.connect(dsn.replace("/perfkit?", f"/{name}?")) as db,
            ):
                held += db.execute("SELECT count(*) FROM items").fetchone()[0]  # type: ignore[index]
        return cls(
            orphans=orphans,
            session_dbs=sorted(n for n in names if owners.token_of(n)),
            parked=sorted(n for n in names if n.startswith(READY_PREFIX)),
            owner_rows=[(t, p) for t, p in rows],
            held_rows=held,
        )


def events(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in document.get("records", []) if r["event"] == name]


def test_killed_sessions_leave_no_orphans_after_the_next_run(
    inner_pytest: InnerPytest, reused: Reused, running: list[subprocess.Popen[str]]
) -> None:
    reused.run(inner_pytest)  # starts the server, builds the template, parks a pool
    dsn = reused.maintenance_dsn()
    after_kills = []
    for cycle in range(KILL_CYCLES):
        (inner_pytest.path / "ready").unlink(missing_ok=True)
        proc = start(inner_pytest, reused, running, KILLED_TESTS, f"test_killed_{cycle}")
        wait_for(inner_pytest.path / "ready", proc, inner_pytest.path / f"test_killed_{cycle}.log")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        census = Census.of(dsn)
        # What the issue describes: the killed session's databases, one holding its row.
        assert census.orphans and census.held_rows >= 1, census
        after_kills.append(len(census.orphans))
    before = Census.of(dsn)
    document = reused.run(inner_pytest)
    after = Census.of(dsn)
    reclaimed = [n for r in events(document, "orphans_reclaimed") for n in r["databases"]]
    print(
        f"\norphans after each kill -9: {after_kills}; before the normal run "
        f"{len(before.orphans)} (holding {before.held_rows} rows), after it {len(after.orphans)}; "
        f"parked {len(after.parked)} (pool {POOL})"
    )
    assert set(before.orphans) <= set(reclaimed)
    assert after.orphans == [] and after.session_dbs == []
    assert after.owner_rows == []  # the dead owners' rows and the run's own are gone
    assert 0 < len(after.parked) <= POOL


def test_live_concurrent_sessions_keep_their_databases(
    inner_pytest: InnerPytest, reused: Reused, running: list[subprocess.Popen[str]]
) -> None:
    reused.run(inner_pytest)
    dsn = reused.maintenance_dsn()
    holders = [
        start(inner_pytest, reused, running, HOLDER_TESTS.replace("{n}", str(n)), f"test_hold_{n}")
        for n in range(3)
    ]
    for n, proc in enumerate(holders):
        wait_for(inner_pytest.path / f"ready-{n}", proc, inner_pytest.path / f"test_hold_{n}.log")
    during = Census.of(dsn)
    assert during.orphans == []
    assert {p.pid for p in holders} <= {pid for _, pid in during.owner_rows}
    # A whole session starts (and reclaims what dead owners left) and ends meanwhile.
    document = reused.run(inner_pytest)
    assert not [n for r in events(document, "orphans_reclaimed") for n in r["databases"]]
    assert set(during.session_dbs) <= set(Census.of(dsn).session_dbs)
    (inner_pytest.path / "go").touch()
    for n, proc in enumerate(holders):
        assert proc.wait(WAIT_S) == 0, (inner_pytest.path / f"test_hold_{n}.log").read_text()
    after = Census.of(dsn)
    # Four sessions each parked a pool of four; the last to park trimmed them.
    assert after.session_dbs == [] and after.owner_rows == []
    assert 0 < len(after.parked) <= POOL, after.parked


def test_extra_parked_databases_are_trimmed_to_the_pool_size(
    inner_pytest: InnerPytest, reused: Reused
) -> None:
    reused.run(inner_pytest)
    dsn = reused.maintenance_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        (parked, *_) = Census.of(dsn).parked
        prefix = parked[: parked.rindex("_") + 1]
        (template,) = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, 'pk_tpl_')"
            ).fetchall()
        ]
        for i in range(8 * POOL):  # as eight concurrent runs would have left
            conn.execute(f'CREATE DATABASE "{prefix}x{i:02d}" TEMPLATE "{template}"')
    before = len(Census.of(dsn).parked)
    document = reused.run(inner_pytest)
    after = len(Census.of(dsn).parked)
    trims = {r["when"]: r for r in events(document, "pool_trim")}
    print(f"\nparked before {before}, after one run {after} (pool {POOL})")
    assert before == 9 * POOL
    assert trims["start"]["parked"] == before - POOL  # what was left after adopting a pool
    assert trims["start"]["dropped"] == before - 2 * POOL
    assert 0 < after <= POOL


def test_owner_is_dead_decision() -> None:
    here = owners.Owner(pid=100, started=50.0, host="box", boot="b1")
    owner = owners.Owner(pid=42, started=10.0, host="box", boot="b1")
    assert not owners.owner_is_dead(owner, here, started_now=10.0)  # alive
    assert not owners.owner_is_dead(owner, here, started_now=10.0 + 0.01)
    assert owners.owner_is_dead(owner, here, started_now=None)  # PID gone (or a zombie)
    assert owners.owner_is_dead(owner, here, started_now=30.0)  # PID reused by another process
    other_boot = owners.Owner(pid=42, started=10.0, host="box", boot="b0")
    assert owners.owner_is_dead(other_boot, here, started_now=10.0)  # the machine rebooted
    elsewhere = owners.Owner(pid=42, started=10.0, host="other", boot="b9")
    assert not owners.owner_is_dead(elsewhere, here, started_now=None)  # cannot tell: leave it
    # and what the sweep feeds it for real processes
    me = owners.Owner.this_process()
    assert not owners.owner_is_dead(me, me, owners.process_start(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert owners.process_start(child.pid) is None
    assert owners.token_of("pk_0a1b2c_main_w3") == "0a1b2c"
    for shared in ("pk_ready_abc_w1ff", "pk_tpl_abcdef123456", "pk_failed_t", "perfkit"):
        assert owners.token_of(shared) is None
