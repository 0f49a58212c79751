"""How the isolation code connects: perfkit's defaults, and no password in any error.

Two kinds of connection:

- :func:`connect`: what tests get. A connect timeout, and TCP keepalives and
  ``tcp_user_timeout`` so a peer that vanished is noticed; no limit on how
  long a test's statement may run.
- :func:`admin_connect`: perfkit's own work (cloning, dropping, truncating,
  the janitor). Every operation on it has a deadline enforced on the client
  (:class:`DeadlineConnection`) besides ``statement_timeout`` and
  ``lock_timeout`` on the server: a paused container or a stopped postmaster
  cannot enforce anything, so a hung server costs at most one deadline and
  raises :class:`~perfkit.errors.ServerUnresponsive`.
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
#: Longest any single admin operation (CREATE DATABASE from the template, a forced
#: DROP, TRUNCATE of the tables) may take before the server is declared hung.
ADMIN_DEADLINE_S = 15.0
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
    """An autocommit connection for perfkit's own statements, each bounded by ``deadline_s``."""
    ms = int(deadline_s * 1000)
    conn = connect(
        dsn,
        autocommit=True,
        cls=DeadlineConnection,
        options=f"-c statement_timeout={ms} -c lock_timeout={ms}",
    )
    assert isinstance(conn, DeadlineConnection)
    conn.deadline_s = deadline_s
    return conn


class DeadlineConnection(psycopg.Connection):
    """A connection whose every operation is given up after ``deadline_s`` seconds.

    psycopg runs every operation through :meth:`wait`; a timer shuts the socket
    down when the deadline passes, which wakes the wait with an error, and the
    error becomes :class:`~perfkit.errors.ServerUnresponsive`. Connecting is
    bounded by ``connect_timeout`` instead.
    """

    deadline_s: float = ADMIN_DEADLINE_S

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        fired = threading.Event()
        timer = threading.Timer(self.deadline_s, _sever, (self, fired))
        timer.daemon = True
        timer.start()
        try:
            return super().wait(*args, **kwargs)
        except psycopg.OperationalError:
            if not fired.is_set():
                raise
        finally:
            timer.cancel()
        raise ServerUnresponsive(
            f"the PostgreSQL server did not answer perfkit's statement within "
            f"{self.deadline_s:g} s (hung, paused or stopped)"
        )


def _sever(conn: psycopg.Connection, fired: threading.Event) -> None:
    """Shut ``conn``'s socket down (a duplicate of its fd, so libpq's stays valid to close)."""
    fired.set()
    with (
        contextlib.suppress(psycopg.Error, OSError),
        socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)
