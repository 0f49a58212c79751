"""The plugin's one-line-per-strategy terminal summary, computed from its timing records.

For every strategy: tests served and on which backend, how many waited for their database, acquire
and release p50/p99; for the warm pool also the clones made and its refill
rate (databases per second its cloners produce) next to the consumption rate
(databases per second the tests took); for ``verified`` also how many released
databases were reused clean, reset in place and recreated, with the p50/p99 of
the check on each path (the recreated path adds a clone, shown with the clones).
With a stable DSN the same three paths are counted apart (``stable DSN: ...``):
there they run on the test's path, in the release, and a recreate includes its
drop and clone; and how many checks read the changes from the WAL rather than
scanning every table and catalog (with a hint when none could).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

#: Strategies with background cloners.
POOLS = ("warm-pool", "verified")
#: An acquire longer than this counts as a wait (a queue get or a cached connection is ~0.1 ms).
WAIT_S = 0.001


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def summary_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """Human-readable lines, one per strategy that served tests."""
    tests: dict[str, list[dict[str, Any]]] = defaultdict(list)
    clones: list[float] = []
    recycled: dict[str, list[float]] = defaultdict(list)
    stable: dict[str, list[float]] = defaultdict(list)
    checks: dict[str, int] = defaultdict(int)  # stable DSN: how changes were found
    backends: set[str] = set()
    workers = 1
    for record in records:
        if record["event"] == "server_start" and record.get("backend"):
            backends.add(str(record["backend"]) + (" (reused)" if record.get("reused") else ""))
        if record["event"] == "test":
            tests[record["strategy"]].append(record)
        elif record["event"] == "pool_clone":
            clones.append(record["seconds"])
        elif record["event"] in ("pool_reuse", "pool_reset", "pool_dirty"):
            (stable if record.get("stable") else recycled)[record["event"]].append(
                record["seconds"]
            )
            if record.get("stable") and record.get("check"):
                checks[str(record["check"])] += 1
        elif record["event"] == "session_setup" and record["strategy"] in POOLS:
            workers = int(record["clone_workers"])
    lines = []
    where = f" on {', '.join(sorted(backends))}" if backends else ""
    for strategy, rows in sorted(tests.items()):
        acquire = [r["acquire_s"] for r in rows]
        release = [r["release_s"] for r in rows]
        waited = sum(a > WAIT_S for a in acquire)
        line = (
            f"{strategy}: {len(rows)} tests{where}, {waited} waited for a database; "
            f"acquire p50 {_ms(percentile(acquire, 0.5))} p99 {_ms(percentile(acquire, 0.99))}, "
            f"release p50 {_ms(percentile(release, 0.5))} p99 {_ms(percentile(release, 0.99))}"
        )
        if strategy in POOLS and clones:
            refill = workers / statistics.median(clones)
            consumed = [r["t_acquired"] for r in rows]
            span = max(consumed) - min(consumed)
            consumption = (len(consumed) - 1) / span if span > 0 else float("nan")
            line += (
                f"; {len(clones)} clones (p50 {_ms(statistics.median(clones))}, {workers} "
                f"workers): refill {refill:.0f}/s vs consumption {consumption:.0f}/s"
            )
            if consumption > refill and not stable:  # a stable DSN needs no clones
                line += " (tests outpace the cloners: raise --perfkit-clone-workers)"
        if strategy == "verified" and (recycled or not stable):
            line += "; " + _recycled(recycled)
        if strategy == "verified" and stable:
            line += "; stable DSN: " + _recycled(stable) + _checks(checks)
        lines.append(line)
    return lines


def _checks(checks: dict[str, int]) -> str:
    """How the stable DSN's checks found what changed: from the WAL or by a full scan."""
    wal, scan = checks.get("wal", 0), checks.get("scan", 0)
    if not wal + scan:
        return ""
    if not wal:
        return (
            f"; every change check ({scan}) scanned all tables and catalogs (install "
            "pg_walinspect in the server's default database, as a superuser, to read them "
            "from the WAL)"
        )
    return f"; changes read from the WAL in {wal} of {wal + scan} checks"


def _recycled(recycled: dict[str, list[float]]) -> str:
    """``N reused clean (check p50 .. p99 ..), M recreated (...)``."""
    parts = []
    paths = (
        ("pool_reuse", "reused clean"),
        ("pool_reset", "reset in place"),
        ("pool_dirty", "recreated"),
    )
    for event, label in paths:
        seconds = recycled.get(event, [])
        part = f"{len(seconds)} {label}"
        if seconds:
            part += (
                f" (check p50 {_ms(percentile(seconds, 0.5))} p99 {_ms(percentile(seconds, 0.99))})"
            )
        parts.append(part)
    return ", ".join(parts)
