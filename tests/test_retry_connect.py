"""Specs of connect_with_retry (sync and asyncio) against real servers and real closed ports."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Iterator

import psycopg
import pytest
import tenacity

from perfkit.dsn import make_url
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.postgres.local import free_port
from perfkit.retry import (
    RetryError,
    async_connect_with_retry,
    connect_with_retry,
    get_strategy,
)
from perfkit.retry.tenacity_adapter import as_tenacity_stop, as_tenacity_wait

SECRET = "s3cret-pw-for-test"


def closed_port_dsn() -> str:
    return make_url(host="127.0.0.1", port=free_port(), user="u", password=SECRET, dbname="d")


class FakeSleep:
    """Records sleeps instead of sleeping (the attempts themselves are real)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_connects_on_the_first_attempt_to_a_running_server(pg_server: PostgresServer) -> None:
    conn, trace = connect_with_retry(pg_server.dsn, "naive", connect_timeout=5)
    with conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert trace.n_attempts == 1 and trace.attempts[0].outcome == "ok"
    assert trace.connected_at is not None and trace.gave_up is None


def test_refused_attempts_follow_the_strategy_then_give_up_with_the_trace() -> None:
    sleep = FakeSleep()
    with pytest.raises(RetryError) as info:
        connect_with_retry(
            closed_port_dsn(), get_strategy("review"), sleep=sleep, rng=random.Random(5)
        )
    trace = info.value.trace
    assert trace.n_attempts == 10 and trace.gave_up == "max_attempts"
    assert {a.error_kind for a in trace.attempts} == {"refused"}
    expected = get_strategy("review").schedule(random.Random(5))
    assert sleep.calls == pytest.approx(expected)
    assert [a.sleep_after for a in trace.attempts[:-1]] == pytest.approx(expected)
    assert trace.attempts[-1].sleep_after is None


def test_error_message_masks_the_password() -> None:
    with pytest.raises(RetryError) as info:
        connect_with_retry(
            closed_port_dsn(), get_strategy("naive", max_attempts=2), sleep=FakeSleep()
        )
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)
    assert all(SECRET not in (a.message or "") for a in info.value.trace.attempts)
    assert SECRET not in info.value.trace.to_frame().to_csv()


def test_deadline_truncates_the_last_sleep_and_stops() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(RetryError) as info:
        connect_with_retry(closed_port_dsn(), "naive", deadline=1.2, clock=clock, sleep=sleep)
    trace = info.value.trace
    assert trace.gave_up == "deadline" and trace.n_attempts == 3
    assert trace.attempts[-1].sleep_truncated
    assert now[0] == pytest.approx(1.2)


def test_wrong_password_is_not_retried(pg_server: PostgresServer) -> None:
    dsn = make_url(
        host=pg_server.host,
        port=pg_server.port or 0,
        user=pg_server.settings.user,
        password="definitely-wrong",
        dbname=pg_server.settings.dbname,
    )
    with pytest.raises(RetryError) as info:
        connect_with_retry(dsn, "naive", sleep=FakeSleep())
    trace = info.value.trace
    assert trace.n_attempts == 1 and trace.gave_up == "not_retryable"
    assert trace.attempts[0].sqlstate == "28P01"


@pytest.fixture
def tiny_server() -> Iterator[PostgresServer]:
    """A server that admits only a few connections."""
    settings = ServerSettings(
        backend="local", server_settings={**FAST_SERVER_SETTINGS, "max_connections": 5}
    )
    with create_server(settings) as server:
        yield server


def test_too_many_clients_is_recorded_as_sqlstate_53300(tiny_server: PostgresServer) -> None:
    held: list[psycopg.Connection] = []
    try:
        with pytest.raises(RetryError) as info:
            for _ in range(10):
                conn, _ = connect_with_retry(
                    tiny_server.dsn, get_strategy("naive", max_attempts=1), connect_timeout=5
                )
                held.append(conn)
        assert len(held) == 5
        assert info.value.trace.attempts[-1].sqlstate == "53300"
        assert info.value.trace.attempts[-1].error_kind == "too_many_clients"
    finally:
        for conn in held:
            conn.close()


def test_async_form_connects_and_records_the_attempt(pg_server: PostgresServer) -> None:
    async def main() -> tuple[object, int]:
        conn, trace = await async_connect_with_retry(
            pg_server.dsn, "full_jitter", connect_timeout=5
        )
        async with conn:
            cur = await conn.execute("SELECT 2")
            value = await cur.fetchone()
        return value, trace.n_attempts

    assert asyncio.run(main()) == ((2,), 1)


def test_async_form_gives_up_on_a_closed_port_after_max_attempts() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        await async_connect_with_retry(
            closed_port_dsn(), get_strategy("exponential", max_attempts=4), sleep=fake_sleep
        )

    with pytest.raises(RetryError) as info:
        asyncio.run(main())
    assert info.value.trace.n_attempts == 4
    assert slept == pytest.approx([0.1, 0.2, 0.4])


def test_async_timeout_is_exact_when_the_server_hangs(fresh_pg_server: PostgresServer) -> None:
    fresh_pg_server.pause()
    try:

        async def main() -> None:
            await async_connect_with_retry(
                fresh_pg_server.dsn,
                get_strategy("naive", max_attempts=2),
                connect_timeout=0.3,
                sleep=lambda s: asyncio.sleep(0),
            )

        with pytest.raises(RetryError) as info:
            asyncio.run(main())
    finally:
        fresh_pg_server.resume()
    attempts = info.value.trace.attempts
    assert [a.outcome for a in attempts] == ["timeout", "timeout"]
    assert all(a.timeout == 0.3 for a in attempts)


class SilentListener:
    """A TCP port that accepts connections and never answers (a hung server's socket)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.peers: list[socket.socket] = []
        port = self.sock.getsockname()[1]
        self.dsn = make_url(host="127.0.0.1", port=port, user="u", password=SECRET, dbname="d")

    def open_peers(self) -> int:
        """How many accepted connections the client has not closed yet."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.peers.append(self.sock.accept()[0])
        still_open = 0
        for peer in self.peers:
            try:
                while peer.recv(65536, socket.MSG_DONTWAIT):
                    pass
            except BlockingIOError:
                still_open += 1
        return still_open

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        self.sock.close()


def test_async_timed_out_attempt_closes_its_socket_before_the_sleep() -> None:
    listener = SilentListener()
    open_while_sleeping: list[int] = []

    async def sleep(seconds: float) -> None:
        open_while_sleeping.append(listener.open_peers())

    async def main() -> None:
        await async_connect_with_retry(
            listener.dsn,
            get_strategy("naive", max_attempts=3),
            connect_timeout=0.2,
            sleep=sleep,
        )

    try:
        with pytest.raises(RetryError) as info:
            asyncio.run(main())
        assert [a.outcome for a in info.value.trace.attempts] == ["timeout"] * 3
        assert open_while_sleeping == [0, 0]
        assert listener.open_peers() == 0  # the last one too, though the error is still held
    finally:
        listener.close()


def test_tenacity_wait_follows_the_strategy_schedule() -> None:
    strategy = get_strategy("full_jitter", max_attempts=5)
    slept: list[float] = []
    retrying = tenacity.Retrying(
        wait=as_tenacity_wait(strategy, rng_factory=lambda: random.Random(3)),
        stop=as_tenacity_stop(strategy),
        sleep=slept.append,
        reraise=True,
    )
    with pytest.raises(psycopg.OperationalError):
        retrying(psycopg.connect, closed_port_dsn())
    assert slept == pytest.approx(strategy.schedule(random.Random(3)))
