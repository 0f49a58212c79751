"""A background sampler of ``pg_stat_activity``: wait events counted, not stored.

:class:`WaitSampler` holds one dedicated connection (``application_name``
:data:`APPLICATION_NAME`) in its own thread and every ``interval_s`` asks the
server for its backends grouped by (wait_event_type, wait_event, state,
backend_type). It keeps only a count per group and the number of samples, so
its memory is bounded by the number of distinct groups PostgreSQL can report,
whatever the run's length. Its own backend (and any other perfkit sampler's) is
left out. When the connection drops (a restart) it reconnects every
``reconnect_s`` and counts the samples it missed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import psycopg

#: The sampler's (and the profiler's snapshots') application_name: left out of every sample.
APPLICATION_NAME = "perfkit-serverprofile"
#: A comment on every profiler query, so pg_stat_statements' top lists can leave them out.
MARKER = "/* perfkit-serverprofile */"
#: The wait event profile's key: (wait_event_type, wait_event, state, backend_type).
KEY_COLUMNS = ("wait_event_type", "wait_event", "state", "backend_type")

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
    thread_cpu_s: float = 0.0  # CPU time of the sampler's thread (its cost to this process)

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
                "thread_cpu_s": self.thread_cpu_s,
            }
            for key, n in sorted(self.counts.items())
        ]


class WaitSampler:
    """Sample ``pg_stat_activity`` every ``interval_s`` over one connection, in a thread."""

    def __init__(self, dsn: str, *, interval_s: float = 0.01, reconnect_s: float = 0.25) -> None:
        self._dsn = str(dsn)
        self.interval_s = interval_s
        self.reconnect_s = reconnect_s
        self._counts: Counter[Key] = Counter()
        self._samples = 0
        self._missed = 0
        self._query_s = 0.0
        self._thread_cpu_s = 0.0
        self._started = 0.0
        self._stopped: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perfkit-wait-sampler", daemon=True)
        self.error: str | None = None  # the last connection error, if any

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=2,
            application_name=APPLICATION_NAME,
        )

    def _sample(self, cur: psycopg.Cursor[Any]) -> None:
        t0 = time.perf_counter()
        cur.execute(QUERY, prepare=True)  # one prepared statement, one cursor: ~30 µs of CPU
        rows = cur.fetchall()
        spent = time.perf_counter() - t0
        with self._lock:
            for wtype, event, state, btype, n in rows:
                self._counts[(wtype, event, state, btype)] += int(n)
            self._samples += 1
            self._query_s += spent

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        cur: psycopg.Cursor[Any] | None = None
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._paused.is_set():  # connection kept, no query: costs nothing
                    self._stop.wait(self.interval_s)
                    next_at = time.monotonic()
                    continue
                try:
                    if conn is None or conn.closed or cur is None:
                        conn = self._connect()
                        cur = conn.cursor()
                    self._sample(cur)
                except psycopg.Error as exc:
                    self.error = f"{type(exc).__name__}: {exc}".strip()
                    if conn is not None:
                        conn.close()
                    conn, cur = None, None
                    self._missed += 1
                    self._stop.wait(self.reconnect_s)
                    next_at = time.monotonic()
                    continue
                # A fixed grid, not "interval after the last sample": the rate stays 1/interval.
                next_at += self.interval_s
                delay = next_at - time.monotonic()
                if delay < 0:  # fell behind: skip the missed ticks
                    self._missed += int(-delay // self.interval_s)
                    next_at = time.monotonic()
                    delay = 0.0
                self._stop.wait(delay)
        finally:
            if conn is not None:
                conn.close()
            self._thread_cpu_s = time.thread_time()

    def start(self) -> Self:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> Profile:
        """Stop the thread (its connection closed) and return what it counted."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._stopped is None:
            self._stopped = time.monotonic()
        return self.profile()

    def pause(self) -> None:
        """Stop sampling but keep the connection (for the overhead's interleaved windows)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def profile(self) -> Profile:
        """A copy of the counts so far (the sampler may still be running)."""
        end = self._stopped if self._stopped is not None else time.monotonic()
        with self._lock:
            return Profile(
                counts=dict(self._counts),
                samples=self._samples,
                missed=self._missed,
                elapsed_s=end - self._started if self._started else 0.0,
                query_s=self._query_s,
                thread_cpu_s=self._thread_cpu_s,
            )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
