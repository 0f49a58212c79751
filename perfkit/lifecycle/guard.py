"""The dead-server guard of an isolation session: its end, and whether the server died.

A session remembers the failure that ended it. When that failure is
:class:`~perfkit.errors.ServerUnresponsive` the server is *dead*: every later
acquire raises it at once, without touching the server, and teardown sends no SQL.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from perfkit.errors import ConfigError, ServerUnresponsive

if TYPE_CHECKING:
    from perfkit.postgres import PostgresServer

log = logging.getLogger("perfkit.lifecycle.session")


class SessionGuard:
    """Whether a session may still be used: the failure that ended it, closing, closed."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        self.closing = False
        self.closed = False

    @property
    def dead(self) -> bool:
        """True once the server stopped answering."""
        return isinstance(self.failure, ServerUnresponsive)

    def declare_dead(
        self, cause: BaseException, server: PostgresServer | None, test_id: str = ""
    ) -> ServerUnresponsive:
        """Record that ``server`` stopped answering (once); return the failure to raise."""
        if not self.dead:
            where = (
                f"{server.backend} server {server.masked_dsn}" if server is not None else "server"
            )
            during = f" during {test_id}" if test_id else ""
            self.failure = ServerUnresponsive(
                f"perfkit: the PostgreSQL {where} stopped answering{during}: {cause} — "
                "the session is ended and every remaining test fails at once (is the "
                "container paused or the postmaster stopped?)"
            )
            log.error("%s", self.failure)
        assert isinstance(self.failure, ServerUnresponsive)
        return self.failure

    def check_usable(self) -> None:
        """Raise the failure that ended the session, or ConfigError once it is closed."""
        if self.failure is not None:
            raise self.failure
        if self.closed or self.closing:
            raise ConfigError("this isolation session is closed")
