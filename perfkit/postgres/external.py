"""External backend: a PostgreSQL server someone else runs, reached through a DSN.

Nothing is started or stopped; outage controls are unavailable. The DSN is
checked before any experiment runs, and errors name host:port, never the
password.
"""

from __future__ import annotations

import ipaddress

import psycopg
from psycopg.conninfo import conninfo_to_dict

from perfkit.dsn import host_port, mask
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.settings import ServerSettings

LOOPBACK_NAMES = {"localhost", ""}


def check_loopback(dsn: str) -> None:
    """Refuse DSNs that point anywhere but loopback addresses or unix sockets."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid DSN {mask(dsn)!r}: {mask(str(exc))}") from None
    for host in str(params.get("host") or "").split(","):
        host = host.strip()
        if host in LOOPBACK_NAMES or host.startswith("/"):
            continue
        try:
            if ipaddress.ip_address(host.strip("[]")).is_loopback:
                continue
        except ValueError:
            pass
        raise ConfigError(
            f"DSN host {host!r} is not a loopback address or unix socket; perfkit only "
            "sends benchmark traffic to 127.0.0.1, ::1, localhost or a socket directory"
        )


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
                f"external PostgreSQL at {host_port(self.dsn)} does not answer: "
                f"{mask(str(exc)).strip()}"
            ) from None

    def _teardown(self) -> None:
        """Nothing to remove: the server is not ours."""

    def memory_bytes(self) -> int:
        raise BackendUnavailable("memory of an external server cannot be measured from here")
