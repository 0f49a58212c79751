"""Who owns each session's databases on a reused server, and which owners are gone.

On a reused server (``--perfkit-reuse``) a session's databases are named
``pk_<token>_<worker>_…`` (:class:`~perfkit.lifecycle.names.Namer`; the token
is random per process). A session killed with SIGKILL cannot drop them, and
the server outlives it, so without an owner record they stay forever: one more
set per kill. Each session therefore writes its owner once, before it creates
its first database, and every later session, when it starts, drops the
databases of owners that are dead (:func:`orphans`), never those of a live
concurrent session.

**Where the owner is written.** One row per session in a small table,
``perfkit_owners``, in the server's maintenance database (the one perfkit
connects to for ``CREATE DATABASE``; templates and clones never copy it),
keyed by the token in the database names. Not a ``COMMENT ON DATABASE`` on
each database, because:

- one ``INSERT`` per session, before any ``CREATE DATABASE``, instead of one
  ``COMMENT`` after every clone: nothing is added to a test's path (a
  ``template`` clone is on it);
- no window between ``CREATE DATABASE`` and ``COMMENT`` in which a kill
  leaves a database whose owner nobody wrote (a later session could not tell
  it from a live session's database it has not commented yet);
- an adopted parked database changes owner by its rename alone, and the
  template keeps its comment for the clone strategy it remembers.

The sweep reads the database names *before* the owner rows: a name it sees
was created after its owner's row was committed, so a live session's
database is never mistaken for one without an owner. A matching database
with no owner row at all (made by a perfkit from before this table) counts as
orphaned.

**Who is dead** (:func:`owner_is_dead`, a pure function): the owner row holds
the PID, the process's start time (clock ticks since boot from
``/proc/<pid>/stat``, immune to wall-clock steps; psutil elsewhere), the host
name and the kernel's boot id. An owner on another host name (another machine,
or a container with its own PID namespace, sharing the server) cannot be
judged and is left alone; on this host an owner from an earlier boot is dead,
and so is one whose PID is gone, a zombie, or reused by a process that
started at another time.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg

from perfkit.lifecycle.names import FAILED_PREFIX, PREFIX, READY_PREFIX, TEMPLATE_PREFIX

TABLE = "perfkit_owners"
#: Two start times closer than this are the same process (ticks are 10 ms apart).
START_TOLERANCE_S = 0.5
#: Per-session names: ``pk_<6 hex token>_<worker>_<purpose>`` (the token is Namer's default).
SESSION_NAME = re.compile(rf"^{PREFIX}_([0-9a-f]{{6}})_")
_SHARED = (TEMPLATE_PREFIX, READY_PREFIX, FAILED_PREFIX)

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    token text PRIMARY KEY,
    pid integer NOT NULL,
    started double precision NOT NULL,
    host text NOT NULL,
    boot text NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Owner:
    """A process that owns databases: PID, start time (s since boot), host name, boot id."""

    pid: int
    started: float
    host: str
    boot: str

    @classmethod
    def this_process(cls) -> Owner:
        started = process_start(os.getpid())
        assert started is not None
        return cls(os.getpid(), started, socket.gethostname(), boot_id())


def owner_is_dead(owner: Owner, here: Owner, started_now: float | None) -> bool:
    """Whether ``owner`` is gone, seen from the process ``here``.

    ``started_now`` is the start time of the process that has ``owner.pid`` on
    this host now (None: no such process, or a zombie). An owner on another host
    is never judged dead: its PID means nothing here.
    """
    if owner.host != here.host:
        return False
    if owner.boot != here.boot:
        return True
    if started_now is None:
        return True
    return abs(started_now - owner.started) > START_TOLERANCE_S


@cache
def boot_id() -> str:
    """The kernel's boot id (Linux), else the boot time: changes when the machine reboots."""
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    import psutil

    return f"boot-{psutil.boot_time():.0f}"


def process_start(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since boot; None when it is gone or a zombie."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"
        if fields[0] in ("Z", "X"):
            return None
        return int(fields[19]) / os.sysconf("SC_CLK_TCK")
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time() - psutil.boot_time()
    except psutil.Error:
        return None


def token_of(dbname: str) -> str | None:
    """The session token in a per-session database name (None for shared and foreign names)."""
    if dbname.startswith(_SHARED):
        return None
    match = SESSION_NAME.match(dbname)
    return match.group(1) if match else None


def register(conn: psycopg.Connection, token: str, owner: Owner) -> None:
    """Record ``owner`` for ``token`` (autocommit ``conn`` to the maintenance database)."""
    for attempt in range(3):
        try:
            conn.execute(CREATE_TABLE)
            break
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            if attempt == 2:  # concurrent CREATE TABLE IF NOT EXISTS: the other one won
                raise
    conn.execute(
        f"INSERT INTO {TABLE} (token, pid, started, host, boot) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (token) DO UPDATE SET pid = EXCLUDED.pid, started = EXCLUDED.started, "
        "host = EXCLUDED.host, boot = EXCLUDED.boot, since = now()",
        [token, owner.pid, owner.started, owner.host, owner.boot],
    )


def forget(conn: psycopg.Connection, tokens: Iterable[str]) -> None:
    """Delete the owner rows of ``tokens``."""
    tokens = list(tokens)
    if tokens:
        conn.execute(f"DELETE FROM {TABLE} WHERE token = ANY(%s)", [tokens])


@dataclass(frozen=True)
class Orphans:
    """What dead owners left: their databases (name, is it a template) and their tokens."""

    databases: list[tuple[str, bool]]
    tokens: list[str]


def orphans(
    conn: psycopg.Connection,
    *,
    here: Owner | None = None,
    start_of: Callable[[int], float | None] = process_start,
) -> Orphans:
    """The per-session databases whose owner is dead or unknown, and the dead owners' tokens."""
    here = here or Owner.this_process()
    # Names first, owner rows second (see the module docstring).
    listed = conn.execute(
        "SELECT datname, datistemplate FROM pg_database WHERE starts_with(datname, %s)",
        [f"{PREFIX}_"],
    ).fetchall()
    rows = conn.execute(f"SELECT token, pid, started, host, boot FROM {TABLE}").fetchall()
    owners = {token: Owner(pid, started, host, boot) for token, pid, started, host, boot in rows}
    dead = {
        token for token, owner in owners.items() if owner_is_dead(owner, here, start_of(owner.pid))
    }
    found = []
    for name, is_template in listed:
        token = token_of(name)
        if token is not None and (token in dead or token not in owners):
            found.append((name, bool(is_template)))
    return Orphans(sorted(found), sorted(dead))
