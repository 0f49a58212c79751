"""Build PostgreSQL connection strings and mask their passwords for display.

psycopg is imported only by the functions that parse a DSN: masking and
building one cost the pytest plugin's configuration nothing.
"""

from __future__ import annotations

import re
from urllib.parse import quote

MASK = "***"

_URL_PASSWORD = re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class SecretDsn(str):
    """A DSN whose ``repr`` masks its password.

    It is a ``str`` (libpq and psycopg take it as is, ``str()`` and f-strings
    give the real value), but tracebacks, pytest's argument listings,
    ``--showlocals`` and the reprs of containers holding it show ``***``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretDsn({mask(str.__str__(self))!r})"


def secret(dsn: str | None) -> SecretDsn | None:
    """``dsn`` as a :class:`SecretDsn` (None stays None)."""
    return None if dsn is None else SecretDsn(dsn)


def make_url(*, host: str, port: int, user: str, password: str, dbname: str) -> str:
    """Return a ``postgresql://`` URL with every part percent-encoded."""
    return SecretDsn(
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}"
        f"@{host}:{port}/{quote(dbname, safe='')}"
    )


def make_socket_url(*, socket_dir: str, port: int, user: str, dbname: str) -> str:
    """``postgresql://user@/dbname?host=<socket dir>&port=<n>``: libpq's unix-socket URL."""
    return SecretDsn(
        f"postgresql://{quote(user, safe='')}@/{quote(dbname, safe='')}"
        f"?host={quote(socket_dir, safe='/')}&port={port}"
    )


def mask(text: str) -> str:
    """Replace every password in ``text`` (URL or key=value DSNs) with ``***``.

    Safe on arbitrary text such as exception messages, so it is applied to
    anything that might echo a DSN.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)


def with_dbname(dsn: str, dbname: str) -> str:
    """Return ``dsn`` pointing at another database, in key=value form."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return SecretDsn(make_conninfo(**params))


def host_port(dsn: str) -> str:
    """``host:port`` written in a DSN, for messages (never includes secrets).

    Where libpq would really connect, ``PG*`` variables and services included,
    is :func:`perfkit.loopback.targets`.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}"
