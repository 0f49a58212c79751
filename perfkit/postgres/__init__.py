"""Where an experiment's PostgreSQL server comes from: Docker, local binaries or a DSN.

Use :func:`create_server` with :class:`ServerSettings`; ``backend="auto"``
picks Docker when a daemon answers and the image is usable, else local
binaries, and :func:`choose_backend` says which and why.
"""

from perfkit.postgres.base import PostgresServer
from perfkit.postgres.factory import BackendChoice, choose_backend, create_server
from perfkit.postgres.settings import FAST_SERVER_SETTINGS, ServerSettings

__all__ = [
    "FAST_SERVER_SETTINGS",
    "BackendChoice",
    "PostgresServer",
    "ServerSettings",
    "choose_backend",
    "create_server",
]
