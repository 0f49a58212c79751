"""Where the server's time went in the PgBouncer lab: PgBouncer's own counters next to the
server's profile, and the profile frames shaped for the figure and the conclusions.

Profiled (:class:`perfkit.serverprofile.profiler.Profiler`): part 4 (the application pool,
``direct`` and ``transaction``, tag ``part = "pool"``) and part 5 (``session`` and
``transaction`` mode, ``part = "modes"``). Through a PgBouncer its ``SHOW STATS`` totals
are kept as deltas (source ``pgbouncer_stats``) and its ``SHOW POOLS`` row at the end
(``pgbouncer_pools``) with the server counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from perfkit.serverprofile import analysis


def _numbers(row: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def stats_source(bouncer: Any, database: str) -> Callable[[], dict[str, float]]:
    """``SHOW STATS`` totals of ``database`` (cumulative: the profiler takes their delta)."""

    def read() -> dict[str, float]:
        for row in bouncer.show("STATS"):
            if row.get("database") == database:
                return {k: v for k, v in _numbers(row).items() if k.startswith("total_")}
        return {}

    return read


def pools_row(bouncer: Any) -> dict[str, float]:
    """The server's ``SHOW POOLS`` row (client/server connection counts, maxwait)."""
    return _numbers(bouncer.pool())


def figure_profile(wait_profile: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]]:
    """The pool part at its largest worker count and the modes part, variants named
    ``part: variant``; (rows, order)."""
    if wait_profile is None or wait_profile.empty or "part" not in wait_profile:
        return pd.DataFrame(), []
    wp = wait_profile
    pool = wp[wp["part"] == "pool"]
    if not pool.empty:
        pool = pool[pool["workers"] == pool["workers"].max()]
    modes = wp[wp["part"] == "modes"]
    rows = pd.concat([pool, modes], ignore_index=True)
    rows = rows.assign(variant=rows["part"] + ": " + rows["variant"].astype(str))
    return rows, list(dict.fromkeys(rows["variant"]))


def sentence(frames: Mapping[str, pd.DataFrame]) -> str | None:
    """Where the server's time went, direct vs through PgBouncer and per mode; or None."""
    rows, order = figure_profile(frames.get("wait_profile"))
    if rows.empty:
        return None
    pool = [v for v in order if v.startswith("pool: ")]
    modes = [v for v in order if v.startswith("modes: ")]
    parts = []
    for group in (pool, modes):
        if group:
            parts.append(analysis.profile_sentence(rows, what="variant", order=group))
    text = " ".join(p[0].upper() + p[1:] for p in parts)
    return f"Where the server's time went (`pg_stat_activity` every 10 ms). {text}"
