"""A background sampler of ``pg_stat_activity``: wait events counted, not stored.

:class:`WaitSampler` holds one dedicated connection (``application_name``
:data:`APPLICATION_NAME`) in a process of its own and every ``interval_s`` asks
the server for its backends grouped by (wait_event_type, wait_event, state,
backend_type). It keeps only a count per group and the number of samples, so
its memory is bounded by the number of distinct groups PostgreSQL can report,
whatever the run's length. Its own backend (and any other perfkit sampler's) is
left out. When the connection drops (a restart) it reconnects every
``reconnect_s`` and counts the samples it missed.

Why a process and not a thread: a thread waking 100 times a second in the
measuring process competes for the GIL with the lab's Python clients; on
``SELECT 1`` through a pool of 16 threads that cost 9-21 % of throughput here,
the same sampler in a process of its own 0.4-0.9 % (``tests/test_serverprofile_bench.py``).
The child is spawned (not forked: the parent runs threads holding connections),
is driven over a pipe and exits when the pipe closes, so it cannot outlive its
parent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from types import TracebackType
from typing import Any, Self

import psycopg

#: The sampler's (and the profiler's snapshots') application_name: left out of every sample.
APPLICATION_NAME = "perfkit-serverprofile"
#: A comment on every profiler query, so pg_stat_statements' top lists can leave them out.
MARKER = "/* perfkit-serverprofile */"
#: The wait event profile's key: (wait_event_type, wait_event, state, backend_type).
KEY_COLUMNS = ("wait_event_type", "wait_event", "state", "backend_type")
PROCESS_NAME = "perfkit-wait-sampler"
READY_TIMEOUT_S = 30.0

QUERY = (
    f"{MARKER} SELECT coalesce(wait_event_type, ''), coalesce(wait_event, ''), "
    "coalesce(state, ''), coalesce(backend_type, ''), count(*) "
    "FROM pg_stat_activity "
    f"WHERE pid <> pg_backend_pid() AND application_name IS DISTINCT FROM '{APPLICATION_NAME}' "
    "GROUP BY 1, 2, 3, 4"
)

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Profile:
    """What a sampler saw: backend counts per key summed over ``samples`` samples."""

    counts: dict[Key, int]
    samples: int
    missed: int
    elapsed_s: float
    query_s: float  # time spent in the sampler's own queries (its cost to the server)
    cpu_s: float = 0.0  # CPU time of the sampler's process (its cost to the client machine)
    error: str | None = None  # the last connection error, if any

    def rows(self, **tags: Any) -> list[dict[str, Any]]:
        """One row per key: the tags, the key's columns, ``count`` and the run's ``samples``."""
        return [
            tags
            | dict(zip(KEY_COLUMNS, key, strict=True))
            | {
                "count": n,
                "samples": self.samples,
                "missed": self.missed,
                "elapsed_s": self.elapsed_s,
                "query_s": self.query_s,
                "cpu_s": self.cpu_s,
            }
            for key, n in sorted(self.counts.items())
        ]


class _Loop:
    """The child's sampling loop: a fixed grid of ticks, commands read between them."""

    def __init__(self, dsn: str, interval_s: float, reconnect_s: float, pipe: Pipe) -> None:
        self.dsn, self.interval_s, self.reconnect_s, self.pipe = dsn, interval_s, reconnect_s, pipe
        self.counts: Counter[Key] = Counter()
        self.samples = self.missed = 0
        self.query_s = 0.0
        self.error: str | None = None
        self.paused = False
        self.conn: psycopg.Connection[Any] | None = None
        self.cur: psycopg.Cursor[Any] | None = None

        self.cpu0 = 0.0

    def snapshot(self) -> tuple[Any, ...]:
        cpu = time.process_time() - self.cpu0
        return (dict(self.counts), self.samples, self.missed, self.query_s, cpu, self.error)

    def reset(self) -> None:
        self.counts.clear()
        self.samples = self.missed = 0
        self.query_s = 0.0
        self.cpu0 = time.process_time()

    def sample(self) -> None:
        try:
            if self.conn is None or self.cur is None:
                self.conn = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=2, application_name=APPLICATION_NAME
                )
                self.cur = self.conn.cursor()
            t0 = time.perf_counter()
            self.cur.execute(QUERY, prepare=True)  # one prepared statement, one cursor
            rows = self.cur.fetchall()
            self.query_s += time.perf_counter() - t0
        except psycopg.Error as exc:
            self.error = f"{type(exc).__name__}: {exc}".strip()
            self.close()
            self.missed += 1
            raise
        for wtype, event, state, btype, n in rows:
            self.counts[(wtype, event, state, btype)] += int(n)
        self.samples += 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, self.cur = None, None

    def command(self, cmd: str) -> bool:
        """Handle one command; False to stop."""
        if cmd == "pause":
            self.paused = True
        elif cmd == "resume":
            self.paused = False
        elif cmd == "reset":
            self.reset()
            self.paused = False
        elif cmd == "profile":
            self.pipe.send(self.snapshot())
        elif cmd == "stop":
            self.close()
            self.pipe.send(self.snapshot())
            return False
        return True

    def run(self) -> None:
        next_at = time.monotonic()
        while True:
            delay = max(0.0, next_at - time.monotonic())
            if self.pipe.poll(delay):
                if not self.command(self.pipe.recv()):  # EOFError: the parent is gone
                    return
                continue
            if self.paused:  # connection kept, no query: costs nothing
                next_at = time.monotonic() + self.interval_s
                continue
            try:
                self.sample()
            except psycopg.Error:
                next_at = time.monotonic() + self.reconnect_s
                continue
            next_at += self.interval_s  # a fixed grid: the rate stays 1 / interval
            behind = time.monotonic() - next_at
            if behind > 0:  # fell behind: skip the missed ticks
                self.missed += int(behind // self.interval_s)
                next_at = time.monotonic()


def _child(dsn: str, interval_s: float, reconnect_s: float, pipe: Pipe) -> None:
    loop = _Loop(dsn, interval_s, reconnect_s, pipe)
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt, BrokenPipeError):
        with contextlib.suppress(psycopg.Error):
            loop.sample()  # connected (or not) before the parent goes on
        loop.reset()
        pipe.send("ready")
        loop.run()
    loop.close()


class WaitSampler:
    """Sample ``pg_stat_activity`` every ``interval_s`` over one connection, in a child process."""

    def __init__(self, dsn: str, *, interval_s: float = 0.01, reconnect_s: float = 0.25) -> None:
        self._dsn = str(dsn)
        self.interval_s = interval_s
        self.reconnect_s = reconnect_s
        self._lock = threading.Lock()
        self._pipe: Pipe | None = None
        self._proc: Any = None
        self._started = 0.0
        self._stopped: float | None = None
        self._final: Profile | None = None

    def start(self) -> Self:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child,
            args=(self._dsn, self.interval_s, self.reconnect_s, child),
            name=PROCESS_NAME,
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._pipe = parent
        # Sampling starts when start() returns: spawning the child takes a few 100 ms.
        if parent.poll(READY_TIMEOUT_S):
            with contextlib.suppress(EOFError, OSError):
                parent.recv()
        self._started = time.monotonic()
        return self

    def reset(self) -> None:
        """Start counting afresh (and sampling, if paused): one process for many blocks."""
        self._send("reset")
        self._started = time.monotonic()

    def _send(self, cmd: str, *, reply: bool = False) -> tuple[Any, ...] | None:
        with self._lock:
            if self._pipe is None:
                return None
            try:
                self._pipe.send(cmd)
                if reply and self._pipe.poll(10):
                    return self._pipe.recv()
            except (EOFError, OSError):
                return None
        return None

    def pause(self) -> None:
        """Stop sampling but keep the connection (for the overhead's interleaved windows)."""
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def stop(self) -> Profile:
        """Stop the child (its connection closed first) and return what it counted."""
        if self._final is not None:
            return self._final
        state = self._send("stop", reply=True)
        self._stopped = time.monotonic()
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        self._final = self._profile(state)
        return self._final

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def profile(self) -> Profile:
        """The counts so far (the sampler may still be running)."""
        if self._final is not None:
            return self._final
        return self._profile(self._send("profile", reply=True))

    def _profile(self, state: tuple[Any, ...] | None) -> Profile:
        end = self._stopped if self._stopped is not None else time.monotonic()
        elapsed = end - self._started if self._started else 0.0
        if state is None:
            return Profile({}, 0, 0, elapsed, 0.0, error="the sampler process did not answer")
        counts, samples, missed, query_s, cpu_s, error = state
        return Profile(counts, samples, missed, elapsed, query_s, cpu_s, error)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
