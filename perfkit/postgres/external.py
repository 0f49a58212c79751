"""External backend: a PostgreSQL server someone else runs, reached through a DSN.

Nothing is started or stopped; outage controls are unavailable. The DSN is
checked before any experiment runs, and errors name host:port, never the
password.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from perfkit.dsn import mask
from perfkit.errors import BackendUnavailable
from perfkit.loopback import check_loopback, targets
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.settings import ServerSettings

__all__ = ["ExternalServer", "check_loopback"]


class ExternalServer(PostgresServer):
    """A server that already runs; perfkit only connects to it."""

    backend = "external"

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        assert settings.dsn is not None
        check_loopback(settings.dsn)
        params = conninfo_to_dict(settings.dsn)
        self.host = str(params.get("host") or "localhost")
        self.port = int(params.get("port") or 5432)

    @property
    def dsn(self) -> str:
        assert self.settings.dsn is not None
        return self.settings.dsn

    def dsn_for(self, dbname: str) -> str:
        from perfkit.dsn import with_dbname

        return with_dbname(self.dsn, dbname)

    def _launch(self) -> None:
        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"external PostgreSQL at {targets(self.dsn).describe()} does not answer: "
                f"{mask(str(exc)).strip()}"
            ) from None

    def _teardown(self) -> None:
        """Nothing to remove: the server is not ours."""

    def memory_bytes(self) -> int:
        raise BackendUnavailable("memory of an external server cannot be measured from here")
