"""The streaming lab's closing paragraph (Markdown), worded from :func:`.analysis.findings`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perfkit.streaming.settings import FULL_ROWS


def conclusions(c: Mapping[str, Any], methods: Sequence[str], batch_size: int) -> str:
    """The closing paragraph (Markdown), worded from the findings ``c``."""
    lines = [f"{int(c['rows']):,} rows, batches of {batch_size}:"]
    for m in methods:
        lines.append(
            f"  {m:>13}: Python peak {c[m + '_py_peak_mib']:8.1f} MiB, "
            f"RSS growth {c[m + '_rss_growth_mib']:8.1f} MiB, wall {c[m + '_wall_s']:.2f} s"
        )
    if "goal_10x_met" in c:
        lines.append(
            f"Streaming (server cursor / stream) vs fetchall: at least "
            f"{c['streaming_min_py_x_lower']:,.0f}x lower Python peak and "
            f"{c['streaming_min_rss_x_lower']:,.0f}x lower RSS growth; goal (>= 10x) met: "
            f"{c['goal_10x_met']}"
            + (
                "."
                if int(c["rows"]) >= FULL_ROWS
                else f" (the goal is stated for {FULL_ROWS:,} rows, not {int(c['rows']):,})."
            )
        )
    if "fetchmany" in methods:
        lines.append(
            "Client-side fetchmany keeps Python memory low but not RSS: libpq has already "
            "received the whole result before the first batch is returned."
        )
    return "\n".join(lines)
