"""Application code under test: a tiny repository layer over psycopg.

Like the service the review describes, it commits after each write; under
``rollback`` isolation those commits only move a savepoint.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

BASE = datetime(2026, 1, 1, tzinfo=UTC)


class Repo:
    """Data access for executors, tasks, runs and tags."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def one(self, query: str, params: Iterable[Any] = ()) -> Any:
        row = self.conn.execute(query, list(params)).fetchone()
        return None if row is None else row[0]

    def add_executor(self, name: str, kind: str = "http", endpoint: str | None = None) -> int:
        executor_id = self.one(
            "INSERT INTO executors (name, kind, endpoint) VALUES (%s, %s, %s) RETURNING id",
            [name, kind, endpoint or f"http://127.0.0.1:9/{name}"],
        )
        self.conn.commit()
        return int(executor_id)

    def add_task(
        self, name: str, executor_id: int, schedule: str = "*/5 * * * *", **kw: Any
    ) -> int:
        task_id = self.one(
            "INSERT INTO tasks (name, schedule, executor_id, payload, next_run_at, max_retries) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            [
                name,
                schedule,
                executor_id,
                psycopg.types.json.Jsonb(kw.get("payload", {})),
                kw.get("next_run_at", BASE),
                kw.get("max_retries", 3),
            ],
        )
        self.conn.commit()
        return int(task_id)

    def set_status(self, task_id: int, status: str) -> None:
        self.conn.execute(
            "UPDATE tasks SET status = %s, updated_at = now() WHERE id = %s", [status, task_id]
        )
        self.conn.commit()

    def tag(self, task_id: int, *names: str) -> None:
        for name in names:
            tag_id = self.one(
                "INSERT INTO tags (name) VALUES (%s) ON CONFLICT (name) "
                "DO UPDATE SET name = EXCLUDED.name RETURNING id",
                [name],
            )
            self.conn.execute(
                "INSERT INTO task_tags VALUES (%s, %s) ON CONFLICT DO NOTHING", [task_id, tag_id]
            )
        self.conn.commit()

    def record_runs(self, task_id: int, outcomes: list[str], start: datetime = BASE) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO runs (task_id, attempt, started_at, finished_at, outcome) "
                "VALUES (%s, %s, %s, %s, %s)",
                [
                    (
                        task_id,
                        1,
                        start + timedelta(minutes=5 * i),
                        start + timedelta(minutes=5 * i, seconds=2),
                        outcome,
                    )
                    for i, outcome in enumerate(outcomes)
                ],
            )
        self.conn.commit()


@pytest.fixture
def repo(perfkit_db: psycopg.Connection) -> Repo:
    return Repo(perfkit_db)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("PERFKIT_SUITE_SEED", "0"))
    return random.Random(f"{seed}:{request.node.nodeid}")
