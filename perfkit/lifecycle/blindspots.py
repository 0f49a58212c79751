"""Migrations ``verified`` cannot check: refused before the first test, naming their source.

``verified`` decides from the server whether a released database still equals
its template (:mod:`~perfkit.lifecycle.cleancheck`, with a stable DSN
:mod:`~perfkit.lifecycle.stablecheck`). A migration can make a database whose
changes those readers cannot see; trusting them then would hand the next test
a changed database. So the first database cloned from the template is looked
at before any test gets one, and the pool refuses (:class:`MigrationError`)
when it holds:

* foreign tables (``CREATE FOREIGN TABLE``, a foreign partition): their rows
  live on another server, so a test's writes through them move no tuple
  counter, no ``xmin`` and no relation of this database;
* tuple statistics switched off for the session perfkit reads with
  (``ALTER ROLE ... SET track_counts = off`` or ``ALTER DATABASE``): the
  counters the check compares never move, so every write would look clean;
* anything the readers fail on (an error while reading the first baseline,
  :func:`unreadable`), e.g. a sequence whose position perfkit's role (no
  superuser) was not allowed to read.

Unlogged tables, materialized views, partitions and large objects are read
like any other relation and pass. Seed rows that cannot be copied out (a
column type without binary output) are no reason to refuse: the check does
not need them; :class:`~perfkit.lifecycle.verified.VerifiedPool` then turns
reset in place off (``reset_unavailable`` event) and recreates changed
databases. The error names the migration file (and the statement's line when
one can be found) and what to use instead: ``warm-pool`` or ``template``,
which recreate every database rather than check it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg

from perfkit.dsn import mask
from perfkit.errors import MigrationError
from perfkit.lifecycle.migrations import Statement

__all__ = ["refuse_unverifiable", "unreadable", "unverifiable"]

_QUERY = """
SELECT (SELECT coalesce(array_agg(format('%I.%I', n.nspname, c.relname)
                                  ORDER BY n.nspname, c.relname), '{}')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'f'),
       current_setting('track_counts')
"""
#: What to do instead, in every refusal.
ADVICE = (
    "use --perfkit-isolation=warm-pool or template for this suite (they recreate every "
    "database instead of checking it), or leave these out of the migrations"
)


def _where(statements: Sequence[Statement], *needles: str) -> str | None:
    """``file:line`` of the first statement that contains every needle (case-insensitive)."""
    for statement in statements:
        text = statement.sql.casefold()
        if all(needle.casefold() in text for needle in needles):
            return f"{statement.source}:{statement.line}"
    return None


def unverifiable(conn: psycopg.Connection, statements: Sequence[Statement]) -> list[str]:
    """What in the database on ``conn`` (a fresh, idle session) ``verified`` cannot check.

    Read in a transaction of its own: ``conn`` is left idle.
    """
    with conn.transaction():
        row = conn.execute(_QUERY).fetchone()
    assert row is not None
    foreign, track_counts = list(row[0]), str(row[1])
    found = []
    for qualified in foreign:
        name = qualified.rsplit(".", 1)[-1].strip('"')
        where = _where(statements, "foreign", name)
        found.append(
            f"foreign table {qualified}{f' ({where})' if where else ''}: its rows live on "
            "another server, where perfkit cannot see a test's writes"
        )
    if track_counts != "on":
        where = _where(statements, "track_counts")
        found.append(
            f"track_counts = {track_counts} for perfkit's sessions"
            f"{f' ({where})' if where else ' (a role or database setting)'}: the tuple "
            "counters the check compares never move, so every write would look clean"
        )
    return found


def _sources(migrations: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in migrations) or "(none)"


def refuse_unverifiable(
    conn: psycopg.Connection, statements: Sequence[Statement], migrations: Sequence[Path]
) -> None:
    """:class:`MigrationError` when ``conn``'s database holds anything :func:`unverifiable`."""
    found = unverifiable(conn, statements)
    if found:
        raise MigrationError(
            f"isolation 'verified' cannot check databases made by the migrations "
            f"{_sources(migrations)} (--perfkit-migrations):\n  "
            + "\n  ".join(found)
            + f"\n{ADVICE}"
        )


def unreadable(exc: psycopg.Error, migrations: Sequence[Path]) -> MigrationError:
    """The error for a database the state readers fail on (raise it ``from`` ``exc``)."""
    return MigrationError(
        f"isolation 'verified' cannot read the state of a database made by the migrations "
        f"{_sources(migrations)} (--perfkit-migrations): {mask(str(exc)).strip()}\n{ADVICE}"
    )
