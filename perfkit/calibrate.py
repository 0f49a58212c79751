"""``perfkit calibrate``: this machine's run-to-run spread per metric, the floor compare judges by.

Give it three or more runs of the same code with the same parameters (for
example ``perfkit report --quick --runs 5``). For each key metric it records
the *spread*: the relative standard deviation of one run's value,
``exp(sd(log values)) - 1`` for positive values (``sd / |median|`` for values
that may be zero or negative). A change smaller than that cannot be told
from this machine's noise with a handful of runs, so ``perfkit compare``
uses it as the metric's floor: its threshold is ``max(--threshold, floor)``,
and the table prints the limit each metric was judged by.

A calibration is saved like any run, under ``<data>/calibration/<run_id>/``
(frame ``noise_floor``), with the parameters of the runs it came from:
compare applies the latest one made from runs like those it compares.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from perfkit import compare, noise, results
from perfkit.errors import ConfigError, PerfkitError

EXPERIMENT = "calibration"
FRAME = "noise_floor"
#: Fewer runs than this give no spread worth the name (two values are one difference).
MIN_RUNS = 3
COLUMNS = ["metric", "n_runs", "median", "spread"]


def spread(values: Sequence[float]) -> float:
    """Relative run-to-run spread of ``values`` (NaN with fewer than :data:`MIN_RUNS`)."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if data.size < MIN_RUNS:
        return math.nan
    if (data > 0).all():
        return float(math.expm1(np.std(np.log(data), ddof=1)))
    centre = abs(float(np.median(data)))
    return float(np.std(data, ddof=1) / centre) if centre > 0 else math.nan


def floor_frame(values: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """One row per metric: how many runs, their median and their spread."""
    rows = [
        {
            "metric": name,
            "n_runs": sum(math.isfinite(v) for v in vals),
            "median": float(np.median(vals)) if len(vals) else math.nan,
            "spread": spread(vals),
        }
        for name, vals in values.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def calibrate(
    paths: Sequence[str | os.PathLike[str]], *, out_dir: str | os.PathLike[str] = "data"
) -> results.Run:
    """The noise floors of ``paths`` (runs alike), saved as a calibration run."""
    runs = [compare.resolve_run(p) for p in paths]
    if len(runs) < MIN_RUNS:
        raise ConfigError(
            f"calibrate needs at least {MIN_RUNS} runs of the same code and parameters, "
            f"got {len(runs)} (make them with perfkit report --runs 5)"
        )
    diffs = compare.like_with_like(runs[:1], runs[1:])
    if diffs:
        raise ConfigError("calibrate needs runs made alike: " + "; ".join(diffs))
    frame = floor_frame(compare.run_values(runs))
    first = runs[0]
    return results.save(
        frames={FRAME: frame},
        experiment=EXPERIMENT,
        params=first.metadata.get("params") or {},
        out_dir=out_dir,
        extra={
            "source_experiment": first.experiment,
            "source_runs": [r.run_id for r in runs],
            "noise": noise.combine([noise.of_run(r.metadata) for r in runs]),
        },
    )


def floors_of(run: results.Run) -> dict[str, float]:
    """Metric -> spread of a saved calibration (NaN spreads left out)."""
    if run.experiment != EXPERIMENT or FRAME not in run.frames:
        raise PerfkitError(f"{run.path} is not a calibration run (perfkit calibrate makes them)")
    frame = run.frames[FRAME]
    return {
        str(m): float(s)
        for m, s in zip(frame["metric"], frame["spread"], strict=True)
        if math.isfinite(float(s))
    }


def matching(like: results.Run, data_dir: str | os.PathLike[str]) -> results.Run | None:
    """The newest calibration made from runs like ``like`` (experiment, parameters), or None."""
    for path in reversed(results.run_dirs(EXPERIMENT, data_dir)):
        run = results.load(path)
        source = (run.metadata.get("extra") or {}).get("source_experiment")
        alike = source == like.experiment and not (compare.param_differences(run, like))
        if alike:
            return run
    return None


def format_floors(run: results.Run) -> str:
    """The calibration as a table: metric, runs, median, spread."""
    frame = run.frames[FRAME]
    width = max([len("metric"), *(len(str(m)) for m in frame["metric"])])
    lines = [f"{'metric':<{width}}  {'runs':>4}  {'median':>12}  spread"]
    for row in frame.itertuples(index=False):
        shown = "-" if not math.isfinite(row.spread) else f"{row.spread:.1%}"
        lines.append(f"{row.metric:<{width}}  {row.n_runs:>4}  {row.median:>12.4g}  {shown}")
    lines.append(f"saved {Path(run.path)}")
    return "\n".join(lines)
