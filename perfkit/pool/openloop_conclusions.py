"""The open-loop paragraph of the pool lab's conclusions (Markdown), from its frames.

Per pool size: the knee of psycopg_pool and of pgbench ``--rate`` (the rule:
:data:`~perfkit.pool.openloop_sweep.KNEE_RULE`), their p99 side by side at
each rate tried (agreeing when within 25 % or the 95 % intervals overlap), and
what happened past the knee (goodput, late, skipped and failed requests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from perfkit.pool.latency import RESOLUTION
from perfkit.pool.openloop_sweep import KNEE_RULE

#: p99s of the two clients agree when within this relative gap, or when intervals overlap.
AGREE_GAP = 0.25
CLOSED_HEADING = (
    "**Closed loop** (each worker sends its next request only when its previous one is "
    "back, so a slow response also holds back the requests behind it): the size sweep, "
    "spike, timeouts, churn, recovery, presets, pgbench without --rate, processes and outages."
)


def _p99(row: pd.Series) -> str:
    if math.isnan(row["latency_p99_ms"]):
        return f"n/a (n={int(row['latency_p99_ms_n'])})"
    return (
        f"{row['latency_p99_ms']:.1f} [{row['latency_p99_ms_low']:.1f}, "
        f"{row['latency_p99_ms_high']:.1f}] ms (n={int(row['latency_p99_ms_n'])})"
    )


def p99_agree(a: pd.Series, b: pd.Series) -> bool:
    """Within :data:`AGREE_GAP` of each other, or 95 % intervals overlapping."""
    x, y = a["latency_p99_ms"], b["latency_p99_ms"]
    if not (x > 0 and y > 0):
        return False
    near = abs(x - y) / max(x, y) <= AGREE_GAP
    overlap = a["latency_p99_ms_low"] <= b["latency_p99_ms_high"] and (
        b["latency_p99_ms_low"] <= a["latency_p99_ms_high"]
    )
    return bool(near or overlap)


def _knee(knee: pd.DataFrame, client: str, size: int) -> str:
    k = knee[(knee["client"] == client) & (knee["connections"] == size)]
    if k.empty:
        return "not run"
    rate = k["knee_rps"].iloc[0]
    if pd.isna(rate):
        return "below the lowest rate tried"
    missed = int(k["failed_below"].iloc[0])
    note = f"; {missed} lower rate(s) missed" if missed else ""
    return f"{rate:,.0f} req/s (p99 {k['knee_p99_ms'].iloc[0]:.1f} ms{note})"


def _size_line(frame: pd.DataFrame, knee: pd.DataFrame, size: int) -> str:
    g = frame[(frame["connections"] == size) & (frame["repeat"] == 0)]
    pool = g[g["client"] == "pool"].set_index("offered_rps").sort_index()
    bench = g[g["client"] == "pgbench"].set_index("offered_rps")
    parts = []
    for rate, row in pool.iterrows():
        text = f"{rate:,.0f} offered: pool p99 {_p99(row)}"
        if rate in bench.index:
            other = bench.loc[rate]
            verdict = "agree" if p99_agree(row, other) else "differ"
            text += f" vs pgbench {_p99(other)} ({verdict})"
        text += (
            f", goodput {row['goodput_rps']:,.0f} req/s, {int(row['late'])} late, "
            f"{int(row['skipped'])} skipped, {int(row['failed'])} failed"
        )
        parts.append(text)
    return (
        f"Open loop, pool size {size}: knee of psycopg_pool {_knee(knee, 'pool', size)}, "
        f"of pgbench --rate with {size} connections {_knee(knee, 'pgbench', size)}. "
        + "; ".join(parts)
        + "."
    )


def open_loop_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The open-loop heading and one line per pool size (none when the stage did not run)."""
    frame = frames.get("open_loop")
    if frame is None or frame.empty:
        return []
    knee = frames["open_knee"]
    first = frame.iloc[0]
    lines = [
        f"**Open loop** (requests arrive at an offered rate, {first['arrivals']} arrivals, "
        "seeded, whether or not earlier ones are back; latency from each request's intended "
        "start, queueing in the pool included; late: over "
        f"{first['latency_limit_ms']:g} ms; skipped: already that late when a thread took it, "
        "as pgbench does; failed: no connection within the pool timeout. Latencies: "
        f"{RESOLUTION}; p99 intervals are order-statistic 95 % intervals, n = requests; "
        f"pool and pgbench agree when within {AGREE_GAP:.0%} or their intervals overlap). "
        f"Here {KNEE_RULE}."
    ]
    lines += [_size_line(frame, knee, int(s)) for s in sorted(frame["connections"].unique())]
    return lines
