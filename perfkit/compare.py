"""``perfkit compare``: ratios of key metrics between two result runs.

Key metrics of a run are its headline numbers, read through its lab's contract
(``LAB.headlines``); a report's run (``data/report/<run_id>``, saved by the
summary notebook) holds every lab's.
A metric whose ratio B/A moves further than ``threshold`` from 1 is flagged
(``+`` went up, ``-`` went down), as asv and pytest-benchmark do.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from perfkit import registry, results, summary
from perfkit.errors import ConfigError, PerfkitError

IGNORED_PARAMS = {"since", "labs"}


def resolve_run(path: str | os.PathLike[str]) -> results.Run:
    """A run directory, or an experiment directory (its latest run)."""
    path = Path(path)
    if (path / results.METADATA_FILE).is_file():
        return results.load(path)
    if path.is_dir() and results.run_dirs(path.name, path.parent):
        return results.latest(path.name, path.parent)
    raise PerfkitError(f"{path} is neither a results run directory nor an experiment directory")


def key_metrics(run: results.Run) -> pd.Series:
    """The run's key metrics: its lab's headlines (a report's run: every lab's), by name."""
    if run.experiment != summary.REPORT_EXPERIMENT and registry.find(run.experiment) is None:
        known = ", ".join(lab.name for lab in registry.LABS)
        raise PerfkitError(
            f"run {run.run_id} is of {run.experiment!r}, not a lab ({known}) or a report: "
            "compare reads a run's headlines through its lab"
        )
    headlines = summary.headlines_of(run)
    several = run.experiment == summary.REPORT_EXPERIMENT  # every lab's headlines
    names = [
        (f"{e}: " if several else "") + f"{m}/{v} [{u}]"
        for e, m, v, u in zip(
            headlines["experiment"],
            headlines["metric"],
            headlines["variant"],
            headlines["unit"],
            strict=True,
        )
    ]
    return pd.Series(headlines["value"].to_numpy(dtype=float), index=names, dtype=float)


def compare_metrics(a: pd.Series, b: pd.Series, *, threshold: float = 0.1) -> pd.DataFrame:
    """One row per metric present in both: a, b, ratio b/a and a flag beyond ``threshold``."""
    if isinstance(threshold, bool) or not threshold >= 0:
        raise ConfigError(f"threshold must be a number >= 0, got {threshold!r}")
    common = [name for name in a.index if name in b.index]
    rows = []
    for name in common:
        va, vb = float(a[name]), float(b[name])
        if va == 0 and vb == 0:
            ratio = 1.0
        elif va == 0 or math.isnan(va) or math.isnan(vb):
            ratio = math.nan
        else:
            ratio = vb / va
        if math.isnan(ratio):
            flag = ""
        elif ratio > 1 + threshold:
            flag = "+"
        elif ratio < 1 - threshold:
            flag = "-"
        else:
            flag = ""
        rows.append({"metric": name, "a": va, "b": vb, "ratio": ratio, "flag": flag})
    return pd.DataFrame(rows, columns=["metric", "a", "b", "ratio", "flag"])


def compare_paths(
    path_a: str | os.PathLike[str], path_b: str | os.PathLike[str], *, threshold: float = 0.1
) -> pd.DataFrame:
    """Compare the key metrics of two runs; raises when they share none."""
    run_a, run_b = resolve_run(path_a), resolve_run(path_b)
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
    """Plain-text table: metric, A, B, B/A and a marker on changes beyond the threshold."""
    width = max([len("metric"), *(len(m) for m in table["metric"])])
    head = f"A = {table.attrs.get('a', 'A')}   B = {table.attrs.get('b', 'B')}"
    lines = [head, f"{'metric':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}"]
    for row in table.itertuples(index=False):
        ratio = "n/a" if math.isnan(row.ratio) else f"{row.ratio:.3f}"
        mark = {"+": "  (+) up", "-": "  (-) down"}.get(row.flag, "")
        lines.append(f"{row.metric:<{width}}  {row.a:>12.4g}  {row.b:>12.4g}  {ratio:>7}{mark}")
    for diff in table.attrs.get("param_diff", []):
        lines.append(f"note: parameters differ, {diff}")
    flagged = int((table["flag"] != "").sum())
    lines.append(f"{flagged} of {len(table)} metrics changed by more than {threshold:.0%}")
    return "\n".join(lines)
