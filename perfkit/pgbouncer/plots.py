"""Figures of the PgBouncer lab, drawn from its saved frames."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perfkit.pgbouncer.analysis import values_of
from perfkit.pgbouncer.measure import BIN_S, VARIANTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# -- figures ------------------------------------------------------------------------------


def plot_latency(connect: pd.DataFrame) -> Figure:
    """ECDF of connect latency per variant, medians with 95 % intervals marked."""
    import matplotlib.pyplot as plt

    from perfkit.stats import quantile_interval

    fig, ax = plt.subplots(figsize=(8, 4))
    for i, variant in enumerate(v for v in VARIANTS if (connect["variant"] == v).any()):
        values = np.sort(values_of(connect, "ms", variant))
        est = quantile_interval(values)
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=f"C{i}")
        ax.axvspan(est.low, est.high, color=f"C{i}", alpha=0.2)
        ax.axvline(est.value, color=f"C{i}", ls="--", label=f"{variant}: {est.format(unit=' ms')}")
    ax.set_xscale("log")
    ax.set_xlabel("connect + SELECT 1 + close, ms (log)")
    ax.set_ylabel("fraction of connects")
    ax.set_title("Connect latency: median and 95 % interval shaded")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_throughput(throughput: pd.DataFrame, pool: pd.DataFrame) -> Figure:
    """Requests/s with 95 % intervals: connecting per request, and the application pool."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    t = throughput.set_index("variant")
    err = np.vstack([t["rps_bin_mean"] - t["rps_low"], t["rps_high"] - t["rps_bin_mean"]])
    ax1.bar(t.index, t["rps_bin_mean"], yerr=err, capsize=4, color=["C0", "C1", "C2"][: len(t)])
    ax1.set_title("connecting per request")
    ax1.set_xlabel("connection path")
    ax1.set_ylabel("requests/s (mean of 0.1 s bins, 95 % CI)")
    ax2.set_ylabel("requests/s (mean of 0.1 s bins, 95 % CI)")
    if not pool.empty:
        wide = pool.pivot(index="workers", columns="variant", values="rps_bin_mean")
        low = pool.pivot(index="workers", columns="variant", values="rps_low")
        high = pool.pivot(index="workers", columns="variant", values="rps_high")
        x = np.arange(len(wide.index))
        width = 0.8 / max(len(wide.columns), 1)
        for j, variant in enumerate(wide.columns):
            y = wide[variant].to_numpy()
            yerr = np.vstack([y - low[variant].to_numpy(), high[variant].to_numpy() - y])
            ax2.bar(x + j * width, y, width, yerr=yerr, capsize=3, label=variant)
        ax2.set_xticks(x + width * (len(wide.columns) - 1) / 2, [str(w) for w in wide.index])
        ax2.set_xlabel("worker threads")
        ax2.legend()
    ax2.set_title("application pool in front")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_storm(backends: pd.DataFrame, attempts: pd.DataFrame) -> Figure:
    """Server backends and client reconnect attempts over time, first storm of each variant."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, variant in enumerate(v for v in VARIANTS if (backends["variant"] == v).any()):
        b = backends[(backends["variant"] == variant) & (backends["rep"] == 0)]
        ax1.step(b["t_event_s"], b["backends"], where="post", color=f"C{i}", label=variant)
        a = attempts[(attempts["variant"] == variant) & (attempts["rep"] == 0)]
        if not a.empty:
            lo, hi = a["t_event_s"].min(), a["t_event_s"].max()
            edges = np.arange(math.floor(lo / BIN_S) * BIN_S, hi + 2 * BIN_S, BIN_S)
            counts, edges = np.histogram(a["t_event_s"], bins=edges)
            ax2.step(edges[:-1], counts / BIN_S, where="post", color=f"C{i}", label=variant)
    ax1.set_ylabel("client backends at the server")
    ax2.set_ylabel("client reconnect attempts/s (0.1 s bins)")
    for ax in (ax1, ax2):
        ax.axvline(0, color="grey", ls=":", lw=1)
        ax.set_xlabel("s since the restart began")
        ax.grid(alpha=0.3)
        ax.legend()
    ax1.set_title("server backends over the storm")
    ax2.set_title("reconnect attempts (to the server or PgBouncer)")
    fig.tight_layout()
    return fig


def plot_modes(mode_servers: pd.DataFrame) -> Figure:
    """Server connections over time, session vs transaction mode."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (variant, g) in enumerate(mode_servers.groupby("variant")):
        ax.plot(g["t_s"], g["server_connections"], color=f"C{i}", label=f"{variant} (SHOW POOLS)")
        ax.plot(g["t_s"], g["sv_active"], color=f"C{i}", ls=":", label=f"{variant}: sv_active")
    ax.set_xlabel("s since the clients started")
    ax.set_ylabel("server connections")
    ax.set_title("Session vs transaction mode: server connections for the same clients")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_where(frames: Mapping[str, pd.DataFrame]) -> Figure | None:
    """Where the server's time went, direct vs through PgBouncer and per mode (None: no
    profile in the run)."""
    from perfkit.pgbouncer.timeprofile import figure_profile
    from perfkit.serverprofile.plots import plot_where_time_went

    rows, order = figure_profile(frames.get("wait_profile"))
    if rows.empty:
        return None
    return plot_where_time_went(rows, order=order, xlabel="part: variant")
