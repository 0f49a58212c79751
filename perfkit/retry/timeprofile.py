"""Where the server's time went during the herds (pure): the profile at the largest herd.

:func:`perfkit.retry.herd.herd_sweep` profiles every herd run (variant: the strategy's
label, tags ``n_clients`` and ``rep``); the figure and the sentence read the largest herd.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from perfkit.serverprofile import analysis

#: Every state counts in the herd: its clients connect and then hold idle connections.
STATES = None


def at_largest_herd(frames: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str], int]:
    """(wait_profile rows of the largest herd, strategy labels in run order, its size)."""
    wp = frames.get("wait_profile")
    if wp is None or wp.empty or "n_clients" not in wp:
        return pd.DataFrame(), [], 0
    top = int(wp["n_clients"].max())
    wp = wp[wp["n_clients"] == top]
    return wp, list(dict.fromkeys(wp["variant"])), top


def sentence(frames: Mapping[str, pd.DataFrame]) -> str | None:
    """A Markdown bullet: where the server's active time went per strategy, or None."""
    wp, order, top = at_largest_herd(frames)
    if wp.empty:
        return None
    if analysis.time_shares(wp, STATES).empty:
        return None
    parts = [
        analysis.profile_sentence(wp, what="strategy", order=[v], states=STATES) for v in order
    ]
    return (
        f"- **Where the server's time went in the herd of {top}** (`pg_stat_activity` every "
        "10 ms, client backends in every state: a herd's clients mostly hold idle "
        "connections once they are in): " + " ".join(p[0].upper() + p[1:] for p in parts)
    )
