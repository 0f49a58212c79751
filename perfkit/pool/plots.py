"""Matplotlib figures of the pool lab's frames (each function returns a Figure);
:func:`figures` is the report's sequence of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from perfkit.pool import timeprofile
from perfkit.pool.analysis import FINDINGS_FRAME
from perfkit.pool.openloop_plots import open_loop_latency
from perfkit.pool.sweeps import aggregate_size, rule_of_thumb
from perfkit.postgres.cpu import CLIENT_BOUND_PCT
from perfkit.serverprofile.plots import CAPTION, plot_where_time_went


def throughput_vs_size(runs: pd.DataFrame, n_cores: int) -> Figure:
    """Successful requests/s vs pool size, one line per worker count; no-pool dashed.

    Each point is the median over repeats; faint dots are the single runs. A
    red cross marks a point where the client was CPU-bound (its median client
    CPU at or above :data:`~perfkit.postgres.cpu.CLIENT_BOUND_PCT` % of a core).
    """
    raw = runs[runs["experiment"] == "size"]
    size = aggregate_size(runs)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bound_label = f"client-bound (client CPU >= {CLIENT_BOUND_PCT:.0f} % of a core)"
    for i, (w, g) in enumerate(size[size["pooled"]].groupby("workers")):
        g = g.sort_values("max_size")
        color = f"C{i}"
        ax.plot(g["max_size"], g["throughput_rps"], marker="o", color=color, label=f"{w} workers")
        if "client_bound" in g:
            bound = g[g["client_bound"].astype(bool)]
            if not bound.empty:
                ax.scatter(
                    bound["max_size"],
                    bound["throughput_rps"],
                    marker="x",
                    s=70,
                    color="red",
                    zorder=5,
                    label=bound_label,
                )
                bound_label = "_nolegend_"
        pts = raw[raw["pooled"] & (raw["workers"] == w)]
        if len(pts) > len(g):
            ax.scatter(pts["max_size"], pts["throughput_rps"], color=color, s=8, alpha=0.35)
        base = size[(~size["pooled"]) & (size["workers"] == w)]
        if not base.empty:
            ax.axhline(base["throughput_rps"].iloc[0], color=color, ls=":", lw=1)
    rule = rule_of_thumb(n_cores)
    ax.axvline(rule, color="grey", ls="--", lw=1)
    ax.annotate(f"(cores*2)+1 = {rule}", (rule, ax.get_ylim()[1]), ha="left", va="top", fontsize=8)
    ax.set_xlabel("pool size (min = max)")
    ax.set_ylabel("successful requests / s")
    ax.set_title("Throughput vs pool size (dotted: no pool, connect per request)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def wait_vs_size(runs: pd.DataFrame, n_cores: int) -> Figure:
    """Acquire-wait p50/p95/p99 vs pool size, one panel per worker count (log scale, medians)."""
    size = aggregate_size(runs)
    size = size[size["pooled"]]
    counts = sorted(size["workers"].unique())
    fig, axes = plt.subplots(1, len(counts), figsize=(4 * len(counts), 3.8), squeeze=False)
    for ax, w in zip(axes[0], counts, strict=True):
        g = size[size["workers"] == w].sort_values("max_size")
        for p, style in (("50", "-"), ("95", "--"), ("99", ":")):
            ax.plot(
                g["max_size"], g[f"wait_p{p}_ms"].clip(lower=1e-3), style, marker="o", label=f"p{p}"
            )
        ax.axvline(rule_of_thumb(n_cores), color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(f"{w} workers")
        ax.set_xlabel("pool size")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("getconn wait (ms)")
    axes[0][0].legend()
    fig.suptitle("Acquire wait percentiles vs pool size")
    fig.tight_layout()
    return fig


def breakdown(requests: pd.DataFrame, experiment: str = "presets") -> Figure:
    """Mean time per request split into queue wait, SQL and the rest of the hold, per pool."""
    df = requests[(requests["experiment"] == experiment) & requests["ok"]].copy()
    df["other_hold_ms"] = (df["hold_ms"] - df["sql_ms"]).clip(lower=0)
    means = df.groupby("pool")[["wait_ms", "sql_ms", "other_hold_ms"]].mean()
    fig, ax = plt.subplots(figsize=(8, 4))
    means.rename(
        columns={"wait_ms": "queue wait (getconn)", "sql_ms": "SQL", "other_hold_ms": "hold - SQL"}
    ).plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("mean ms per successful request")
    ax.set_ylabel("")
    ax.set_title(f"Latency breakdown ({experiment})")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def spike(stats: pd.DataFrame) -> Figure:
    """Pool size and waiting requests over time under a cold burst, per min_size."""
    df = stats[stats["experiment"] == "spike"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for name, g in df.groupby("pool"):
        ax1.step(g["t_s"], g["pool_size"], where="post", label=name)
        ax2.step(g["t_s"], g["requests_waiting"], where="post", label=name)
    for ax in (ax1, ax2):
        ax.axvline(0, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
    ax1.set_ylabel("pool_size")
    ax2.set_ylabel("requests_waiting")
    ax2.set_xlabel("seconds since the burst (workers start at 0)")
    ax1.legend()
    ax1.set_title("Spike test: the pool grows under a burst")
    fig.tight_layout()
    return fig


def checkout_cost(checkout: pd.DataFrame) -> Figure:
    """Distribution of getconn time with and without check_connection."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for flag, g in checkout.groupby("check"):
        values = g["checkout_ms"].sort_values().to_numpy()
        q = (pd.RangeIndex(len(values)) + 1) / len(values)
        ax.plot(values * 1000.0, q, label="check=" + str(flag))
    ax.set_xscale("log")
    ax.set_xlabel("getconn time (µs)")
    ax.set_ylabel("fraction of checkouts")
    ax.set_title("Checkout cost with / without test-before-acquire")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def churn(runs: pd.DataFrame) -> Figure:
    """Reconnects per minute and latency p99 / max per (max_idle, max_lifetime)."""
    df = runs[runs["experiment"] == "churn"].set_index("pool")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    df["reconnects_per_min"].plot.bar(ax=ax1, color="C1")
    ax1.set_ylabel("connections opened / min")
    df[["total_p99_ms", "total_max_ms"]].plot.bar(ax=ax2)
    ax2.set_ylabel("request latency (ms)")
    for ax in (ax1, ax2):
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=20)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Churn: short max_idle / max_lifetime")
    fig.tight_layout()
    return fig


def recovery(requests: pd.DataFrame, events: pd.DataFrame) -> Figure:
    """Outcome of each request over time per recovery case, with the injected faults."""
    df = requests[requests["experiment"] == "recovery"]
    cases = sorted(df["case"].unique())
    fig, axes = plt.subplots(
        len(cases), 1, figsize=(8, 1.6 * len(cases) + 0.6), sharex=True, squeeze=False
    )
    for ax, case in zip(axes[:, 0], cases, strict=True):
        g = df[df["case"] == case]
        ok = g[g["ok"]]
        bad = g[~g["ok"]]
        ax.scatter(ok["start_s"], ok["total_ms"], s=2, color="C0", label="ok")
        ax.scatter(
            bad["start_s"],
            bad["total_ms"].clip(lower=0.01),
            s=12,
            color="C3",
            marker="x",
            label="error",
        )
        for _, e in events[events["case"] == case].iterrows():
            ax.axvline(e["t_s"], color="grey", ls="--", lw=1)
            if e["end_s"] - e["t_s"] > 0.01:
                ax.axvline(e["end_s"], color="green", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(str(g["pool"].iloc[0]), fontsize=9)
    axes[-1, 0].set_xlabel(
        "seconds (dashed: action starts; dotted: it returned, e.g. server ready)"
    )
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def throughput_vs_connections(runs: pd.DataFrame, pgbench: pd.DataFrame) -> Figure:
    """Pool throughput vs connections next to pgbench's (the C reference), same axes.

    Pool lines: the size sweep's fixed pools (connections = pool size), one per
    worker count, medians over repeats. pgbench: one line per mode (``pgbench``,
    ``pgbench -C``) from :func:`perfkit.pool.pgbench.pgbench_sweep`, the mean
    over repeats, with the 95 % interval of each run's binned throughput as
    error bars.
    """
    size = aggregate_size(runs)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (w, g) in enumerate(size[size["pooled"]].groupby("workers")):
        g = g.sort_values("max_size")
        ax.plot(
            g["max_size"],
            g["throughput_rps"],
            marker="o",
            color=f"C{i}",
            label=f"pool, {w} workers",
        )
    for j, (label, g) in enumerate(pgbench.groupby("pool", sort=False)):
        agg = g.groupby("connections")[["throughput_rps", "tps_low", "tps_high"]].mean()
        agg = agg.sort_index()
        y = agg["throughput_rps"]
        err = [(y - agg["tps_low"]).clip(lower=0), (agg["tps_high"] - y).clip(lower=0)]
        ax.errorbar(
            agg.index,
            y,
            yerr=err,
            color="black",
            ls="--" if j else "-",
            marker="s",
            capsize=3,
            label=str(label),
        )
    ax.set_xlabel("connections (pool size / pgbench clients)")
    ax.set_ylabel("successful requests / s")
    ax.set_title("Throughput vs connections: Python pool vs pgbench")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _pgbench_best(pgbench: pd.DataFrame | None) -> pd.Series | None:
    """pgbench's row with the highest throughput (persistent connections), or None."""
    if pgbench is None or pgbench.empty:
        return None
    bench = pgbench[~pgbench["connect"].astype(bool)]
    return None if bench.empty else bench.loc[bench["throughput_rps"].idxmax()]


def multiproc(frame: pd.DataFrame, pgbench: pd.DataFrame | None = None) -> Figure:
    """Throughput (mean over bins, 95 % interval) vs worker processes; pgbench's best as a line.

    The second axis shows the client CPU (all processes, % of one core).
    """
    df = frame.sort_values("processes")
    fig, ax = plt.subplots(figsize=(7, 4))
    y = df["throughput_mean_rps"]
    err = [(y - df["throughput_low"]).clip(lower=0), (df["throughput_high"] - y).clip(lower=0)]
    ax.errorbar(df["processes"], y, yerr=err, marker="o", capsize=3, label="pool per process")
    for _, r in df[df["over_max_connections"].astype(bool)].iterrows():
        ax.annotate("> max_connections", (r["processes"], r["throughput_mean_rps"]), color="red")
    best = _pgbench_best(pgbench)
    if best is not None:
        ax.axhline(best["throughput_rps"], color="black", ls="--", lw=1)
        ax.axhspan(best["tps_low"], best["tps_high"], color="black", alpha=0.08)
        ax.annotate(
            f"pgbench, {int(best['connections'])} clients",
            (df["processes"].min(), best["throughput_rps"]),
            va="bottom",
            fontsize=8,
        )
    ax2 = ax.twinx()
    ax2.plot(df["processes"], df["client_cpu_pct"], color="C1", ls=":", marker=".")
    ax2.set_ylabel("client CPU, all processes (% of a core)", color="C1")
    ax2.set_ylim(bottom=0)
    ax.set_xticks(df["processes"])
    ax.set_xlabel("worker processes (each: its own pool and threads)")
    ax.set_ylabel("successful requests / s")
    ax.set_ylim(bottom=0)
    ax.set_title("Load from several interpreters")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def long_outage(frame: pd.DataFrame) -> Figure:
    """Time from "server back" to the first successful request, per setting and outage.

    A hatched bar up to the watch window means no request succeeded within it.
    """
    df = frame.sort_values(["mode", "reconnect_timeout_s", "outage_s"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(df) + 1.4))
    labels = [
        f"{r['mode']}, reconnect_timeout={r['reconnect_timeout_s']:g}s, down {r['outage_s']:g}s"
        for _, r in df.iterrows()
    ]
    for i, r in df.iterrows():
        if r["recovered"]:
            ax.barh(i, r["first_ok_after_up_s"], color="C0")
            ax.annotate(
                f" {r['first_ok_after_up_s']:.2f} s",
                (r["first_ok_after_up_s"], i),
                va="center",
                fontsize=8,
            )
        else:
            ax.barh(i, r["watch_s"], color="none", edgecolor="C3", hatch="//")
            ax.annotate(" not recovered", (r["watch_s"], i), va="center", fontsize=8, color="C3")
    ax.set_yticks(range(len(df)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the server being ready to the first successful request")
    ax.set_title("Pools after long outages (psycopg #1315, #370)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def figures(frames: Mapping[str, pd.DataFrame]) -> Iterator[tuple[str, Figure]]:
    """(caption, figure) for the report, from a run's frames alone."""
    runs, n = frames["runs"], int(frames[FINDINGS_FRAME]["cores"].iloc[0])
    yield "Closed loop: throughput vs pool size (x: client-bound runs)", throughput_vs_size(runs, n)
    pgbench = frames.get("pgbench")
    if pgbench is not None and not pgbench.empty:
        yield (
            "Closed loop: throughput vs connections, the pool next to pgbench",
            throughput_vs_connections(runs, pgbench),
        )
    yield "Closed loop: p99 wait for a connection vs pool size", wait_vs_size(runs, n)
    yield "Closed loop: cold burst (spike)", spike(frames["stats"])
    yield "Checkout cost with and without check", checkout_cost(frames["checkout"])
    mp = frames.get("multiproc")
    if mp is not None and not mp.empty:
        yield "Closed loop: throughput vs worker processes", multiproc(mp, pgbench)
    lo = frames.get("long_outage")
    if lo is not None and not lo.empty:
        yield "Closed loop: long outages, time to the first success", long_outage(lo)
    ol = frames.get("open_loop")
    if ol is not None and not ol.empty:
        yield (
            "Open loop: latency from intended start vs offered load, pgbench --rate beside",
            open_loop_latency(ol, frames["open_knee"]),
        )
    wp, order, top = timeprofile.at_top_workers(frames)
    if not wp.empty:
        yield (
            f"Closed loop: {CAPTION.lower()}: server wait events by pool size ({top} workers)",
            plot_where_time_went(wp, order=order, xlabel="max_size"),
        )
