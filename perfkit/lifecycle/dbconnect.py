"""How the isolation code connects: perfkit's defaults, and no password in any error.

Two kinds of connection:

- :func:`connect`: what tests get. A connect timeout, and TCP keepalives and
  ``tcp_user_timeout`` so a peer that vanished is noticed; no limit on how
  long a test's statement may run.
- :func:`admin_connect`: perfkit's own work (cloning, dropping, truncating,
  the janitor). An operation that runs past a deadline makes the client
  check whether the server still answers a new connection
  (:class:`DeadlineConnection`); a paused container or a stopped postmaster
  cannot enforce a server-side timeout, so a hung server costs one deadline
  and one probe and raises :class:`~perfkit.errors.ServerUnresponsive`, while
  a merely slow statement (a large clone) goes on. ``lock_timeout`` bounds lock
  waits on the server.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

import psycopg

from perfkit.dsn import mask
from perfkit.errors import ServerUnresponsive

CONNECT_TIMEOUT_S = 10
#: How long an admin operation (CREATE DATABASE from the template, a forced DROP,
#: TRUNCATE) runs before perfkit checks whether the server still answers.
ADMIN_DEADLINE_S = 10.0
#: How long that check waits for a new connection and ``SELECT 1``.
PROBE_TIMEOUT_S = 5.0
#: Server-side bound on waiting for a lock in perfkit's own statements.
LOCK_TIMEOUT_MS = 60_000
#: Socket-level liveness for TCP connections (ignored by libpq on unix sockets).
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,  # ms: unacknowledged data for this long closes the socket
}


def connect(
    dsn: str, *, cls: type[psycopg.Connection] = psycopg.Connection, **kwargs: Any
) -> psycopg.Connection:
    """Connect with perfkit's defaults (short timeout, keepalives, no password in errors)."""
    try:
        return cls.connect(dsn, **{"connect_timeout": CONNECT_TIMEOUT_S, **KEEPALIVE, **kwargs})
    except psycopg.errors.ConnectionTimeout as exc:
        raise ServerUnresponsive(
            f"the PostgreSQL server did not answer a new connection within "
            f"{CONNECT_TIMEOUT_S} s ({mask(str(exc)).strip()})"
        ) from None
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(mask(str(exc))) from None


def admin_connect(dsn: str, *, deadline_s: float = ADMIN_DEADLINE_S) -> DeadlineConnection:
    """An autocommit connection for perfkit's own statements, watched every ``deadline_s``."""
    conn = connect(
        dsn,
        autocommit=True,
        cls=DeadlineConnection,
        options=f"-c lock_timeout={LOCK_TIMEOUT_MS}",
    )
    assert isinstance(conn, DeadlineConnection)
    conn.deadline_s = deadline_s
    conn.probe_dsn = dsn
    return conn


def server_answers(dsn: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the server accepts a new connection and runs ``SELECT 1`` within ``timeout_s``."""
    try:
        with psycopg.connect(
            dsn, connect_timeout=max(1, round(timeout_s)), autocommit=True, **KEEPALIVE
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


class DeadlineConnection(psycopg.Connection):
    """A connection whose operations are given up when the server stops answering.

    psycopg runs every operation through :meth:`wait`. A watcher thread checks
    each ``deadline_s`` whether the operation is still running; if so it probes
    the server with a new connection (:func:`server_answers`). A server that
    answers is only busy (a large clone, a slow checkpoint): the wait goes on.
    One that does not is hung, paused or stopped: the watcher shuts the
    socket down, which wakes the wait with an error, and the error becomes
    :class:`~perfkit.errors.ServerUnresponsive`. Connecting is bounded by
    ``connect_timeout`` instead.
    """

    deadline_s: float = ADMIN_DEADLINE_S
    probe_dsn: str | None = None

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        done, severed = threading.Event(), threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(done, severed), name="perfkit-deadline", daemon=True
        )
        watcher.start()
        try:
            return super().wait(*args, **kwargs)
        except psycopg.OperationalError:
            if not severed.is_set():
                raise
        finally:
            done.set()
        raise ServerUnresponsive(
            f"the PostgreSQL server did not answer perfkit's statement for {self.deadline_s:g} s "
            f"nor a new connection within {PROBE_TIMEOUT_S:g} s (hung, paused or stopped)"
        )

    def _watch(self, done: threading.Event, severed: threading.Event) -> None:
        while not done.wait(self.deadline_s):
            if self.probe_dsn is not None and server_answers(self.probe_dsn):
                continue  # busy, not hung
            if not done.is_set():
                severed.set()
                _sever(self)
            return


def _sever(conn: psycopg.Connection) -> None:
    """Shut ``conn``'s socket down (a duplicate of its fd, so libpq's stays valid to close)."""
    with (
        contextlib.suppress(psycopg.Error, OSError),
        socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)
