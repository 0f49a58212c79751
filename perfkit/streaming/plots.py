"""The streaming lab's figures: memory over time and peak memory per method."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from perfkit.streaming.settings import METHODS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def plot_memory(memory: pd.DataFrame) -> Figure:
    """Memory over time per method: RSS growth (untraced runs) and Python heap (traced)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    first = memory[memory["repeat"] == 0]
    for i, method in enumerate(m for m in METHODS if m in set(first["method"])):
        g = first[first["method"] == method]
        untraced = g[~g["traced"]]
        traced = g[g["traced"] & (g["source"] == "child")]
        rss = untraced if not untraced.empty else g[g["traced"]]
        if (rss["source"] == "parent").any():
            rss = rss[rss["source"] == "parent"]
        ax1.plot(rss["t_s"], rss["rss_growth_bytes"] / 2**20, color=f"C{i}", label=method)
        if not traced.empty:
            ax2.plot(traced["t_s"], traced["py_bytes"] / 2**20, color=f"C{i}", label=method)
    ax1.set_title("process RSS above baseline")
    ax2.set_title("Python heap (tracemalloc)")
    for ax in (ax1, ax2):
        ax.set_xlabel("seconds since the query was sent")
        ax.set_ylabel("MiB")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Reading one large result: memory over time")
    fig.tight_layout()
    return fig


def plot_peaks(summary: pd.DataFrame) -> Figure:
    """Peak Python memory, RSS growth (log scale) and wall time per method."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    s = summary.set_index("method")
    (s[["py_peak_bytes", "rss_growth_bytes"]] / 2**20).rename(
        columns={"py_peak_bytes": "Python peak", "rss_growth_bytes": "RSS growth"}
    ).plot.bar(ax=ax1, logy=True)
    ax1.set_ylabel("MiB (log)")
    ax1.set_title("peak memory")
    s["wall_s"].plot.bar(ax=ax2, color="C2")
    ax2.set_ylabel("seconds")
    ax2.set_title("wall time (untraced)")
    for ax in (ax1, ax2):
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=0)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
