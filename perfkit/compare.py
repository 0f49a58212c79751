"""``perfkit compare``: ratios of key metrics between two result runs.

Key metrics of a run are its headline numbers, read through its lab's contract
(``LAB.headlines``); a report's run (``data/report/<run_id>``, saved by the
summary notebook) holds every lab's.
A metric whose ratio B/A moves further than ``threshold`` from 1 is flagged
(``+`` went up, ``-`` went down), as asv and pytest-benchmark do.

Runs whose lab saved the raw samples behind its headlines (the ``samples`` frame
of the lab contract: ``metric, variant, unit, value``, see :mod:`perfkit.lab`)
are compared by samples instead (:func:`compare_samples`): B/A is the ratio of
the medians with a seeded 95 % bootstrap interval (both runs resampled
independently), and a metric is flagged only when that whole interval lies
beyond the threshold (low > 1 + t or high < 1 - t), so run-to-run noise no
longer reads as a change. A metric with fewer than two samples on a side falls
back to the scalar rule on the key metrics and is marked ``scalar`` in the
``basis`` column and in the printed table.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from perfkit import registry, results, summary
from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import SAMPLES_FRAME
from perfkit.stats import ratio_interval

IGNORED_PARAMS = {"since", "labs"}
SAMPLE_TABLE_COLUMNS = [
    "metric",
    "a",
    "b",
    "ratio",
    "ratio_low",
    "ratio_high",
    "n_a",
    "n_b",
    "changed",
    "basis",
    "flag",
]


def resolve_run(path: str | os.PathLike[str]) -> results.Run:
    """A run directory, or an experiment directory (its latest run)."""
    path = Path(path)
    if (path / results.METADATA_FILE).is_file():
        return results.load(path)
    if path.is_dir() and results.run_dirs(path.name, path.parent):
        return results.latest(path.name, path.parent)
    raise PerfkitError(f"{path} is neither a results run directory nor an experiment directory")


def _check_lab_run(run: results.Run) -> None:
    if run.experiment != summary.REPORT_EXPERIMENT and registry.find(run.experiment) is None:
        known = ", ".join(lab.name for lab in registry.LABS)
        raise PerfkitError(
            f"run {run.run_id} is of {run.experiment!r}, not a lab ({known}) or a report: "
            "compare reads a run's headlines through its lab"
        )


def _names(frame: pd.DataFrame, run: results.Run) -> list[str]:
    """``metric/variant [unit]``, prefixed by the lab in a report's run (every lab's)."""
    several = run.experiment == summary.REPORT_EXPERIMENT
    return [
        (f"{e}: " if several else "") + f"{m}/{v} [{u}]"
        for e, m, v, u in zip(
            frame["experiment"], frame["metric"], frame["variant"], frame["unit"], strict=True
        )
    ]


@contextlib.contextmanager
def _reading_frames(run: results.Run, what: str) -> Iterator[None]:
    """PerfkitError naming the run when its saved frames lack what its lab reads from them."""
    try:
        yield
    except (KeyError, ValueError, TypeError) as exc:
        raise PerfkitError(
            f"{run.path}: its frames do not hold the {what} of {run.experiment!r} "
            f"({type(exc).__name__}: {exc}); is one of its CSV files corrupt?"
        ) from exc


def key_metrics(run: results.Run) -> pd.Series:
    """The run's key metrics: its lab's headlines (a report's run: every lab's), by name."""
    _check_lab_run(run)
    with _reading_frames(run, "headlines"):
        headlines = summary.headlines_of(run)
        values = headlines["value"].to_numpy(dtype=float)
        names = _names(headlines, run)
    return pd.Series(values, index=names, dtype=float)


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not threshold >= 0:
        raise ConfigError(f"threshold must be a number >= 0, got {threshold!r}")
    return float(threshold)


def _scalar_ratio(va: float, vb: float) -> float:
    if va == 0 and vb == 0:
        return 1.0
    if va == 0 or math.isnan(va) or math.isnan(vb):
        return math.nan
    return vb / va


def _flag(ratio: float, threshold: float) -> str:
    if math.isnan(ratio):
        return ""
    if ratio > 1 + threshold:
        return "+"
    if ratio < 1 - threshold:
        return "-"
    return ""


def compare_metrics(a: pd.Series, b: pd.Series, *, threshold: float = 0.1) -> pd.DataFrame:
    """One row per metric present in both: a, b, ratio b/a and a flag beyond ``threshold``."""
    _check_threshold(threshold)
    common = [name for name in a.index if name in b.index]
    rows = []
    for name in common:
        va, vb = float(a[name]), float(b[name])
        ratio = _scalar_ratio(va, vb)
        rows.append(
            {"metric": name, "a": va, "b": vb, "ratio": ratio, "flag": _flag(ratio, threshold)}
        )
    return pd.DataFrame(rows, columns=["metric", "a", "b", "ratio", "flag"])


def key_samples(run: results.Run) -> dict[str, np.ndarray]:
    """The run's samples: key metric -> its measurements (none when the lab saved none)."""
    _check_lab_run(run)
    with _reading_frames(run, "samples"):
        samples = summary.samples_of(run)
        if samples.empty:
            return {}
        samples = samples.assign(name=_names(samples, run))
        return {
            str(name): group["value"].dropna().to_numpy(dtype=float)
            for name, group in samples.groupby("name", sort=False)
        }


def _values(x: float | Sequence[float]) -> np.ndarray:
    data = np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
    return data[~np.isnan(data)]


def compare_samples(
    a: Mapping[str, Sequence[float] | float],
    b: Mapping[str, Sequence[float] | float],
    *,
    threshold: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare two runs' samples, metric by metric (see the module docstring).

    One row per metric with values on both sides, in ``a``'s order: the medians
    ``a`` and ``b``, ``ratio`` b/a with its 95 % bootstrap interval
    ``ratio_low``..``ratio_high``, the sample sizes, ``changed`` (the interval lies
    wholly outside [1 - threshold, 1 + threshold]), ``basis`` (``samples``, or
    ``scalar`` when a side has fewer than two values and the old rule on the
    medians decides) and ``flag`` (``+``/``-`` for a change up or down).
    """
    threshold = _check_threshold(threshold)
    rows = []
    for name in a:
        if name not in b:
            continue
        xa, xb = _values(a[name]), _values(b[name])
        if xa.size == 0 or xb.size == 0:
            continue
        va, vb = float(np.median(xa)), float(np.median(xb))
        if xa.size >= 2 and xb.size >= 2:
            est = ratio_interval(xa, xb, seed=seed)
            ratio, low, high, basis = est.value, est.low, est.high, "samples"
            changed = not math.isnan(ratio) and (low > 1 + threshold or high < 1 - threshold)
        else:
            ratio, low, high, basis = _scalar_ratio(va, vb), math.nan, math.nan, "scalar"
            changed = _flag(ratio, threshold) != ""
        rows.append(
            {
                "metric": str(name),
                "a": va,
                "b": vb,
                "ratio": ratio,
                "ratio_low": low,
                "ratio_high": high,
                "n_a": int(xa.size),
                "n_b": int(xb.size),
                "changed": bool(changed),
                "basis": basis,
                "flag": ("+" if ratio > 1 else "-") if changed else "",
            }
        )
    return pd.DataFrame(rows, columns=SAMPLE_TABLE_COLUMNS)


def _samples_or_scalars(run: results.Run) -> dict[str, Sequence[float] | float]:
    merged: dict[str, Sequence[float] | float] = dict(key_metrics(run).items())
    merged.update(key_samples(run))
    return merged


def compare_paths(
    path_a: str | os.PathLike[str],
    path_b: str | os.PathLike[str],
    *,
    threshold: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Compare two runs' key metrics, by samples when either has them; raises if none shared."""
    run_a, run_b = resolve_run(path_a), resolve_run(path_b)
    if SAMPLES_FRAME in run_a.frames or SAMPLES_FRAME in run_b.frames:
        table = compare_samples(
            _samples_or_scalars(run_a), _samples_or_scalars(run_b), threshold=threshold, seed=seed
        )
    else:
        table = compare_metrics(key_metrics(run_a), key_metrics(run_b), threshold=threshold)
    if table.empty:
        raise PerfkitError(
            f"runs {run_a.run_id} ({run_a.experiment}) and {run_b.run_id} ({run_b.experiment}) "
            "have no key metric in common"
        )
    table.attrs["a"], table.attrs["b"] = run_a.run_id, run_b.run_id
    table.attrs["param_diff"] = param_differences(run_a, run_b)
    return table


def param_differences(run_a: results.Run, run_b: results.Run) -> list[str]:
    """``name: a -> b`` for parameters that differ (paths and report bookkeeping ignored)."""
    pa, pb = run_a.metadata.get("params") or {}, run_b.metadata.get("params") or {}
    out = []
    for name in sorted(set(pa) | set(pb)):
        if name in IGNORED_PARAMS or name.endswith("_dir"):
            continue
        if pa.get(name) != pb.get(name):
            out.append(f"{name}: {pa.get(name)!r} -> {pb.get(name)!r}")
    return out


def format_table(table: pd.DataFrame, *, threshold: float) -> str:
    """Plain-text table: metric, A, B, B/A and a marker on changes beyond the threshold.

    A table from :func:`compare_samples` also shows each ratio's 95 % interval and
    the sample sizes (``scalar`` where the scalar rule decided).
    """
    by_samples = "ratio_low" in table.columns
    width = max([len("metric"), *(len(m) for m in table["metric"])])
    head = f"A = {table.attrs.get('a', 'A')}   B = {table.attrs.get('b', 'B')}"
    header = f"{'metric':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}"
    if by_samples:
        header += f"  {'95% interval':>16}  {'n A/B':>9}"
    lines = [head, header]
    for row in table.itertuples(index=False):
        ratio = "n/a" if math.isnan(row.ratio) else f"{row.ratio:.3f}"
        mark = {"+": "  (+) up", "-": "  (-) down"}.get(row.flag, "")
        line = f"{row.metric:<{width}}  {row.a:>12.4g}  {row.b:>12.4g}  {ratio:>7}"
        if by_samples:
            if row.basis == "scalar":
                interval, sizes = "(scalar)", f"{row.n_a}/{row.n_b}"
            elif math.isnan(row.ratio_low):
                interval, sizes = "n/a", f"{row.n_a}/{row.n_b}"
            else:
                interval = f"[{row.ratio_low:.3f}, {row.ratio_high:.3f}]"
                sizes = f"{row.n_a}/{row.n_b}"
            line += f"  {interval:>16}  {sizes:>9}"
        lines.append(line + mark)
    for diff in table.attrs.get("param_diff", []):
        lines.append(f"note: parameters differ, {diff}")
    flagged = int((table["flag"] != "").sum())
    lines.append(f"{flagged} of {len(table)} metrics changed by more than {threshold:.0%}")
    return "\n".join(lines)
