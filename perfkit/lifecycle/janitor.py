"""Drop used test databases off the tests' path: a background thread with its own connection.

``DROP DATABASE`` waits while any session is still connected to the database
(PostgreSQL re-checks about every 100 ms), and code under test often leaves
one open (psycopg2's ``with connect()`` does not close). The janitor drops
with ``WITH (FORCE)``, which terminates those sessions first, and does it on
its own thread, so releasing a database costs a test only a queue put.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from perfkit.dsn import mask
from perfkit.errors import ServerUnresponsive

DROP_FORCE = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
_STOP = object()


def drop_force(conn: psycopg.Connection, name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)`` on an autocommit connection."""
    conn.execute(sql.SQL(DROP_FORCE).format(sql.Identifier(name)))


class Janitor:
    """Drops databases handed to :meth:`drop` on a background thread.

    ``connect`` opens the janitor's autocommit admin connection (on first use).
    ``on_dropped(name, seconds)`` is called after every drop; a failed drop is
    kept in :attr:`errors` and raised by :meth:`close`.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        *,
        on_dropped: Callable[[str, float], None] = lambda name, seconds: None,
        on_hung: Callable[[BaseException], object] = lambda exc: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._connect = connect
        self._on_dropped = on_dropped
        self._on_hung = on_hung
        #: Set when the server stopped answering: queued drops are skipped from then on.
        self.hung = threading.Event()
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="perfkit-janitor", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        """Queue ``name`` for dropping and return at once."""
        with self._idle:
            self._pending += 1
        self._queue.put(name)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every queued drop is done; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self, timeout: float = 60.0, *, abandon: bool = False) -> None:
        """Finish the queued drops, stop the thread and close its connection.

        With ``abandon`` (the server stopped answering) queued drops are skipped.
        """
        if abandon:
            self.hung.set()
        self.flush(timeout)
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self.errors and not self.hung.is_set():
            raise psycopg.OperationalError("could not drop: " + "; ".join(self.errors))

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                name = str(item)
                t0 = self._clock()
                try:
                    if self.hung.is_set():
                        continue  # the server went away with its databases
                    if conn is None or conn.closed or conn.broken:
                        conn = self._connect()
                    drop_force(conn, name)
                    self._on_dropped(name, self._clock() - t0)
                except ServerUnresponsive as exc:
                    self.hung.set()
                    self.errors.append(f"{name}: {exc}")
                    self._on_hung(exc)
                except Exception as exc:  # keep draining; reported by close()
                    self.errors.append(f"{name}: {mask(str(exc)).strip()}")
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
