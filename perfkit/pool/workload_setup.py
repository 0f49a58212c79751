"""The pool lab's own workload on its server: scripts, the run's schema, pgbench's tables.

:class:`WorkloadPlan` is what the lab's parameters ask for: script files with
weights, schema and seed files, a pgbench builtin (its ``-i`` tables and
script) and the scale. :meth:`WorkloadPlan.writes` lists what a run would
create or write, which an external server refuses unless ``allow_writes``.
:func:`prepared` creates the run's schema (``perfkit_workload_<id>``) and fills
it, and yields the server as the lab should use it: the same server, its DSN
now starting sessions in that schema. Everything is dropped when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from perfkit.dsn import mask
from perfkit.errors import BackendUnavailable
from perfkit.loopback import targets
from perfkit.pool.pgbench import init_tables
from perfkit.pool.settings import DEFAULT_WORKLOAD, Query, script_mix
from perfkit.workload import BUILTIN_SCRIPTS, WeightedScript, load_workload, run_schema
from perfkit.workload.files import created_objects, read_sql_file
from perfkit.workload.schema import SCHEMA_PREFIX

PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_history", "pgbench_tellers")


@dataclass(frozen=True, kw_only=True)
class WorkloadPlan:
    """Script files (``file.sql@weight``), schema/seed files, a builtin and its scale."""

    workload: tuple[str, ...] = ()
    schema: tuple[str, ...] = ()
    seed_data: tuple[str, ...] = ()
    builtin: str | None = None
    scale: int = 1

    @property
    def refs(self) -> tuple[str, ...]:
        """The script files: as given, else the builtin's script, else the default mix."""
        if self.workload:
            return self.workload
        if self.builtin is not None:
            return (BUILTIN_SCRIPTS[self.builtin],)
        return DEFAULT_WORKLOAD

    @property
    def variables(self) -> tuple[tuple[str, int | float], ...]:
        """What the scripts get from outside: ``scale``."""
        return (("scale", self.scale),)

    def scripts(self) -> tuple[WeightedScript, ...]:
        """The parsed scripts (ScriptError naming file:line)."""
        return load_workload(self.refs, defined=[name for name, _ in self.variables])

    def mix(self) -> tuple[Query, ...]:
        """The scripts as the pool's query mix."""
        return script_mix(self.scripts())

    @property
    def needs_schema(self) -> bool:
        """Whether the run makes its own schema (schema/seed files or a builtin)."""
        return bool(self.schema or self.seed_data or self.builtin)

    def writes(self) -> list[str]:
        """What a run creates or writes on the server, in words (empty: it only reads)."""
        out = []
        if self.needs_schema:
            made = []
            for path in (*self.schema, *self.seed_data):
                made += [f"{obj} (from {path})" for obj in created_objects(read_sql_file(path)[1])]
            if self.builtin:
                made.append(f"pgbench -i -s {self.scale} tables {', '.join(PGBENCH_TABLES)}")
            inside = f": {'; '.join(made)}" if made else ""
            out.append(f"schema {SCHEMA_PREFIX}<id> (dropped at the end){inside}")
        for w in self.scripts():
            if w.script.writes:
                out.append(f"writes from script {w.script.where}")
        return out


def check_answers(dsn: str, timeout_s: int = 5) -> None:
    """BackendUnavailable (password masked) unless the server at ``dsn`` answers ``SELECT 1``."""
    try:
        with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise BackendUnavailable(
            f"external PostgreSQL at {targets(dsn).describe()} does not answer: "
            f"{mask(str(exc)).strip()}"
        ) from None


class ServerView:
    """``server`` with another DSN (the run's schema first on ``search_path``)."""

    def __init__(self, server: Any, dsn: str) -> None:
        self._server = server
        self.dsn = dsn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


@contextmanager
def prepared(server: Any, plan: WorkloadPlan, *, bindir: str | None = None) -> Iterator[Any]:
    """``server`` ready for ``plan``'s scripts for the ``with`` block; the schema dropped after."""
    if not plan.needs_schema:
        yield server
        return

    def fill(dsn: str) -> None:
        if plan.builtin is not None:
            init_tables(dsn, scale=plan.scale, bindir=bindir)

    with run_schema(
        server.dsn, schema_files=plan.schema, seed_files=plan.seed_data, fill=fill
    ) as dsn:
        yield ServerView(server, dsn)
