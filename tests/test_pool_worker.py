"""The worker loop shared by the thread and asyncio runners, driven by a fake clock and fakes.

No server is involved: the loop's bookkeeping (what a failed acquire, a failed
query and a success record; that every acquired connection is released) is
checked against scripted connections, once through each driver.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from perfkit.pool.settings import Workload
from perfkit.pool.worker import adrive, drive, worker_loop


class FakeClock:
    """Advances only when the loop sleeps (and a little per call, so time moves)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeConnection:
    description = ()  # a cursor's: the statement returned rows (none here)

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def execute(self, sql: str) -> FakeConnection:
        if self.fail:
            raise psycopg.errors.QueryCanceled("canceled")
        return self

    def fetchall(self) -> list[Any]:
        return []


def script(outcomes: list[str]) -> tuple[Any, Any, list[Any]]:
    """acquire/release fakes: each acquire takes the next outcome (ok, query-fails, refused)."""
    released: list[Any] = []
    pending = iter(outcomes)

    def acquire() -> FakeConnection:
        outcome = next(pending, "ok")
        if outcome == "refused":
            raise psycopg.OperationalError("connection refused")
        return FakeConnection(fail=outcome == "query-fails")

    return acquire, released.append, released


def test_failed_acquire_failed_query_and_success_are_each_recorded() -> None:
    clock = FakeClock()
    acquire, release, released = script(["refused", "query-fails", "ok"])
    loop = worker_loop(0, Workload(workers=1, duration=0.05), clock, 0.0, 0.05)
    records = drive(loop, acquire=acquire, release=release, sleep=clock.sleep)
    assert [r.error for r in records[:3]] == ["OperationalError", "QueryCanceled", ""]
    assert records[0].stage == "acquire" and records[0].sql is None
    assert records[2].sql is not None
    assert len(released) == len(records) - 1  # every acquired connection went back


def test_the_asyncio_driver_records_the_same_requests_as_the_thread_driver() -> None:
    class AsyncFake(FakeConnection):
        async def execute(self, sql: str) -> AsyncFake:  # type: ignore[override]
            FakeConnection.execute(self, sql)
            return self

        async def fetchall(self) -> list[Any]:
            return []

    sync_clock, async_clock = FakeClock(), FakeClock()
    acquire, release, _ = script(["refused", "query-fails", "ok"])
    sync_records = drive(
        worker_loop(0, Workload(workers=1, duration=0.05), sync_clock, 0.0, 0.05),
        acquire=acquire,
        release=release,
        sleep=sync_clock.sleep,
    )
    outcomes = iter(["refused", "query-fails", "ok"])

    async def aacquire() -> AsyncFake:
        outcome = next(outcomes, "ok")
        if outcome == "refused":
            raise psycopg.OperationalError("connection refused")
        return AsyncFake(fail=outcome == "query-fails")

    async def arelease(conn: Any) -> None:
        async_clock.sleep(0)

    async def run() -> list[Any]:
        loop = worker_loop(0, Workload(workers=1, duration=0.05), async_clock, 0.0, 0.05)
        return await adrive(loop, acquire=aacquire, release=arelease)

    async_records = asyncio.run(run())
    assert [r.error for r in async_records[:3]] == [r.error for r in sync_records[:3]]


def test_an_unexpected_error_releases_the_connection_and_propagates() -> None:
    class Broken(FakeConnection):
        def execute(self, sql: str) -> FakeConnection:
            raise KeyError("not a database error")

    released: list[Any] = []
    clock = FakeClock()
    with pytest.raises(KeyError):
        drive(
            worker_loop(0, Workload(workers=1, duration=1.0), clock, 0.0, 1.0),
            acquire=lambda: Broken(fail=False),
            release=released.append,
            sleep=clock.sleep,
        )
    assert len(released) == 1
