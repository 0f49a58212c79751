"""The open-loop figure: latency percentiles and goodput against offered load, per pool size.

Kept apart from :mod:`perfkit.pool.plots` (which draws the closed-loop runs) so
each stays small; :func:`perfkit.pool.plots.figures` yields it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from perfkit.pool.latency import RESOLUTION

PERCENTILES = (("p50", "p50", "o"), ("p99", "p99", "s"), ("p999", "p99.9", "^"))
STYLES = {"pool": ("-", "psycopg_pool (threads)"), "pgbench": ("--", "pgbench --rate")}


def _medians(frame: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in frame.columns if c.startswith("latency_") or c.endswith("_rps")]
    cols = [c for c in cols if c != "offered_rps" and pd.api.types.is_numeric_dtype(frame[c])]
    keys = ["client", "connections", "offered_rps"]
    return frame.groupby(keys)[cols].median().reset_index()


def open_loop_latency(frame: pd.DataFrame, knee: pd.DataFrame) -> Figure:
    """Top: p50/p99/p99.9 from intended start vs offered rate (log y; bars: 95 % intervals;
    dashed: pgbench --rate at the same rate and connections). Bottom: achieved and on-time
    (goodput) requests/s vs offered. One column per pool size; grey lines mark the latency
    limit and the pool's knee."""
    med = _medians(frame)
    sizes = sorted(med["connections"].unique())
    fig, axes = plt.subplots(
        2, len(sizes), figsize=(5 * len(sizes), 7), squeeze=False, sharex="col"
    )
    limit = float(frame["latency_limit_ms"].iloc[0])
    for col, size in enumerate(sizes):
        top, bottom = axes[0][col], axes[1][col]
        for client, (ls, label) in STYLES.items():
            g = med[(med["client"] == client) & (med["connections"] == size)]
            g = g.sort_values("offered_rps")
            if g.empty:
                continue
            for i, (key, name, marker) in enumerate(PERCENTILES):
                y = g[f"latency_{key}_ms"]
                err = [y - g[f"latency_{key}_ms_low"], g[f"latency_{key}_ms_high"] - y]
                top.errorbar(
                    g["offered_rps"], y, yerr=err, ls=ls, marker=marker, color=f"C{i}",
                    capsize=2, label=f"{name} {label}",
                )  # fmt: skip
            bottom.plot(g["offered_rps"], g["achieved_rps"], ls=ls, marker="o", color="C0",
                        label=f"achieved, {label}")  # fmt: skip
            bottom.plot(g["offered_rps"], g["goodput_rps"], ls=ls, marker="x", color="C3",
                        label=f"on time (goodput), {label}")  # fmt: skip
        top.axhline(limit, color="grey", ls=":", lw=1)
        k = knee[(knee["client"] == "pool") & (knee["connections"] == size)]
        if not k.empty and pd.notna(k["knee_rps"].iloc[0]):
            for ax in (top, bottom):
                ax.axvline(float(k["knee_rps"].iloc[0]), color="grey", ls="--", lw=1)
        top.set_yscale("log")
        top.set_title(f"open loop, pool size {size} (= pgbench connections)")
        top.set_ylabel("latency from intended start (ms)")
        lim = float(med["offered_rps"].max()) * 1.05
        bottom.plot([0, lim], [0, lim], color="grey", lw=0.8)
        bottom.set_xlabel("offered load (requests/s)")
        bottom.set_ylabel("requests / s")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    axes[1][0].legend(fontsize=7)
    fig.suptitle(
        f"Open loop: latency vs offered load (limit {limit:g} ms dotted, pool's knee dashed)"
    )
    fig.text(0.01, 0.005, f"Latencies: {RESOLUTION}; medians over repeats.", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    return fig
