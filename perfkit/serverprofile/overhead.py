"""The sampler's overhead: throughput with and without it, interleaved.

Two designs, the same rows (``pair``, ``sampler``, ``position``, ``throughput_rps``)
for :func:`perfkit.serverprofile.analysis.overhead`:

- :func:`interleaved`: whole runs, alternating which half of a pair goes first
  (AB, BA, AB, ...), so a slow drift of a shared machine falls on both arms alike;
- :func:`schedule` + :func:`window_throughput`: one long run whose sampler is
  paused and resumed in short windows in the same AB/BA order. Adjacent windows
  share the machine's load of that moment, which whole runs seconds apart do not,
  so the interval is several times narrower on a busy machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
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


def schedule(pairs: int, window_s: float, *, lead_s: float = 0.2) -> list[tuple[float, bool]]:
    """(at_s, sampler on?) for each window of :func:`order`, the first at ``lead_s``."""
    return [(lead_s + i * window_s, on) for i, (_pair, on) in enumerate(order(pairs))]


def window_throughput(
    ends_s: Sequence[float], starts: Sequence[float], end_s: float, pairs: int
) -> pd.DataFrame:
    """Completions per second in each window (pure).

    ``ends_s``: when each successful request finished; ``starts``: when each window
    of :func:`order` began (as measured); the last window ends at ``end_s``.
    """
    edges = np.append(np.asarray(starts, dtype=float), end_s)
    counts, _ = np.histogram(np.asarray(ends_s, dtype=float), bins=edges)
    widths = np.diff(edges)
    rows = [
        {
            "pair": pair,
            "sampler": on,
            "position": i,
            "throughput_rps": counts[i] / widths[i] if widths[i] > 0 else np.nan,
        }
        for i, (pair, on) in enumerate(order(pairs))
    ]
    return pd.DataFrame(rows, columns=OVERHEAD_COLUMNS)
