"""Run a parsed script on a psycopg connection: variables per client, values bound server-side.

:class:`ClientState` is one client's (worker's) state, as in pgbench: its own
seeded generator and its variables, kept across transactions. :func:`run_script`
runs every command of a script on a connection (``\\set`` evaluates, ``\\sleep``
sleeps holding the connection, SQL executes with the variables as bound
parameters and fetches every row); :func:`arun_script` is the asyncio twin.
A failed evaluation raises :class:`WorkloadError` naming ``file:line``; SQL
errors propagate as psycopg errors (a failed request).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from perfkit.errors import PerfkitError
from perfkit.workload.expr import EvalError, Value, evaluate
from perfkit.workload.script import Script, SetCommand, SleepCommand, SqlCommand


class WorkloadError(PerfkitError):
    """A script failed outside SQL (an expression's error); the message names file:line."""


@dataclass
class ClientState:
    """One client's generator and variables (``client_id``, ``random_seed``, given ones)."""

    seed: int
    client_id: int
    defined: Mapping[str, Value] = field(default_factory=dict)
    rng: random.Random = field(init=False)
    variables: dict[str, Value] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"perfkit-workload:{self.seed}:{self.client_id}")
        self.variables = {
            "client_id": self.client_id,
            "random_seed": self.seed,
            "default_seed": self.seed,
            "scale": 1,
            **self.defined,
        }


def _set(script: Script, cmd: SetCommand, state: ClientState) -> None:
    try:
        state.variables[cmd.var] = evaluate(cmd.expression, state.variables, state.rng)
    except EvalError as exc:
        raise WorkloadError(f"{script.where}:{cmd.line}: \\set {cmd.var}: {exc}") from None


def _sleep_s(script: Script, cmd: SleepCommand, state: ClientState) -> float:
    amount = cmd.amount
    if isinstance(amount, str):
        value = state.variables.get(amount)
        if not isinstance(value, int) or isinstance(value, bool):
            raise WorkloadError(
                f"{script.where}:{cmd.line}: \\sleep :{amount} needs an integer, got {value!r}"
            )
        amount = value
    return max(amount, 0) * cmd.unit_s


def _params(script: Script, cmd: SqlCommand, state: ClientState) -> tuple[Any, ...] | None:
    if not cmd.params:
        return None
    try:
        return tuple(state.variables[name] for name in cmd.params)
    except KeyError as exc:
        raise WorkloadError(
            f"{script.where}:{cmd.line}: undefined variable :{exc.args[0]}"
        ) from None


def run_script(
    conn: Any, script: Script, state: ClientState, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Run every command of ``script`` on ``conn`` (a psycopg connection)."""
    for cmd in script.commands:
        if isinstance(cmd, SqlCommand):
            params = _params(script, cmd, state)
            cur = conn.execute(cmd.query) if params is None else conn.execute(cmd.query, params)
            if cur.description is not None:
                cur.fetchall()
        elif isinstance(cmd, SetCommand):
            _set(script, cmd, state)
        elif (seconds := _sleep_s(script, cmd, state)) > 0:
            sleep(seconds)


async def arun_script(conn: Any, script: Script, state: ClientState) -> None:
    """:func:`run_script` on an async connection."""
    for cmd in script.commands:
        if isinstance(cmd, SqlCommand):
            params = _params(script, cmd, state)
            cur = await (
                conn.execute(cmd.query) if params is None else conn.execute(cmd.query, params)
            )
            if cur.description is not None:
                await cur.fetchall()
        elif isinstance(cmd, SetCommand):
            _set(script, cmd, state)
        else:
            await asyncio.sleep(_sleep_s(script, cmd, state))
