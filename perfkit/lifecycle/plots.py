"""Matplotlib figures for the lifecycle notebook; each takes frames and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

MIB = 1024 * 1024


def _order(runs: pd.DataFrame) -> list[str]:
    return list(runs.groupby("strategy")["wall_s"].median().sort_values(ascending=False).index)


def suite_time(runs: pd.DataFrame) -> Figure:
    """Median suite wall time per strategy and worker count (log scale)."""
    table = runs.pivot_table(index="strategy", columns="workers", values="wall_s", aggfunc="median")
    table = table.loc[_order(runs)]
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.barh(ax=ax, logx=True)
    ax.set_xlabel("suite wall time (s, log scale)")
    ax.set_ylabel("")
    n = int(runs["tests"].median())
    ax.set_title(f"Suite of {n} tests: wall time per isolation strategy")
    ax.legend(title="pytest workers")
    fig.tight_layout()
    return fig


def isolation_cost(tests: pd.DataFrame) -> Figure:
    """Distribution of per-test isolation cost (acquire + release), log scale.

    Tests without a perfkit lease (the native baseline) have no such cost and are left out.
    """
    tests = tests.dropna(subset=["isolation", "isolation_s"])
    fig, ax = plt.subplots(figsize=(8, 4))
    order = list(tests.groupby("isolation")["isolation_s"].median().sort_values().index)
    data = [tests.loc[tests["isolation"] == s, "isolation_s"].clip(lower=1e-6) * 1e3 for s in order]
    ax.boxplot(data, vert=False, showfliers=True)
    ax.set_yticks(range(1, len(order) + 1), order)
    ax.set_xscale("log")
    ax.set_xlabel("per-test isolation cost: setup + teardown (ms, log scale)")
    ax.set_title("What each test pays for a clean database")
    fig.tight_layout()
    return fig


def peak_memory(runs: pd.DataFrame) -> Figure:
    """Peak memory (PSS) of pytest processes and servers/containers, per strategy and workers."""
    counts = sorted(runs["workers"].unique())
    fig, axes = plt.subplots(
        1, len(counts), figsize=(5 * len(counts), 4), sharex=True, squeeze=False
    )
    order = _order(runs)
    for ax, workers in zip(axes[0], counts, strict=True):
        subset = runs[runs["workers"] == workers]
        table = subset.groupby("strategy")[["peak_pytest_bytes", "peak_server_bytes"]].median()
        table = table.loc[[s for s in order if s in table.index]] / MIB
        table.columns = ["pytest processes", "servers / containers"]
        table.plot.barh(ax=ax, stacked=True, legend=False)
        ax.set_xlabel("peak memory (MiB, PSS)")
        ax.set_ylabel("")
        ax.set_title(f"workers={int(workers)}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2)
    fig.suptitle("Peak memory per strategy (each part's own peak, stacked)")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def serial_vs_parallel(runs: pd.DataFrame) -> Figure:
    """Suite time serial vs with xdist workers, per strategy (linear scale, ratio labels)."""
    table = runs.pivot_table(index="strategy", columns="workers", values="wall_s", aggfunc="median")
    table = table.loc[_order(runs)]
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("suite wall time (s)")
    ax.set_xlabel("")
    ax.set_title("Serial vs parallel (pytest-xdist -n); label: serial time / parallel time")
    if table.shape[1] >= 2:
        first, last = table.columns[0], table.columns[-1]
        for i, (_, row) in enumerate(table.iterrows()):
            ax.annotate(
                f"x{row[first] / row[last]:.2f}",
                (i, max(row[first], row[last])),
                ha="center",
                va="bottom",
            )
    ax.legend(title="pytest workers")
    fig.tight_layout()
    return fig


def versus_native(table: pd.DataFrame, goal: float | None = None) -> Figure:
    """Suite time of each strategy over the native baseline's, with its bootstrap interval.

    ``table`` is :func:`perfkit.lifecycle.analysis.versus_native`; ``goal`` draws
    the target ratio as a dashed line.
    """
    data = table[table["strategy"] != "native"].sort_values(["workers", "ratio"])
    labels = [
        f"{s} (n={n})" + (f", -n {w}" if data["workers"].nunique() > 1 else "")
        for s, n, w in zip(data["strategy"], data["n"], data["workers"], strict=True)
    ]
    fig, ax = plt.subplots(figsize=(8, 0.6 * max(len(data), 2) + 1.5))
    errors = [
        (data["ratio"] - data["ratio_low"]).clip(lower=0).fillna(0),
        (data["ratio_high"] - data["ratio"]).clip(lower=0).fillna(0),
    ]
    ax.barh(range(len(data)), data["ratio"], xerr=errors, capsize=4, color="tab:blue")
    ax.set_yticks(range(len(data)), labels)
    ax.axvline(1.0, color="black", linewidth=1)
    if goal is not None:
        ax.axvline(goal, color="tab:red", linestyle="--", label=f"goal {goal:g}x")
        ax.legend(loc="lower right")
    for i, ratio in enumerate(data["ratio"]):
        ax.annotate(f"{ratio:.2f}x", (ratio, i), xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("suite wall time / native suite wall time (median, 95% bootstrap interval)")
    ax.set_title("A fresh database per test vs the suite on one shared database")
    fig.tight_layout()
    return fig
