"""libpq's PG* variables for suites that find their server through the environment.

With ``--perfkit-export-pg-env`` (ini ``perfkit_export_pg_env = true``) the plugin
registers :class:`PgEnvFixtures`: a session-scoped autouse fixture that sets
``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD`` and ``PGDATABASE`` to the
session's migrated database before any fixture of the suite runs (plugin
autouse fixtures come first), and a test-scoped one that points them at the
test's own database where the test leases one (``perfkit_dsn``, ``perfkit_db``,
``postgresql``). What the DSN does not carry is unset: a ``PGPASSWORD`` left
over from CI must not reach a unix-socket server that has no password. Every
change is undone when its test, and finally the session, ends.

psycopg, psycopg2, asyncpg (which reads the same variables), SQLAlchemy with an
empty URL, Django with empty settings and ``psql``/``pg_dump`` subprocesses all
find the server this way. On a unix socket ``PGHOST`` is a directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from perfkit.lifecycle.strategies import Lease

#: libpq variable -> the conninfo key it stands for.
PG_VARS: Mapping[str, str] = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGDATABASE": "dbname",
}


def pg_env(dsn: str) -> dict[str, str | None]:
    """The PG* values that reach ``dsn``: None for what the DSN does not carry (unset it)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    out: dict[str, str | None] = {}
    for var, key in PG_VARS.items():
        value = params.get(key)
        out[var] = None if value in (None, "") else str(value)
    return out


def export(mp: pytest.MonkeyPatch, dsn: str) -> None:
    """Set (or unset) every PG* variable through ``mp``, so its undo restores them."""
    for var, value in pg_env(dsn).items():
        if value is None:
            mp.delenv(var, raising=False)
        else:
            mp.setenv(var, value)


class PgEnvFixtures:
    """The two autouse fixtures; registered as a plugin only when the option is on.

    ``lease_fixtures`` are the fixture names that lease a test its own database.
    """

    def __init__(self, lease_fixtures: frozenset[str]) -> None:
        self.lease_fixtures = lease_fixtures

    @pytest.fixture(scope="session", autouse=True)
    def perfkit_pg_env(self, perfkit_session_dsn: str) -> Iterator[str]:
        """PG* point at the session database from before the suite's first fixture on."""
        with pytest.MonkeyPatch.context() as mp:
            export(mp, perfkit_session_dsn)
            yield perfkit_session_dsn

    @pytest.fixture(autouse=True)
    def perfkit_pg_env_per_test(
        self, request: pytest.FixtureRequest, perfkit_pg_env: str
    ) -> Iterator[None]:
        """PG* point at the test's own database while a test that leases one runs."""
        if not self.lease_fixtures & set(request.fixturenames):
            yield
            return
        lease: Lease = request.getfixturevalue("perfkit_lease")
        if lease.dsn is None:  # rollback: one connection, no DSN; the session's stays
            yield
            return
        with pytest.MonkeyPatch.context() as mp:
            export(mp, lease.dsn)
            yield
