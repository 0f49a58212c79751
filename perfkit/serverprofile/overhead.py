"""The sampler's overhead: the same short run with and without it, interleaved.

:func:`interleaved` runs ``pairs`` pairs, alternating which half of a pair
goes first (AB, BA, AB, ...), so a slow drift of a shared machine falls on
both arms alike; :func:`perfkit.serverprofile.analysis.overhead` turns the
rows into the ratio with its interval.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

OVERHEAD_COLUMNS = ["pair", "sampler", "position", "throughput_rps"]


def order(pairs: int) -> list[tuple[int, bool]]:
    """(pair, sampler on?) in run order: the first pair without the sampler first."""
    out: list[tuple[int, bool]] = []
    for i in range(pairs):
        first = i % 2 == 1
        out += [(i, first), (i, not first)]
    return out


def interleaved(
    run_once: Callable[[bool], float],
    pairs: int,
    *,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """``run_once(sampler_on) -> throughput`` for every (pair, arm) of :func:`order`."""
    rows = []
    for position, (pair, on) in enumerate(order(pairs)):
        if progress is not None and position % 2 == 0:
            progress(f"sampler overhead: pair {pair + 1}/{pairs}")
        rows.append(
            {"pair": pair, "sampler": on, "position": position, "throughput_rps": run_once(on)}
        )
    return pd.DataFrame(rows, columns=OVERHEAD_COLUMNS)
