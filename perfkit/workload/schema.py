"""The run's own schema: created, filled from schema/seed files, dropped at the end.

:func:`run_schema` creates ``perfkit_workload_<id>`` on the server, applies the
schema and seed files inside it (``search_path`` set to it alone), lets the
caller fill it further (``pgbench -i`` for a builtin workload) and yields a DSN
whose connections see that schema first (``options=-c search_path=...``).
The schema is dropped (``CASCADE``) when the ``with`` block ends: on success,
on an exception and on Ctrl-C. :func:`leftover_schemas` lists what a run left.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from perfkit.dsn import SecretDsn, mask
from perfkit.errors import PerfkitError
from perfkit.workload.files import read_sql_file

SCHEMA_PREFIX = "perfkit_workload_"
CONNECT_TIMEOUT_S = 10


class SchemaError(PerfkitError):
    """A schema or seed statement failed (the message names file:line and the statement)."""


def new_schema_name() -> str:
    """A fresh schema name, ``perfkit_workload_<8 hex digits>``."""
    return SCHEMA_PREFIX + secrets.token_hex(4)


def with_search_path(dsn: str, schemas: Sequence[str]) -> SecretDsn:
    """``dsn`` whose sessions start with ``search_path`` = ``schemas`` (libpq ``options``)."""
    params = conninfo_to_dict(dsn)
    path = ",".join(schemas)
    extra = f"-c search_path={path}"
    params["options"] = f"{params['options']} {extra}" if params.get("options") else extra
    return SecretDsn(make_conninfo(**params))


def apply_files(dsn: str, schema: str, files: Sequence[str]) -> None:
    """Run every statement of ``files`` in ``schema`` (one transaction per file)."""
    for path in files:
        _, statements = read_sql_file(path)
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            for st in statements:
                try:
                    conn.execute(st.text.encode())
                except psycopg.Error as exc:
                    raise SchemaError(
                        f"{path}:{st.line}: {mask(str(exc)).strip()}\n  in: {st.text[:200]}"
                    ) from None


def drop_schema(dsn: str, schema: str) -> None:
    """``DROP SCHEMA IF EXISTS schema CASCADE`` (any connection of the run is gone by now)."""
    with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def leftover_schemas(dsn: str) -> list[str]:
    """Schemas named ``perfkit_workload_*`` on the server (a finished run leaves none)."""
    with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1",
            (SCHEMA_PREFIX.replace("_", r"\_") + "%",),
        ).fetchall()
    return [r[0] for r in rows]


@contextmanager
def run_schema(
    dsn: str,
    *,
    schema_files: Sequence[str] = (),
    seed_files: Sequence[str] = (),
    fill: Callable[[str], None] | None = None,
    name: str | None = None,
) -> Iterator[SecretDsn]:
    """The run's schema for the ``with`` block; yields the DSN that uses it.

    ``fill`` gets a DSN whose ``search_path`` is the schema alone (for ``pgbench
    -i``, which then cannot touch tables elsewhere).
    """
    schema = name or new_schema_name()
    with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        apply_files(dsn, schema, [*schema_files, *seed_files])
        if fill is not None:
            fill(with_search_path(dsn, [schema]))
        yield with_search_path(dsn, [schema, "public"])
    finally:
        drop_schema(dsn, schema)
