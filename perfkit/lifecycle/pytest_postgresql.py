"""Fixtures shaped like pytest-postgresql's, so a suite that uses them switches in one line.

In the suite's ``conftest.py``, replace the ``factories.postgresql_proc(...)`` /
``factories.postgresql(...)`` lines with::

    from perfkit.lifecycle.pytest_postgresql import postgresql, postgresql_proc  # noqa: F401

``postgresql`` is a psycopg 3 connection to a fresh, migrated database per
test (perfkit's isolation strategy, ``template`` by default; it is
``perfkit_db``), and ``postgresql_proc`` describes the server the way
pytest-postgresql's executor does (``host``, ``port``, ``user``,
``password``, ``dbname``, ``options``, ``version``). Migrations come from
``perfkit_migrations`` (pytest-postgresql's ``load=`` becomes that ini key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:
    import psycopg

    from perfkit.lifecycle.session import IsolationSession


@dataclass(frozen=True)
class ServerInfo:
    """What pytest-postgresql's ``postgresql_proc`` offers, for perfkit's shared server.

    ``host`` is a directory for servers reached over a unix socket (reused
    local servers); ``password`` is None where authentication needs none.
    """

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    dbname: str
    version: str
    options: str = ""


@pytest.fixture(scope="session")
def postgresql_proc(perfkit_session: IsolationSession) -> ServerInfo:
    """The shared server's connection facts (pytest-postgresql's ``postgresql_proc`` shape)."""
    server = perfkit_session.shared_server
    params = conninfo_to_dict(server.dsn)
    return ServerInfo(
        host=str(params.get("host", "127.0.0.1")),
        port=int(params.get("port", 5432)),
        user=str(params["user"]),
        password=params.get("password"),
        dbname=str(params["dbname"]),
        version=server.server_version(),
    )


@pytest.fixture
def postgresql(perfkit_db: psycopg.Connection) -> psycopg.Connection:
    """A psycopg connection to a fresh database (pytest-postgresql's ``postgresql`` shape)."""
    return perfkit_db
