"""Where an experiment's PostgreSQL server comes from: Docker, local binaries or a DSN.

Use :func:`create_server` with :class:`ServerSettings`; ``backend="auto"``
picks Docker when a daemon answers and the image is usable, else local
binaries, and :func:`choose_backend` says which and why.
"""

from perfkit._exports import lazy
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.factory import BackendChoice, choose_backend, create_server
from perfkit.postgres.settings import FAST_SERVER_SETTINGS, ServerSettings

_HOMES = {  # loaded on first use: psutil and PgBouncer's files are not needed to start a server
    "measure_cpu": "perfkit.postgres.cpu",
    "CpuUsage": "perfkit.postgres.cpu",
    "PgBouncer": "perfkit.postgres.pgbouncer",
    "PgBouncerSettings": "perfkit.postgres.pgbouncer",
}

__all__ = [
    *_HOMES,
    "FAST_SERVER_SETTINGS",
    "BackendChoice",
    "PostgresServer",
    "ServerSettings",
    "choose_backend",
    "create_server",
]

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
