"""Where an experiment's PostgreSQL server comes from: Docker, local binaries or a DSN.

Use :func:`create_server` with :class:`ServerSettings`; ``backend="auto"``
picks Docker when a daemon answers and the image is usable, else local
binaries, and :func:`choose_backend` says which and why.
"""

from perfkit._exports import lazy

# Loaded on first use: the pytest plugin checks its settings (perfkit.postgres.settings) in
# every session, and must not pay for psycopg, psutil or PgBouncer's files there.
_HOMES = {
    "FAST_SERVER_SETTINGS": "perfkit.postgres.settings",
    "ServerSettings": "perfkit.postgres.settings",
    "PostgresServer": "perfkit.postgres.base",
    "BackendChoice": "perfkit.postgres.factory",
    "choose_backend": "perfkit.postgres.factory",
    "create_server": "perfkit.postgres.factory",
    "measure_cpu": "perfkit.postgres.cpu",
    "CpuUsage": "perfkit.postgres.cpu",
    "PgBouncer": "perfkit.postgres.pgbouncer",
    "PgBouncerSettings": "perfkit.postgres.pgbouncer",
}

__all__ = list(_HOMES)

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
