"""Where the server's time went in the size sweep (pure): the profile frames, pool-shaped.

The profile is recorded per run of the size sweep (variant: ``max_size``, or
``no pool``; :func:`perfkit.pool.measure.profiled`). The figure and the
sentence read it at the sweep's largest worker count, where the sizes differ
most, next to the median throughput of those runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from perfkit.serverprofile import analysis

NO_POOL = "no pool"


def at_top_workers(frames: Mapping[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str], int]:
    """(wait_profile rows at the largest worker count, variants by size, that count)."""
    wp = frames.get("wait_profile")
    if wp is None or wp.empty or "workers" not in wp:
        return pd.DataFrame(), [], 0
    top = int(wp["workers"].max())
    wp = wp[wp["workers"] == top].assign(variant=lambda d: d["variant"].astype(str))
    sizes = sorted({v for v in wp["variant"] if v != NO_POOL}, key=int)
    order = sizes + ([NO_POOL] if NO_POOL in set(wp["variant"]) else [])
    return wp, order, top


def throughput_by_variant(runs: pd.DataFrame, workers: int) -> dict[str, float]:
    """Median throughput per size-sweep variant at ``workers``."""
    size = runs[(runs["experiment"] == "size") & (runs["workers"] == workers)]
    if size.empty:
        return {}
    variant = size["max_size"].astype("Int64").astype(str).where(size["pooled"], NO_POOL)
    return size.groupby(variant)["throughput_rps"].median().to_dict()


def sentence(frames: Mapping[str, pd.DataFrame]) -> str | None:
    """Where the time went (smallest vs largest pool) and the sampler's overhead, or None."""
    wp, order, top = at_top_workers(frames)
    if wp.empty:
        return None
    sizes = [v for v in order if v != NO_POOL]
    throughput = throughput_by_variant(frames["runs"], top) if "runs" in frames else {}
    text = f"Where the server's time went ({top} workers, `pg_stat_activity` every 10 ms): "
    text += analysis.profile_sentence(wp, what="max_size", order=sizes, throughput=throughput)
    pairs = frames.get("sampler_overhead")
    if pairs is not None and not pairs.empty:
        text += " " + analysis.overhead_sentence(pairs)
    return text
