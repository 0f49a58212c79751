"""Matplotlib figures of the retry lab; each function takes frames and returns a Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

OUTCOME_COLORS = {"ok": "tab:green", "error": "tab:red", "timeout": "tab:orange"}
#: The readiness probe's poll: a client may connect up to this long before the probe sees it.
PROBE_POLL_MS = 10
NEGATIVE_NOTE = (
    f"below 0: the client connected before the probe (polling every {PROBE_POLL_MS} ms) "
    "saw the server ready"
)


def timelines(
    attempts: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    scenario: str,
    labels: Sequence[str],
    rep: int = 0,
    param_s: float | None = None,
) -> Figure:
    """One row per client: attempts as bars from start to end, coloured by outcome."""
    sel = attempts[(attempts["scenario"] == scenario) & (attempts["rep"] == rep)]
    rsel = runs[(runs["scenario"] == scenario) & (runs["rep"] == rep)]
    if param_s is not None:
        sel = sel[sel["param_s"] == param_s]
        rsel = rsel[rsel["param_s"] == param_s]
    labels = [lab for lab in labels if lab in set(sel["label"])]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(labels) + 1.6))
    for y, label in enumerate(labels):
        rows = sel[sel["label"] == label]
        for r in rows.itertuples():
            width = max(r.t_event_end_s - r.t_event_s, 0.004)
            ax.barh(
                y, width, left=r.t_event_s, height=0.5, color=OUTCOME_COLORS.get(r.outcome, "grey")
            )
    ready = rsel["ready_after_event_s"].dropna()
    if len(ready):
        ax.axvline(float(ready.median()), color="k", ls="--", lw=1, label="server ready (probe)")
    ax.axvline(0, color="grey", ls=":", lw=1, label="event (launch / restart / resume)")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("seconds from the event")
    ax.set_ylabel("strategy (one client)")
    title = f"{scenario}: each connection attempt from start to end"
    ax.set_title(title + (f", {param_s:g} s" if param_s is not None else ""))
    handles, _ = ax.get_legend_handles_labels()
    outcomes = [
        Patch(color=color, label=f"attempt: {name}") for name, color in OUTCOME_COLORS.items()
    ]
    ax.legend(handles=[*handles, *outcomes], loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def dkw_epsilon(n: int, level: float = 0.95) -> float:
    """Half-width of the Dvoretzky–Kiefer–Wolfowitz band of an ECDF of ``n`` values."""
    return float(np.sqrt(np.log(2 / (1 - level)) / (2 * n))) if n else float("nan")


def overshoot_ecdf(runs: pd.DataFrame, *, scenario: str, param_s: float | None = None) -> Figure:
    """ECDF of overshoot (connected minus ready) per client label, with a 95 % DKW band."""
    sel = runs[runs["scenario"] == scenario]
    if param_s is not None:
        sel = sel[sel["param_s"] == param_s]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, group in sel.groupby("label"):
        values = np.sort(group["overshoot_s"].dropna().to_numpy() * 1000)
        if len(values):
            ecdf = np.arange(1, len(values) + 1) / len(values)
            (line,) = ax.step(values, ecdf, where="post", label=f"{label} (n={len(values)})")
            eps = dkw_epsilon(len(values))
            ax.fill_between(
                values,
                np.clip(ecdf - eps, 0, 1),
                np.clip(ecdf + eps, 0, 1),
                step="post",
                color=line.get_color(),
                alpha=0.12,
                lw=0,
            )
    if (sel["overshoot_s"].dropna() < 0).any():
        ax.axvline(0, color="grey", ls=":", lw=1, label=NEGATIVE_NOTE)
    ax.set_xlabel("overshoot: connected - actually ready (ms)")
    ax.set_ylabel("fraction of runs (band: 95 % DKW)")
    suffix = f" ({param_s:g} s)" if param_s is not None else ""
    ax.set_title(f"Overshoot ECDF, {scenario}{suffix}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _errors(
    frame: pd.DataFrame, value: str, low: str, high: str, scale: float = 1.0
) -> np.ndarray | None:
    """Asymmetric error bars (2, n) from interval columns, or None when they are missing."""
    if low not in frame.columns or high not in frame.columns:
        return None
    v = frame[value].to_numpy(dtype=float)
    lo = np.clip(v - frame[low].to_numpy(dtype=float), 0, None)
    hi = np.clip(frame[high].to_numpy(dtype=float) - v, 0, None)
    return np.nan_to_num(np.vstack([lo, hi])) * scale


def pareto(summary: pd.DataFrame, *, scenario: str, param_s: float | None = None) -> Figure:
    """Work (median attempts) vs latency (median overshoot) with 95 % intervals; the front."""
    sel = summary[summary["scenario"] == scenario]
    if param_s is not None:
        sel = sel[sel["param_s"] == param_s]
    sel = sel.dropna(subset=["attempts_median", "overshoot_median_s"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.errorbar(
        sel["attempts_median"],
        sel["overshoot_median_s"] * 1000,
        xerr=_errors(sel, "attempts_median", "attempts_ci_low", "attempts_ci_high"),
        yerr=_errors(sel, "overshoot_median_s", "overshoot_ci_low_s", "overshoot_ci_high_s", 1000),
        fmt="o",
        capsize=3,
    )
    for r in sel.itertuples():
        n = f" (n={r.n})" if hasattr(r, "n") else ""
        ax.annotate(
            f"{r.label}{n}",
            (r.attempts_median, r.overshoot_median_s * 1000),
            fontsize=8,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ordered = sel.sort_values(["attempts_median", "overshoot_median_s"])
    front, best = [], np.inf
    for r in ordered.itertuples():
        if r.overshoot_median_s < best:
            front.append((r.attempts_median, r.overshoot_median_s * 1000))
            best = r.overshoot_median_s
    if front:
        xs, ys = zip(*front, strict=True)
        ax.step(xs, ys, where="post", color="tab:red", alpha=0.6, label="Pareto front")
        ax.legend()
    if (sel["overshoot_median_s"] < 0).any():
        ax.axhline(0, color="grey", ls=":", lw=1, label=NEGATIVE_NOTE)
        ax.legend(fontsize=7)
    ax.set_xlabel("median attempts (work), 95 % interval")
    ax.set_ylabel("median overshoot (ms), 95 % interval")
    suffix = f" ({param_s:g} s)" if param_s is not None else ""
    ax.set_title(f"Attempts vs overshoot, {scenario}{suffix}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def model_vs_real(comparison: pd.DataFrame, *, metric: str = "overshoot_median_s") -> Figure:
    """Predicted vs measured medians with both intervals, per scenario (diagonal: agreement)."""
    sel = comparison[comparison["metric"] == metric].dropna(subset=["measured"])
    scale = 1000.0 if metric.endswith("_s") else 1.0
    unit = " (ms)" if scale == 1000.0 else ""
    what = metric.removesuffix("_s").replace("_", " ")
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for (scenario, param_s), g in sel.groupby(["scenario", "param_s"], dropna=False):
        name = scenario if pd.isna(param_s) else f"{scenario} {param_s:g} s"
        ax.errorbar(
            g["predicted"] * scale,
            g["measured"] * scale,
            xerr=_errors(g, "predicted", "predicted_low", "predicted_high", scale),
            yerr=_errors(g, "measured", "measured_low", "measured_high", scale),
            fmt="o",
            capsize=3,
            label=name,
        )
        for r in g.itertuples():
            ax.annotate(
                r.label,
                (r.predicted * scale, r.measured * scale),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    values = pd.concat([sel["predicted"], sel["measured_high"]]) * scale
    top = float(np.nanmax(values)) if len(values) else 1.0
    low = min(0.0, float(np.nanmin(pd.concat([sel["predicted"], sel["measured_low"]]) * scale)))
    ax.plot([low, top], [low, top], color="grey", lw=1, label="measured = predicted")
    ax.set_xlabel(f"model: predicted median{unit}")
    ax.set_ylabel(f"real runs: measured median, 95 % interval{unit}")
    ax.set_title(f"Model vs real: {what}{unit}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def herd_model_check(
    table: pd.DataFrame, *, metric: str = "median_connected_after_ready_s"
) -> Figure:
    """Real vs simulated herds (medians over the herds, their intervals) for one metric:
    x = the contention model, y = the real herds, a marker per strategy and size."""
    sel = table[table["metric"] == metric].dropna(subset=["real", "sim"])
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for size, g in sel.groupby("n_clients"):
        ax.errorbar(
            g["sim"],
            g["real"],
            xerr=_errors(g, "sim", "sim_low", "sim_high", 1.0),
            yerr=_errors(g, "real", "real_low", "real_high", 1.0),
            fmt="o",
            capsize=3,
            label=f"{int(size):,} clients",
        )
        for r in g.itertuples():
            mark = "" if r.agrees else " ✗"
            ax.annotate(
                f"{r.strategy}{mark}",
                (r.sim, r.real),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    values = pd.concat([sel["sim_high"], sel["real_high"], sel["sim"], sel["real"]])
    top = float(np.nanmax(values)) * 1.05 if len(values) else 1.0
    ax.plot([0, top], [0, top], color="grey", lw=1, label="real = simulated")
    ax.fill_between([0, top], [0, top * 0.75], [0, top * 1.25], color="grey", alpha=0.12,
                    label="within ±25 %")  # fmt: skip
    what = metric.removesuffix("_s").replace("_", " ")
    ax.set_xlabel(f"contention model: {what} (s), median over simulated herds")
    ax.set_ylabel(f"real herds: {what} (s), median and range")
    ax.set_title(f"Herd model check: {what}")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def herd_rates(rates: pd.DataFrame, *, n_clients: int, source: str = "client") -> Figure:
    """Attempts per 100 ms after the restart, one panel per strategy."""
    sel = rates[(rates["n_clients"] == n_clients) & (rates["source"] == source)]
    names = list(dict.fromkeys(sel["label"]))
    fig, axes = plt.subplots(
        len(names), 1, figsize=(9, 1.6 * len(names) + 1), sharex=True, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        g = sel[sel["label"] == name]
        ax.bar(g["t_bin_s"], g["attempts"], width=0.1, align="edge", color="tab:blue")
        ax.axvline(0, color="grey", ls=":", lw=1)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[-1, 0].set_xlabel("seconds from the restart (bins of 100 ms)")
    fig.supylabel("connection attempts per 100 ms", fontsize=9)
    fig.suptitle(f"Herd of {n_clients}: attempts per 100 ms ({source})")
    fig.tight_layout()
    return fig


def outage_sweep(summary: pd.DataFrame) -> Figure:
    """Median overshoot and attempts vs outage length per strategy, with 95 % intervals."""
    sel = summary[summary["scenario"] == "outage"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, g in sel.groupby("label"):
        g = g.sort_values("param_s")
        a1.errorbar(
            g["param_s"],
            g["overshoot_median_s"] * 1000,
            yerr=_errors(
                g, "overshoot_median_s", "overshoot_ci_low_s", "overshoot_ci_high_s", 1000
            ),
            marker="o",
            capsize=3,
            label=label,
        )
        a2.errorbar(
            g["param_s"],
            g["attempts_median"],
            yerr=_errors(g, "attempts_median", "attempts_ci_low", "attempts_ci_high"),
            marker="o",
            capsize=3,
            label=label,
        )
    a1.set_xlabel("outage length (s)")
    a1.set_ylabel("median overshoot (ms), 95 % interval")
    a2.set_xlabel("outage length (s)")
    a2.set_ylabel("median attempts, 95 % interval")
    if (sel["overshoot_median_s"] < 0).any():
        a1.axhline(0, color="grey", ls=":", lw=1, label=NEGATIVE_NOTE)
    a1.legend(fontsize=7)
    lengths = sorted(sel["param_s"].dropna().unique())
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.set_xticks(lengths)
    if len(lengths) == 1:  # quick mode: one length, points without a trend
        for ax in (a1, a2):
            ax.set_xlim(lengths[0] - 1, lengths[0] + 1)
        fig.text(
            0.5,
            0.01,
            f"One outage length in this run ({lengths[0]:g} s): points, not a sweep; "
            "give outage_s two or more lengths (the full run: [1.0, 5.0]) to see the trend.",
            ha="center",
            fontsize=8,
            style="italic",
        )
    fig.suptitle("Outage length sweep")
    fig.tight_layout()
    return fig


def sim_vs_real(sim_rates: pd.DataFrame, comparison: pd.DataFrame, *, n_clients: int) -> Figure:
    """Attempt rates of the real herd and of the model on the same axes, plus summary scatter."""
    sel = sim_rates[sim_rates["n_clients"] == n_clients]
    names = list(dict.fromkeys(sel["label"]))
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(9, 1.8 * len(names) + 3.5), squeeze=False)
    for ax, name in zip(axes[:-1, 0], names, strict=True):
        for source, style in (("real", "-"), ("sim", "--")):
            g = sel[(sel["label"] == name) & (sel["source"] == source)]
            ax.step(g["t_bin_s"], g["attempts"], where="post", ls=style, label=source)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
    axes[-2, 0].set_xlabel("seconds from the restart (bins of 100 ms)")
    axes[0, 0].set_title("connection attempts per 100 ms, real herd vs model", fontsize=9)
    ax = axes[-1, 0]
    metric = comparison[comparison["metric"] == "median_connected_after_ready_s"]
    ax.scatter(metric["real"], metric["sim"], label="strategy / clients")
    for r in metric.itertuples():
        ax.annotate(f"{r.label}/{r.n_clients}", (r.real, r.sim), fontsize=7)
    lim = float(np.nanmax([metric["real"].max(), metric["sim"].max(), 0.1]))
    ax.plot([0, lim], [0, lim], color="grey", lw=1, label="model = real")
    ax.set_xlabel("real: median connected after ready (s)")
    ax.set_ylabel("model (s)")
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Simulation vs real herd (N = {n_clients})")
    fig.tight_layout()
    return fig


def worst_case_bars(worst: pd.DataFrame, claim: pd.DataFrame) -> Figure:
    """Give-up time per strategy (median and max over jitter), with the review's claims."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=False)
    for ax, scenario in zip(axes, ("refused", "hang"), strict=True):
        sel = worst[worst["scenario"] == scenario]
        x = np.arange(len(sel))
        ax.bar(x, sel["total_max"], color="tab:red", alpha=0.4, label="max")
        ax.bar(x, sel["total_median"], color="tab:blue", alpha=0.8, label="median")
        ax.set_xticks(x, sel["strategy"], rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("strategy")
        ax.set_ylabel("seconds until giving up")
        ax.set_title(f"Worst case, every attempt {scenario}")
        for name, value in (("naive", 15.0), ("review", 0.5)):
            ax.axhline(value, ls=":", color="k", lw=1)
            ax.annotate(
                f"review's claim: {name} {value:g} s",
                (x[-1], value),
                fontsize=7,
                ha="right",
                va="bottom",
            )
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def where_time_went(frames: Mapping[str, pd.DataFrame]) -> tuple[str, Figure] | None:
    """(caption, figure): server wait events per strategy in the largest herd (None: none)."""
    from perfkit.retry.timeprofile import STATES, at_largest_herd
    from perfkit.serverprofile.plots import CAPTION, plot_where_time_went

    wp, order, top = at_largest_herd(frames)
    if wp.empty:
        return None
    caption = f"{CAPTION}: server wait events in the herd of {top}"
    return caption, plot_where_time_went(wp, order=order, xlabel="strategy", states=STATES)
