"""End-to-end workflows of the scheduler service (7 tests)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from conftest import BASE, Repo

pytestmark = pytest.mark.end_to_end


@pytest.mark.quick
def test_schedule_run_and_report(repo: Repo, rng: random.Random) -> None:
    executor = repo.add_executor("http-main")
    task = repo.add_task("nightly-report", executor, "0 3 * * *")
    outcomes = rng.choices(["ok", "failed", "timeout"], weights=[8, 1, 1], k=300)
    repo.record_runs(task, outcomes)
    rows = repo.conn.execute(
        "SELECT outcome, count(*) FROM runs WHERE task_id = %s GROUP BY outcome", [task]
    ).fetchall()
    assert dict(rows) == {o: outcomes.count(o) for o in set(outcomes)}


def test_pause_and_resume_are_audited(repo: Repo) -> None:
    task = repo.add_task("sync", repo.add_executor("shell-1", "shell"))
    for status in ["paused", "active", "paused", "active"]:
        repo.set_status(task, status)
    actions = repo.conn.execute(
        "SELECT action, detail->>'to' FROM audit_log WHERE task_id = %s ORDER BY id", [task]
    ).fetchall()
    assert actions == [
        ("insert", None),
        ("update", "paused"),
        ("update", "active"),
        ("update", "paused"),
        ("update", "active"),
    ]


@pytest.mark.quick
def test_failed_runs_are_retried_up_to_the_limit(repo: Repo) -> None:
    executor = repo.add_executor("http-flaky")
    task = repo.add_task("flaky", executor, max_retries=2)
    for attempt in range(1, 4):
        repo.conn.execute(
            "INSERT INTO runs (task_id, attempt, started_at, outcome) "
            "SELECT %s, %s, %s, 'failed' FROM tasks WHERE id = %s AND max_retries >= %s - 1",
            [task, attempt, BASE + timedelta(seconds=attempt), task, attempt],
        )
    repo.conn.commit()
    assert repo.one("SELECT max(attempt) FROM runs WHERE task_id = %s", [task]) == 3
    assert repo.one("SELECT count(*) FROM runs WHERE task_id = %s", [task]) == 3


def test_bulk_import_and_query_by_tag(repo: Repo, rng: random.Random) -> None:
    executor = repo.add_executor("bulk")
    with (
        repo.conn.cursor() as cur,
        cur.copy("COPY tasks (name, schedule, executor_id) FROM STDIN") as copy,
    ):
        for i in range(1000):
            copy.write_row((f"imported-{i}", f"{rng.randrange(60)} * * * *", executor))
    repo.conn.commit()
    tagged = [
        repo.one("SELECT id FROM tasks WHERE name = %s", [f"imported-{i}"])
        for i in range(0, 1000, 50)
    ]
    for task in tagged:
        repo.tag(task, "imported", "batch")
    count = repo.one(
        "SELECT count(*) FROM tasks t JOIN task_tags tt ON tt.task_id = t.id "
        "JOIN tags g ON g.id = tt.tag_id WHERE g.name = 'imported'"
    )
    assert count == len(tagged) == 20
    assert repo.one("SELECT count(*) FROM tasks") == 1000


def test_due_tasks_in_schedule_order(repo: Repo, rng: random.Random) -> None:
    executor = repo.add_executor("due")
    offsets = rng.sample(range(-120, 120), 60)
    for i, minutes in enumerate(offsets):
        repo.add_task(f"due-{i}", executor, next_run_at=BASE + timedelta(minutes=minutes))
    due = repo.conn.execute(
        "SELECT name, rank() OVER (ORDER BY next_run_at) FROM tasks "
        "WHERE status = 'active' AND next_run_at <= %s ORDER BY next_run_at",
        [BASE],
    ).fetchall()
    assert len(due) == sum(1 for m in offsets if m <= 0)
    assert [r for _, r in due] == list(range(1, len(due) + 1))


def test_deleting_a_task_cascades_to_runs_and_tags(repo: Repo) -> None:
    executor = repo.add_executor("cascade")
    task = repo.add_task("doomed", executor)
    repo.record_runs(task, ["ok"] * 50)
    repo.tag(task, "temporary")
    repo.conn.execute("DELETE FROM tasks WHERE id = %s", [task])
    repo.conn.commit()
    assert repo.one("SELECT count(*) FROM runs") == 0
    assert repo.one("SELECT count(*) FROM task_tags") == 0
    assert repo.one("SELECT count(*) FROM audit_log WHERE action = 'delete'") == 1


def test_executor_in_use_cannot_be_removed(repo: Repo) -> None:
    executor = repo.add_executor("busy")
    repo.add_task("uses-busy", executor)
    with pytest.raises(Exception, match="foreign key"), repo.conn.transaction():
        repo.conn.execute("DELETE FROM executors WHERE id = %s", [executor])
    assert repo.one("SELECT count(*) FROM executors") == 1
