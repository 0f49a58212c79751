"""How the isolation code connects: perfkit's defaults, and no password in any error."""

from __future__ import annotations

from typing import Any

import psycopg

from perfkit.dsn import mask

CONNECT_TIMEOUT_S = 10


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection:
    """Connect with perfkit's defaults (short timeout, no password in errors)."""
    try:
        return psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(mask(str(exc))) from None
