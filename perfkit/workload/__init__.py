"""Workloads from pgbench scripts: parse them, draw their variables, run them through psycopg.

A workload is a list of pgbench-format script files with weights
(``file.sql@7``). :func:`load_workload` parses them (errors name ``file:line``
before anything starts); :func:`run_script` runs one on a connection with a
client's :class:`ClientState` (seeded generator, variables bound as server-side
parameters); :func:`run_schema` gives a run its own schema, filled from schema
and seed files and dropped at the end. The same files run through pgbench
(``perfkit.pool.run_pgbench``), so both run the same queries.
"""

from __future__ import annotations

from perfkit.workload.execute import ClientState, WorkloadError, arun_script, run_script
from perfkit.workload.files import (
    BUILTIN_SCRIPTS,
    WeightedScript,
    load_workload,
    read_script,
    shipped_scripts,
)
from perfkit.workload.schema import SchemaError, leftover_schemas, run_schema
from perfkit.workload.script import Script, ScriptError, parse_script

__all__ = [
    "BUILTIN_SCRIPTS",
    "ClientState",
    "SchemaError",
    "Script",
    "ScriptError",
    "WeightedScript",
    "WorkloadError",
    "arun_script",
    "leftover_schemas",
    "load_workload",
    "parse_script",
    "read_script",
    "run_schema",
    "run_script",
    "shipped_scripts",
]
