"""The "where the time went" figure: stacked share of sampled active time by wait event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from perfkit.serverprofile.analysis import ACTIVE, CPU, time_shares

#: Every lab's caption of this figure starts with it (the report collects them by it).
CAPTION = "Where the time went"
#: Events beyond this many (by total share) are drawn as one "other" band.
MAX_EVENTS = 7


def plot_where_time_went(
    wait_profile: pd.DataFrame,
    *,
    order: Sequence[Any] | None = None,
    xlabel: str = "variant",
    title: str = "Where the server's time went",
    states: Sequence[str] | None = ACTIVE,
) -> Any:
    """One bar per variant, stacked by event (CPU = active with no wait event; ``states``:
    which client backends count, :func:`~perfkit.serverprofile.analysis.time_shares`)."""
    import matplotlib.pyplot as plt

    shares = time_shares(wait_profile, states)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if shares.empty:
        ax.text(0.5, 0.5, "no wait profile recorded", ha="center", va="center")
        ax.set_axis_off()
        return fig
    table = shares.pivot_table(index="variant", columns="event", values="share", fill_value=0.0)
    variants = [v for v in (order or list(table.index)) if v in table.index]
    table = table.loc[variants]
    ranked = table.sum().sort_values(ascending=False).index.tolist()
    keep = [CPU] if CPU in ranked else []
    keep += [e for e in ranked if e != CPU][: MAX_EVENTS - len(keep)]
    rest = [e for e in table.columns if e not in keep]
    if rest:
        table["other"] = table[rest].sum(axis=1)
        keep.append("other")
    table = table[keep]
    n = shares.groupby("variant", sort=False)["samples"].first()
    labels = [f"{v}\nn={int(n[v])}" for v in variants]
    bottom = [0.0] * len(variants)
    colors = plt.get_cmap("tab10").colors
    for i, event in enumerate(keep):
        values = (100 * table[event]).tolist()
        color = "#4c72b0" if event == CPU else colors[(i + 1) % len(colors)]
        ax.bar(labels, values, bottom=bottom, label=event, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("% of sampled active time" if states == ACTIVE else "% of sampled backends")
    ax.set_xlabel(f"{xlabel} (n = samples)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig
