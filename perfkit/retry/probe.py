"""Independent observers of a server during an experiment, each in its own thread.

- :class:`ReadinessProbe` polls every ``interval`` seconds (connect +
  ``SELECT 1``) and records when the server *actually* became ready, so a
  client's overshoot (connected minus ready) does not depend on the client.
- :class:`BackendSampler` holds one connection and samples the number of
  client backends in ``pg_stat_activity`` (server-side view of a herd).
- :func:`connection_log_times` reads ``connection received`` lines from the
  server's log (``log_connections=on``; a local server's log file or a
  container's output) to count attempts at the server.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import psycopg

from perfkit.dsn import mask
from perfkit.serverprofile.sampler import APPLICATION_NAME as PROFILER_APPLICATION_NAME

if TYPE_CHECKING:
    from perfkit.postgres.base import PostgresServer

PROBE_INTERVAL_S = 0.01


class ReadinessProbe:
    """Poll ``dsn`` from a thread until the first success after ``since``.

    ``ready_at`` is the ``time.monotonic()`` of the end of the first
    successful probe (the probe stops there: it adds no load afterwards).
    """

    def __init__(self, dsn: str, *, interval: float = PROBE_INTERVAL_S, timeout: float = 120.0):
        self._dsn = dsn
        self.interval = interval
        self.timeout = timeout
        self.ready_at: float | None = None
        self.started_at: float | None = None
        self.probes = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness-probe", daemon=True)

    def start(self) -> Self:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self.probes += 1
                try:
                    with psycopg.connect(self._dsn, connect_timeout=2, autocommit=True) as conn:
                        conn.execute("SELECT 1")
                    self.ready_at = time.monotonic()
                    return
                except psycopg.Error as exc:
                    self.last_error = mask(str(exc).strip().splitlines()[0] if str(exc) else "")
                self._stop.wait(self.interval)
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> float | None:
        """Block until the probe has seen the server ready (or gave up); return ``ready_at``."""
        self._done.wait(timeout if timeout is not None else self.timeout + 5)
        return self.ready_at

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class BackendSampler:
    """Sample ``count(*)`` of client backends every ``interval`` s over one held connection.

    It (re)connects by itself in a tight loop while the server is down, and
    counts itself out of the samples.
    """

    # The server profiler's sessions (perfkit.serverprofile) are not the experiment's clients.
    QUERY = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
        f"AND application_name IS DISTINCT FROM '{PROFILER_APPLICATION_NAME}'"
    )

    def __init__(self, dsn: str, *, interval: float = 0.05) -> None:
        self._dsn = dsn
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backend-sampler", daemon=True)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._dsn, connect_timeout=2, autocommit=True)
                asked = time.monotonic()  # the snapshot is at least this recent
                row = conn.execute(self.QUERY).fetchone()
                self.samples.append((asked, int(row[0]) if row else 0))
            except psycopg.Error:
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(0.01)
                continue
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def sampled_after(self, t: float) -> bool:
        """Whether a sample was taken after monotonic time ``t``."""
        return bool(self.samples) and self.samples[-1][0] > t

    def peak(self) -> int:
        return max((n for _, n in self.samples), default=0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# log_line_prefix '%m ' -> "2026-11-26 23:59:01.123 UTC LOG:  connection received: ..."
_RECEIVED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+) .*connection received: host="
)

#: Server settings that make :func:`connection_log_times` work.
LOG_CONNECTION_SETTINGS = {"log_connections": "on", "log_line_prefix": "%m "}


def connection_log_times(server: PostgresServer, *, wall_to_mono: float) -> list[float] | None:
    """Monotonic times of ``connection received`` lines in the server's log.

    ``wall_to_mono`` is ``time.monotonic() - time.time()`` taken at the start
    of the experiment. Returns None when the backend exposes no log.
    """
    text = server.log_text()
    if text is None:
        return None
    times: list[float] = []
    for line in text.splitlines():
        m = _RECEIVED.match(line)
        if not m:
            continue
        stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        # The server's time zone is UTC or, for a local server, ours.
        utc = m.group(2) in ("UTC", "GMT")
        stamp = stamp.replace(tzinfo=dt.UTC) if utc else stamp.astimezone()
        times.append(stamp.timestamp() + wall_to_mono)
    return times
