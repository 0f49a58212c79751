"""Repository integration tests (19 tests)."""

from __future__ import annotations

import functools
import operator
import random

import psycopg
import pytest
from conftest import Repo

pytestmark = pytest.mark.integration


@pytest.fixture
def executor(repo: Repo) -> int:
    return repo.add_executor("default")


@pytest.mark.quick
def test_add_executor_returns_id(repo: Repo) -> None:
    assert repo.add_executor("a") >= 1


def test_executor_names_are_unique(repo: Repo) -> None:
    repo.add_executor("dup")
    with pytest.raises(psycopg.errors.UniqueViolation), repo.conn.transaction():
        repo.conn.execute("INSERT INTO executors (name, kind) VALUES ('dup', 'http')")


def test_executor_kind_is_checked(repo: Repo) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), repo.conn.transaction():
        repo.conn.execute("INSERT INTO executors (name, kind) VALUES ('x', 'ftp')")


@pytest.mark.quick
def test_add_and_get_task(repo: Repo, executor: int) -> None:
    task = repo.add_task("t1", executor, payload={"url": "/ping"})
    row = repo.conn.execute(
        "SELECT name, payload->>'url' FROM tasks WHERE id = %s", [task]
    ).fetchone()
    assert row == ("t1", "/ping")


def test_task_defaults(repo: Repo, executor: int) -> None:
    task = repo.add_task("t-defaults", executor)
    row = repo.conn.execute(
        "SELECT status, max_retries FROM tasks WHERE id = %s", [task]
    ).fetchone()
    assert row == ("active", 3)


def test_task_status_is_checked(repo: Repo, executor: int) -> None:
    task = repo.add_task("t-status", executor)
    with pytest.raises(psycopg.errors.CheckViolation), repo.conn.transaction():
        repo.conn.execute("UPDATE tasks SET status = 'gone' WHERE id = %s", [task])


def test_update_status(repo: Repo, executor: int) -> None:
    task = repo.add_task("t-update", executor)
    repo.set_status(task, "paused")
    assert repo.one("SELECT status FROM tasks WHERE id = %s", [task]) == "paused"


def test_list_active_tasks(repo: Repo, executor: int) -> None:
    ids = [repo.add_task(f"t{i}", executor) for i in range(10)]
    for task in ids[:4]:
        repo.set_status(task, "paused")
    assert repo.one("SELECT count(*) FROM tasks WHERE status = 'active'") == 6


def test_pagination_is_stable(repo: Repo, executor: int) -> None:
    for i in range(25):
        repo.add_task(f"page-{i:02d}", executor)
    pages = [
        [
            r[0]
            for r in repo.conn.execute(
                "SELECT name FROM tasks ORDER BY name LIMIT 10 OFFSET %s", [offset]
            ).fetchall()
        ]
        for offset in (0, 10, 20)
    ]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert functools.reduce(operator.iadd, pages, []) == sorted(f"page-{i:02d}" for i in range(25))


def test_filter_by_payload(repo: Repo, executor: int) -> None:
    for i in range(12):
        repo.add_task(f"p{i}", executor, payload={"team": "a" if i % 3 else "b"})
    assert repo.one('SELECT count(*) FROM tasks WHERE payload @> \'{"team": "b"}\'') == 4


def test_tagging_is_idempotent(repo: Repo, executor: int) -> None:
    task = repo.add_task("tagged", executor)
    repo.tag(task, "x", "y")
    repo.tag(task, "x")
    assert repo.one("SELECT count(*) FROM task_tags WHERE task_id = %s", [task]) == 2


def test_tags_are_shared_between_tasks(repo: Repo, executor: int) -> None:
    a, b = repo.add_task("ta", executor), repo.add_task("tb", executor)
    repo.tag(a, "shared")
    repo.tag(b, "shared")
    assert repo.one("SELECT count(*) FROM tags") == 1


@pytest.mark.quick
def test_record_runs(repo: Repo, executor: int) -> None:
    task = repo.add_task("runs", executor)
    repo.record_runs(task, ["ok", "failed", "ok"])
    assert repo.one("SELECT count(*) FROM runs WHERE outcome = 'ok'") == 2


def test_run_duration_statistics(repo: Repo, executor: int, rng: random.Random) -> None:
    task = repo.add_task("stats", executor)
    repo.record_runs(task, ["ok"] * 100)
    avg = repo.one(
        "SELECT avg(extract(epoch FROM finished_at - started_at)) FROM runs WHERE task_id = %s",
        [task],
    )
    assert float(avg) == pytest.approx(2.0)


def test_last_run_per_task(repo: Repo, executor: int) -> None:
    tasks = [repo.add_task(f"last-{i}", executor) for i in range(5)]
    for task in tasks:
        repo.record_runs(task, ["ok"] * 10)
    rows = repo.conn.execute(
        "SELECT DISTINCT ON (task_id) task_id, started_at FROM runs "
        "ORDER BY task_id, started_at DESC"
    ).fetchall()
    assert len(rows) == 5


def test_audit_log_records_inserts(repo: Repo, executor: int) -> None:
    repo.add_task("audited", executor)
    assert repo.one("SELECT count(*) FROM audit_log WHERE action = 'insert'") == 1


def test_rename_task(repo: Repo, executor: int) -> None:
    task = repo.add_task("old-name", executor)
    repo.conn.execute("UPDATE tasks SET name = 'new-name' WHERE id = %s", [task])
    repo.conn.commit()
    assert repo.one("SELECT count(*) FROM tasks WHERE name = 'old-name'") == 0


def test_soft_delete_hides_task(repo: Repo, executor: int) -> None:
    task = repo.add_task("soft", executor)
    repo.set_status(task, "deleted")
    assert repo.one("SELECT count(*) FROM tasks WHERE status <> 'deleted'") == 0


def test_tables_start_empty(repo: Repo) -> None:
    counts = [
        repo.one(f"SELECT count(*) FROM {table}")
        for table in ("executors", "tasks", "runs", "tags", "task_tags", "audit_log")
    ]
    assert counts == [0] * 6
