"""``template_strategy="auto"``: which ``CREATE DATABASE ... STRATEGY`` clones a template faster.

Both strategies are timed on the template (:data:`STRATEGY_PROBES` clones each,
interleaved) and the choice is kept as the template's comment, so a reused
template is not timed again.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import psycopg
from psycopg import sql

from perfkit.lifecycle.janitor import drop_force
from perfkit.lifecycle.settings import TEMPLATE_STRATEGIES

CLONE_STRATEGY_COMMENT = "perfkit clone strategy: "
#: Clones timed per strategy when ``template_strategy="auto"``.
STRATEGY_PROBES = 2


def remembered(admin: psycopg.Connection, template: str) -> str | None:
    """The strategy kept in ``template``'s comment by :func:`remember`, or None."""
    row = admin.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        [template],
    ).fetchone()
    kept = (row[0] or "").removeprefix(CLONE_STRATEGY_COMMENT) if row else ""
    return kept if kept in TEMPLATE_STRATEGIES else None


def time_strategies(
    admin: psycopg.Connection,
    template: str,
    *,
    probe_name: Callable[[], str],
    clock: Callable[[], float],
) -> dict[str, float]:
    """Median seconds of a clone of ``template`` per strategy (probes dropped again)."""
    timings: dict[str, list[float]] = {s: [] for s in TEMPLATE_STRATEGIES}
    for _ in range(STRATEGY_PROBES):
        for strategy in TEMPLATE_STRATEGIES:
            name = probe_name()
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.SQL(strategy.upper())
            )
            t0 = clock()
            admin.execute(query)
            timings[strategy].append(clock() - t0)
            drop_force(admin, name)
    return {s: statistics.median(v) for s, v in timings.items()}


def remember(admin: psycopg.Connection, template: str, strategy: str) -> None:
    """Keep ``strategy`` as ``template``'s comment (read back by :func:`remembered`)."""
    admin.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(template), sql.Literal(CLONE_STRATEGY_COMMENT + strategy)
        )
    )
