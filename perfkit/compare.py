"""``perfkit compare``: key metrics of two sets of result runs, the run as the unit.

Key metrics of a run are its headline numbers, read through its lab's contract
(``LAB.headlines``); a report's run (``data/report/<run_id>``, saved by the
summary notebook) holds every lab's.

Each run is one replicate: samples inside a run are not independent draws (a
busy machine slows the whole run), so they never make an interval. For each
metric, side A's runs and side B's runs give B/A as the Hodges–Lehmann shift
of their logarithms with an exact distribution-free 95 % interval
(:func:`perfkit.stats.shift_interval`). The verdict per metric:

- ``changed``: the whole interval lies beyond ``threshold`` (``+`` up, ``-`` down);
- ``unchanged``: the whole interval lies within ``1 ± threshold``;
- ``cannot tell``: the interval straddles the threshold;
- ``not enough runs``: too few runs for any interval at 95 % (fewer than
  :func:`perfkit.stats.runs_needed` per side, 4): never flagged, and the table
  says how many runs would be needed.

Runs made with different parameters (quick vs full, other lab parameters)
are refused unless ``allow_different``: a comparison of unlike runs measures
the parameters, not the code. The printed table (:func:`format_table`) lists
such differences first, and after the table the metrics only one side has
(``only in A`` / ``only in B``), which cannot be compared.

Two refinements:

- **Noise floors.** A metric whose runs of the same code spread by 20 % on
  this machine cannot be judged against a 10 % threshold: with a calibration
  (:mod:`perfkit.calibrate`) each metric's threshold is at least its floor.
- **Pairs.** Runs made alternately, A then B then A... (``perfkit ab``), are
  compared pair by pair (:func:`compare_pairs`): B/A is the one-sample
  Hodges–Lehmann estimate of the pairs' log ratios with the exact signed-rank
  interval (:func:`perfkit.stats.paired_shift_interval`, 6 pairs at least),
  which cancels what a pair's two runs share, such as a busy minute.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from perfkit import noise, registry, results, summary
from perfkit.errors import ConfigError, PerfkitError
from perfkit.headlines import candidate_of
from perfkit.stats import Estimate, paired_shift_interval, pairs_needed, runs_needed, shift_interval

IGNORED_PARAMS = {"since", "labs", "reuse_saved", "interactive"}
LEVEL = 0.95
CHANGED, UNCHANGED, CANNOT_TELL, TOO_FEW = (
    "changed",
    "unchanged",
    "cannot tell",
    "not enough runs",
)
TABLE_COLUMNS = [
    "metric",
    "a",
    "b",
    "ratio",
    "ratio_low",
    "ratio_high",
    "n_a",
    "n_b",
    "threshold",
    "verdict",
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
    """``metric/variant (candidate) [unit]``, prefixed by the lab in a report's run (every
    lab's). The candidate (:func:`perfkit.headlines.candidate_of` its label) keeps a variant
    measured with another strategy (``improved`` by rollback, then by template) apart."""
    several = run.experiment == summary.REPORT_EXPERIMENT
    names = []
    for e, m, v, u, label in zip(
        frame["experiment"],
        frame["metric"],
        frame["variant"],
        frame["unit"],
        frame["label"],
        strict=True,
    ):
        candidate = candidate_of(str(label))
        variant = f"{v} ({candidate})" if candidate else str(v)
        names.append((f"{e}: " if several else "") + f"{m}/{variant} [{u}]")
    return names


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
    """The run's key metrics: its lab's headlines (a report's run: every lab's), by name;
    ``attrs["better"]`` maps each name to its better direction ("" when not known)."""
    _check_lab_run(run)
    with _reading_frames(run, "headlines"):
        headlines = summary.headlines_of(run)
        values = headlines["value"].to_numpy(dtype=float)
        names = _names(headlines, run)
    series = pd.Series(values, index=names, dtype=float)
    series.attrs["better"] = dict(zip(names, headlines["better"].astype(str), strict=True))
    return series


def judged(flag: str, better: str) -> str:
    """A changed metric's verdict in words: ``changed (+) up: worse`` when its better
    direction is known, ``changed (+) up`` when not (runs saved before headlines said it)."""
    moved = {"+": "changed (+) up", "-": "changed (-) down"}[flag]
    if better not in ("lower", "higher"):
        return moved
    good = (flag == "-") == (better == "lower")
    return f"{moved}: {'better' if good else 'worse'}"


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not threshold >= 0:
        raise ConfigError(f"threshold must be a number >= 0, got {threshold!r}")
    return float(threshold)


Interval = Callable[..., Estimate | None]


def _ratio_interval(
    xa: np.ndarray, xb: np.ndarray, interval: Interval = shift_interval
) -> tuple[float, float, float] | None:
    """B/A and its interval from the runs' values (``interval``: unpaired or paired shift);
    None when the runs cannot support one."""
    if (xa > 0).all() and (xb > 0).all():
        est = interval(np.log(xa), np.log(xb), level=LEVEL)
        return None if est is None else (math.exp(est.value), math.exp(est.low), math.exp(est.high))
    base = float(np.median(xa))
    est = interval(xa, xb, level=LEVEL)
    if est is None or base == 0:  # a shift of values around 0 has no ratio
        return None
    return tuple(1.0 + x / abs(base) for x in (est.value, est.low, est.high))  # type: ignore[return-value]


def _point_ratio(va: float, vb: float) -> float:
    if va == 0 and vb == 0:
        return 1.0
    if va == 0 or math.isnan(va) or math.isnan(vb):
        return math.nan
    return vb / va


def _verdict(low: float, high: float, threshold: float) -> str:
    if low > 1 + threshold or high < 1 - threshold:
        return CHANGED
    if low >= 1 - threshold and high <= 1 + threshold:
        return UNCHANGED
    return CANNOT_TELL


def _row(
    name: str,
    xa: np.ndarray,
    xb: np.ndarray,
    found: tuple[float, float, float] | None,
    *,
    threshold: float,
    enough: bool,
) -> dict[str, object]:
    va, vb = float(np.median(xa)), float(np.median(xb))
    if found is None:
        ratio, low, high = _point_ratio(va, vb), math.nan, math.nan
        verdict = CANNOT_TELL if enough else TOO_FEW
    else:
        ratio, low, high = found
        verdict = _verdict(low, high, threshold)
    return {
        "metric": str(name),
        "a": va,
        "b": vb,
        "ratio": ratio,
        "ratio_low": low,
        "ratio_high": high,
        "n_a": int(xa.size),
        "n_b": int(xb.size),
        "threshold": threshold,
        "verdict": verdict,
        "flag": ("+" if ratio > 1 else "-") if verdict == CHANGED else "",
    }


def _threshold_of(name: str, threshold: float, floors: Mapping[str, float] | None) -> float:
    floor = (floors or {}).get(name, math.nan)
    return max(threshold, floor) if math.isfinite(floor) else threshold


def compare_units(
    a: Mapping[str, Sequence[float] | float],
    b: Mapping[str, Sequence[float] | float],
    *,
    threshold: float = 0.1,
    floors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Compare two sides' per-run values, metric by metric (see the module docstring).

    ``a`` and ``b`` map each metric to its values, one per run. One row per
    metric with values on both sides, in ``a``'s order: the medians ``a`` and
    ``b``, ``ratio`` B/A (Hodges–Lehmann with enough runs, else the ratio of
    the medians), its interval ``ratio_low``..``ratio_high`` (NaN without
    enough runs), the run counts, the ``threshold`` applied (``threshold``, or
    the metric's noise floor in ``floors`` when larger), ``verdict`` and ``flag``.
    Metrics with values on one side only are not compared; ``attrs["only_a"]``
    and ``attrs["only_b"]`` map them to that side's median (:func:`one_sided`).
    """
    threshold = _check_threshold(threshold)
    rows = []
    for name in a:
        if name not in b:
            continue
        xa, xb = _values(a[name]), _values(b[name])
        if xa.size == 0 or xb.size == 0:
            continue
        enough = min(xa.size, xb.size) >= runs_needed(LEVEL)
        found = _ratio_interval(xa, xb)
        limit = _threshold_of(name, threshold, floors)
        rows.append(_row(name, xa, xb, found, threshold=limit, enough=enough))
    return _with_one_sided(pd.DataFrame(rows, columns=TABLE_COLUMNS), a, b)


def one_sided(
    a: Mapping[str, Sequence[float] | float], b: Mapping[str, Sequence[float] | float]
) -> tuple[dict[str, float], dict[str, float]]:
    """The metrics with values on one side only: ``({name: A's median}, {name: B's median})``."""

    def only(
        this: Mapping[str, Sequence[float] | float], other: Mapping[str, Sequence[float] | float]
    ) -> dict[str, float]:
        out = {}
        for name, raw in this.items():
            values = _values(raw)
            if values.size and not _values(other.get(name, ())).size:
                out[str(name)] = float(np.median(values))
        return out

    return only(a, b), only(b, a)


def _with_one_sided(
    table: pd.DataFrame,
    a: Mapping[str, Sequence[float] | float],
    b: Mapping[str, Sequence[float] | float],
) -> pd.DataFrame:
    """``table`` with ``attrs["only_a"]`` / ``attrs["only_b"]``: what could not be compared."""
    table.attrs["only_a"], table.attrs["only_b"] = one_sided(a, b)
    return table


def compare_pairs(
    a: Mapping[str, Sequence[float]],
    b: Mapping[str, Sequence[float]],
    *,
    threshold: float = 0.1,
    floors: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Like :func:`compare_units`, but ``a[m][i]`` and ``b[m][i]`` are pair ``i``: run together.

    A pair missing a value on either side is left out. Fewer than
    :func:`perfkit.stats.pairs_needed` pairs (6 at 95 %) give no interval.
    """
    threshold = _check_threshold(threshold)
    rows = []
    for name in a:
        if name not in b:
            continue
        xa = np.asarray(a[name], dtype=float)
        xb = np.asarray(b[name], dtype=float)
        if xa.shape != xb.shape:
            raise ConfigError(f"{name}: {xa.size} values of A but {xb.size} of B; pairs must match")
        both = ~(np.isnan(xa) | np.isnan(xb))
        xa, xb = xa[both], xb[both]
        if xa.size == 0:
            continue
        found = _ratio_interval(xa, xb, paired_shift_interval)
        limit = _threshold_of(name, threshold, floors)
        enough = xa.size >= pairs_needed(LEVEL)
        rows.append(_row(name, xa, xb, found, threshold=limit, enough=enough))
    table = _with_one_sided(pd.DataFrame(rows, columns=TABLE_COLUMNS), a, b)
    table.attrs["paired"] = True
    return table


def _values(x: float | Sequence[float]) -> np.ndarray:
    data = np.atleast_1d(np.asarray(x, dtype=float)).reshape(-1)
    return data[~np.isnan(data)]


def run_values(
    runs: Sequence[results.Run], better: dict[str, str] | None = None
) -> dict[str, list[float]]:
    """Each key metric's value in every run of one side (a metric missing in a run: skipped);
    ``better``, when given, receives each metric's better direction."""
    out: dict[str, list[float]] = {}
    for run in runs:
        metrics = key_metrics(run)
        if better is not None:
            better.update({k: v for k, v in metrics.attrs["better"].items() if v})
        for name, value in metrics.items():
            out.setdefault(str(name), []).append(float(value))
    return out


PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _paths(paths: PathOrPaths) -> list[str | os.PathLike[str]]:
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)


def _pair_values(
    runs_a: Sequence[results.Run], runs_b: Sequence[results.Run], better: dict[str, str]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each metric's value in every run, pair-aligned (NaN where a run lacks it); ``better``
    receives each metric's better direction."""
    if len(runs_a) != len(runs_b):
        raise ConfigError(f"pairs need as many runs of A as of B, got {len(runs_a)}/{len(runs_b)}")
    metrics_a = [key_metrics(r) for r in runs_a]
    metrics_b = [key_metrics(r) for r in runs_b]
    for metrics in [*metrics_a, *metrics_b]:
        better.update({k: v for k, v in metrics.attrs["better"].items() if v})
    names = dict.fromkeys(str(n) for series in [*metrics_a, *metrics_b] for n in series.index)
    a = {n: [float(s.get(n, math.nan)) for s in metrics_a] for n in names}
    b = {n: [float(s.get(n, math.nan)) for s in metrics_b] for n in names}
    return a, b


def compare_paths(
    paths_a: PathOrPaths,
    paths_b: PathOrPaths,
    *,
    threshold: float = 0.1,
    allow_different: bool = False,
    floors: Mapping[str, float] | None = None,
    paired: bool = False,
) -> pd.DataFrame:
    """Compare the runs of side A with those of side B; raises if they share no key metric.

    Each side is a run directory, an experiment directory (its latest run) or
    a list of those. Runs with different parameters are refused unless
    ``allow_different`` (then the differences are listed in the table's attrs).
    ``paired``: the i-th runs of A and B ran next to each other (``perfkit ab``);
    each side's runs must then be alike, and A may differ from B (that is the
    experiment: the differences are listed, not refused).
    """
    runs_a = [resolve_run(p) for p in _paths(paths_a)]
    runs_b = [resolve_run(p) for p in _paths(paths_b)]
    if not runs_a or not runs_b:
        raise ConfigError("compare needs at least one run on each side")
    if paired:
        diffs = like_with_like(runs_a[:1], runs_a[1:]) + like_with_like(runs_b[:1], runs_b[1:])
    else:
        diffs = like_with_like(runs_a, runs_b)
    if diffs and not allow_different:
        raise ConfigError(
            "the runs were made with different parameters, so a comparison would measure "
            "those, not the code: " + "; ".join(diffs) + " (run both sides alike, or pass "
            "--allow-different to compare anyway)"
        )
    better: dict[str, str] = {}
    if paired:
        pairs = _pair_values(runs_a, runs_b, better)
        table = compare_pairs(*pairs, threshold=threshold, floors=floors)
        diffs = diffs + [f"A -> B: {d}" for d in param_differences(runs_a[0], runs_b[0])]
    else:
        values_a, values_b = run_values(runs_a, better), run_values(runs_b, better)
        table = compare_units(values_a, values_b, threshold=threshold, floors=floors)
    if table.empty:
        raise PerfkitError(
            f"runs {', '.join(r.run_id for r in runs_a)} and "
            f"{', '.join(r.run_id for r in runs_b)} have no key metric in common"
        )
    table.attrs["a"] = [r.run_id for r in runs_a]
    table.attrs["b"] = [r.run_id for r in runs_b]
    table.attrs["param_diff"] = diffs
    table.attrs["better"] = better
    table.attrs["noise"] = noise.differences(
        [noise.of_run(r.metadata) for r in runs_a], [noise.of_run(r.metadata) for r in runs_b]
    )
    return table


def like_with_like(runs_a: Sequence[results.Run], runs_b: Sequence[results.Run]) -> list[str]:
    """How the runs' experiments and parameters differ from side A's first run (empty: alike)."""
    first, out = runs_a[0], []
    for run in [*runs_a[1:], *runs_b]:
        if run.experiment != first.experiment:
            out.append(f"run {run.run_id} is of {run.experiment!r}, not {first.experiment!r}")
        out.extend(f"run {run.run_id}: {d}" for d in param_differences(first, run))
    return out


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


def _param_lines(diffs: Sequence[str]) -> list[str]:
    """How the runs' parameters differ: printed first, since they change what the table means."""
    lines = []
    for diff in diffs:
        if diff.startswith("A -> B: "):
            lines.append(f"note: A and B differ in {diff.removeprefix('A -> B: ')}")
        else:
            lines.append(f"note: compared although different, {diff}")
    return lines


def _one_sided_lines(table: pd.DataFrame) -> list[str]:
    """The metrics only one side has (not compared), each with that side's median."""
    lines = []
    for key, other in (("only_a", "B"), ("only_b", "A")):
        only = table.attrs.get(key) or {}
        if not only:
            continue
        side = key[-1].upper()
        lines.append(f"only in {side} ({len(only)}, not compared: no value in {other}'s runs):")
        width = max(len(name) for name in only)
        lines.extend(f"  {name:<{width}}  {side} = {value:.4g}" for name, value in only.items())
    return lines


def format_table(table: pd.DataFrame, *, threshold: float) -> str:
    """Plain-text table: metric, A, B, B/A, its 95 % interval, runs per side and the verdict."""
    width = max([len("metric"), *(len(m) for m in table["metric"])])

    def side(ids: object) -> str:
        ids = list(ids) if isinstance(ids, list | tuple) else [str(ids)]
        return f"{', '.join(ids)} ({len(ids)} run{'s' if len(ids) != 1 else ''})"

    lines = [
        f"A = {side(table.attrs.get('a', ['A']))}",
        f"B = {side(table.attrs.get('b', ['B']))}",
        *_param_lines(table.attrs.get("param_diff", [])),
        f"{'metric':<{width}}  {'A':>12}  {'B':>12}  {'B/A':>7}  {'95% interval':>16}"
        f"  {'runs':>7}  {'limit':>6}  verdict",
    ]
    paired = bool(table.attrs.get("paired"))
    needed = pairs_needed(LEVEL) if paired else runs_needed(LEVEL)
    for row in table.itertuples(index=False):
        ratio = "n/a" if math.isnan(row.ratio) else f"{row.ratio:.3f}"
        interval = (
            "-" if math.isnan(row.ratio_low) else f"[{row.ratio_low:.3f}, {row.ratio_high:.3f}]"
        )
        better = table.attrs.get("better", {}).get(row.metric, "")
        verdict = judged(row.flag, better) if row.flag else row.verdict
        if row.verdict == TOO_FEW:
            verdict += f" ({needed} {'pairs' if paired else 'per side'} needed)"
        lines.append(
            f"{row.metric:<{width}}  {row.a:>12.4g}  {row.b:>12.4g}  {ratio:>7}  {interval:>16}"
            f"  {f'{row.n_a}/{row.n_b}':>7}  {f'±{row.threshold:.0%}':>6}  {verdict}"
        )
    lines.extend(_one_sided_lines(table))
    for warning in table.attrs.get("noise", []):
        lines.append(f"warning: {warning}")
    if table.attrs.get("calibration"):
        raised = int((table["threshold"] > threshold).sum())
        lines.append(
            f"noise floors from calibration {table.attrs['calibration']}: "
            f"{raised} metric(s) judged against their floor instead of ±{threshold:.0%}"
        )
    counts = table["verdict"].value_counts()
    flagged = int((table["flag"] != "").sum())
    limit = "its limit" if (table["threshold"] > threshold).any() else f"{threshold:.0%}"
    summary_line = f"{flagged} of {len(table)} metrics changed by more than {limit}"
    rest = [f"{int(counts[v])} {v}" for v in (UNCHANGED, CANNOT_TELL, TOO_FEW) if v in counts]
    for key in ("only_a", "only_b"):
        if table.attrs.get(key):
            rest.append(f"{len(table.attrs[key])} only in {key[-1].upper()} (not compared)")
    if rest:
        summary_line += "; " + ", ".join(rest)
    if TOO_FEW in counts:
        summary_line += (
            f" (repeat: {needed} pairs support a 95 % interval)"
            if paired
            else f" (repeat: {needed} runs per side support a 95 % interval; "
            "interleave A and B on a busy machine: perfkit ab)"
        )
    lines.append(summary_line)
    return "\n".join(lines)
