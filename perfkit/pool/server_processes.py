"""The PostgreSQL server processes behind a run's connections: count, kill, wait for them.

Each client connection is served by one server process (PostgreSQL calls it a
"backend"; here that word means docker/local, so this module says "server
process"). Every run tags its connections with a unique ``application_name`` so
that ``pg_stat_activity`` tells exactly which server processes belong to it
(other tests may share the server). Used for the "no connection leaked" guarantee and to
simulate a DBA killing them (``pg_terminate_backend``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import psycopg

ADMIN_APP = "perfkit-pool-admin"


def new_application_name(prefix: str = "perfkit-pool") -> str:
    """A unique ``application_name`` for one run's connections."""
    return f"{prefix}-{secrets.token_hex(5)}"


def count_server_processes(dsn: str, application_name: str) -> int:
    """Server processes serving this ``application_name``'s connections right now."""
    with psycopg.connect(
        dsn, autocommit=True, connect_timeout=5, application_name=ADMIN_APP
    ) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def terminate_server_processes(dsn: str, application_name: str) -> int:
    """``pg_terminate_backend`` every server process of this ``application_name``; how many."""
    with psycopg.connect(
        dsn, autocommit=True, connect_timeout=5, application_name=ADMIN_APP
    ) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def wait_for_no_server_processes(
    dsn: str,
    application_name: str,
    *,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll until no server process has this name (they exit a moment after the client closes).

    Returns the count left at the end: 0 means nothing leaked.
    """
    deadline = clock() + timeout
    while True:
        left = count_server_processes(dsn, application_name)
        if left == 0 or clock() >= deadline:
            return left
        sleep(0.02)
