"""The review's "Current Performance Baseline" table, measured.

Each lab states its headline numbers as a tidy ``headline`` frame (one row per
metric and variant: ``metric, variant, value, unit, label``), built with
:func:`headline_frame`. When a lab saved none, :data:`EXTRACTORS` derive the
headlines from its natural frames. :func:`baseline_table` then lays them
next to the review's claims; a metric no lab measured shows "not measured"
and the reason.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from perfkit.errors import PerfkitError
from perfkit.headlines import HEADLINE_COLUMNS, UNIT_SCALE, VARIANTS, Headline, headline_frame
from perfkit.results import Run, run_dirs
from perfkit.results import load as load_run

NOT_MEASURED = "not measured"
REPORT_EXPERIMENT = "report"  # what the summary notebook saves: every lab's headlines
NOT_LABS = frozenset({REPORT_EXPERIMENT, "sweep"})


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One row of the review's baseline table and the labs that can measure it."""

    metric: str
    title: str
    claimed_current: str
    claimed_target: str
    current_value: float | None  # the claim as a number in ``unit`` (for plots)
    target_value: float | None
    unit: str
    experiments: tuple[str, ...]


# The review's "Current Performance Baseline" table (performance-review.md).
BASELINE: tuple[Claim, ...] = (
    Claim(
        metric="connection_time",
        title="Database Connection Time",
        claimed_current="500ms × 30 = 15s",
        claimed_target="100ms × 5 = 500ms",
        current_value=15.0,
        target_value=0.5,
        unit="s",
        experiments=("retry",),
    ),
    Claim(
        metric="suite_runtime",
        title="Test Suite Runtime",
        claimed_current="25+ seconds",
        claimed_target="10 seconds",
        current_value=25.0,
        target_value=10.0,
        unit="s",
        experiments=("lifecycle",),
    ),
    Claim(
        metric="memory",
        title="Memory Usage",
        claimed_current="~500MB peak",
        claimed_target="~200MB peak",
        current_value=500.0,
        target_value=200.0,
        unit="MiB",
        experiments=("lifecycle",),
    ),
    Claim(
        metric="container_startup",
        title="Container Startup",
        claimed_current="2-3 seconds",
        claimed_target="Shared/cached",
        current_value=2.5,
        target_value=None,
        unit="s",
        experiments=("lifecycle",),
    ),
)

# Metric titles a lab may use instead of the keys (wide headline frames).
_TITLE_KEYS = {claim.title.lower(): claim.metric for claim in BASELINE}


def normalise(headlines: pd.DataFrame) -> pd.DataFrame:
    """Convert values to the table's units (s, MiB); drop rows without a finite value."""
    if headlines.empty:
        return pd.DataFrame(columns=[*HEADLINE_COLUMNS, "experiment", "run_id"])
    out = headlines.copy()
    for col in ("experiment", "run_id", "label"):
        if col not in out.columns:
            out[col] = ""
    units, values = [], []
    for unit, value in zip(out["unit"], out["value"], strict=True):
        unit = str(unit).split(" ", 1)[0] if str(unit).split() else ""  # "MiB peak" -> MiB
        target, scale = UNIT_SCALE.get(unit, (unit, 1.0))
        units.append(target)
        values.append(float(value) * scale)
    out["unit"], out["value"] = units, values
    out = out[out["value"].map(math.isfinite)]
    return out.reset_index(drop=True)


def metric_key(name: str) -> str:
    """``Test Suite Runtime`` -> ``suite_runtime``; other names -> snake_case."""
    name = str(name).strip()
    if name.lower() in _TITLE_KEYS:
        return _TITLE_KEYS[name.lower()]
    return "_".join(name.lower().replace("-", " ").split())


def from_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """A wide headline frame (``metric, unit, naive, improved[, naive_label, improved_label]``)
    in the long form :func:`headline_frame` makes."""
    rows: list[dict[str, Any]] = []
    for record in frame.to_dict("records"):
        for variant in VARIANTS:
            value = record.get(variant)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            label = str(record.get(f"{variant}_label") or "")
            if record.get("workers") is not None and label:
                label = f"{label} (workers={record['workers']})"
            rows.append(
                {
                    "metric": metric_key(record["metric"]),
                    "variant": variant,
                    "value": float(value),
                    "unit": str(record.get("unit") or ""),
                    "label": label,
                }
            )
    return pd.DataFrame(rows, columns=list(HEADLINE_COLUMNS))


# -- extractors for labs that saved no headline frame ---------------------------

Extractor = Callable[[Run], list[Headline]]


def _retry_headlines(run: Run) -> list[Headline]:
    """Connection time: worst time-to-connect of the naive and the backoff client."""
    runs = run.frames.get("runs")
    if runs is None or runs.empty or "time_to_connect_s" not in runs.columns:
        return []
    out: list[Headline] = []
    for variant, pattern in (("naive", "fixed|naive"), ("improved", "backoff|expon|jitter")):
        picked = runs[runs["strategy"].astype(str).str.contains(pattern, case=False, regex=True)]
        values = picked["time_to_connect_s"].dropna()
        if len(values):
            name = ", ".join(sorted(picked["strategy"].astype(str).unique()))
            out.append(
                Headline(
                    metric="connection_time",
                    variant=variant,
                    value=float(values.max()),
                    unit="s",
                    label=f"{name}: worst time to connect over {len(values)} runs",
                )
            )
    return out


def _streaming_headlines(run: Run) -> list[Headline]:
    """Client memory reading one result: fetchall (naive) vs the best streaming method."""
    table = run.frames.get("summary")
    if table is None or table.empty or "method" not in table.columns:
        return []
    by = table.set_index("method")
    rows = run.metadata.get("params", {}).get("rows")
    conclusions = run.frames.get("conclusions")
    if conclusions is not None and "rows" in conclusions.columns and len(conclusions):
        rows = int(conclusions["rows"].iloc[0])
    streaming = [m for m in ("stream", "server_cursor") if m in by.index]
    if "fetchall" not in by.index or not streaming:
        return []
    out: list[Headline] = []
    for column, metric, what in (
        ("rss_growth_bytes", "streaming_rss_growth", "RSS growth"),
        ("py_peak_bytes", "streaming_python_peak", "Python peak (tracemalloc)"),
    ):
        if column not in by.columns:
            continue
        best = min(streaming, key=lambda m: float(by.loc[m, column]))
        size = f"{rows:,} rows" if isinstance(rows, int) else "the lab's result"
        for variant, method in (("naive", "fetchall"), ("improved", best)):
            value = float(by.loc[method, column])
            if math.isfinite(value):
                out.append(
                    Headline(
                        metric=metric,
                        variant=variant,
                        value=value,
                        unit="B",
                        label=f"{method}: {what} reading {size}",
                    )
                )
    return out


def _pool_headlines(run: Run) -> list[Headline]:
    """Throughput and p99 wait: the review's pool preset vs the best size found."""
    table = run.frames.get("conclusions")
    if table is None or table.empty:
        return []
    c = table.iloc[0].to_dict()
    out: list[Headline] = []
    for metric, key, unit, what in (
        ("pool_throughput", "throughput_rps", "rps", "throughput"),
        ("pool_wait_p99", "wait_p99_ms", "ms", "p99 wait for a connection"),
    ):
        for variant, preset, name in (
            ("naive", "review", "review preset"),
            ("improved", "best", "best-found"),
        ):
            value = c.get(f"{preset}_{key}")
            if isinstance(value, int | float) and math.isfinite(value):
                size = c.get(f"{preset}_max_size")
                out.append(
                    Headline(
                        metric=metric,
                        variant=variant,
                        value=float(value),
                        unit=unit,
                        label=f"{name} (max_size={size}, "
                        f"{c.get('preset_workers')} workers): {what}",
                    )
                )
    return out


EXTRACTORS: dict[str, Extractor] = {
    "retry": _retry_headlines,
    "streaming": _streaming_headlines,
    "pool": _pool_headlines,
}


def headlines_of(run: Run) -> pd.DataFrame:
    """A run's headlines: its ``headline`` frame, else what its extractor derives."""
    frame = run.frames.get("headline")
    if frame is not None and {"naive", "improved"} <= set(frame.columns):
        frame = from_wide(frame)
    if frame is None or frame.empty:
        extractor = EXTRACTORS.get(run.experiment)
        frame = headline_frame(extractor(run)) if extractor else headline_frame([])
    frame = frame.copy()
    for column, value in (("experiment", run.experiment), ("run_id", run.run_id)):
        if column not in frame.columns:  # a report's headline frame keeps each lab's
            frame[column] = value
    return normalise(frame)


# -- collecting runs ------------------------------------------------------------


def latest_runs(
    data_dir: str | Path,
    experiments: Sequence[str] | None = None,
    *,
    since: str = "",
) -> tuple[dict[str, Run], dict[str, str]]:
    """The latest run of each experiment finished at or after ``since`` (ISO UTC; "" = any).

    Returns (runs by experiment, reasons by experiment for those without one).
    """
    data_dir = Path(data_dir)
    if experiments is None:
        experiments = sorted({e for claim in BASELINE for e in claim.experiments})
        if data_dir.is_dir():
            found = {
                p.name
                for p in data_dir.iterdir()
                if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_LABS
            }
            experiments = sorted(set(experiments) | found)
    runs: dict[str, Run] = {}
    missing: dict[str, str] = {}
    for experiment in experiments:
        dirs = run_dirs(experiment, data_dir)
        if not dirs:
            missing[experiment] = f"no results of the {experiment} lab in {data_dir}"
            continue
        run = load_run(dirs[-1])
        if since and _finished_before(run, since):
            missing[experiment] = (
                f"the {experiment} lab saved no results in this report run "
                f"(latest is {run.run_id}, older than {since})"
            )
            continue
        runs[experiment] = run
    return runs, missing


def _finished_before(run: Run, since: str) -> bool:
    try:
        finished = dt.datetime.fromisoformat(str(run.metadata.get("finished_at")))
        return finished < dt.datetime.fromisoformat(since)
    except (TypeError, ValueError):
        return True  # no usable time: cannot prove it belongs to this report


def collect_headlines(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Headlines of every run, concatenated."""
    frames = [headlines_of(run) for run in runs.values()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return normalise(headline_frame([]))
    return pd.concat(frames, ignore_index=True)


# -- the table ---------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """``15.3 s``, ``412 ms``, ``31.2 MiB``: readable, with a unit ("n/a" if not finite)."""
    if not math.isfinite(value):
        return "n/a"
    if unit == "count":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if unit == "s" and abs(value) < 1.0:
        return f"{value * 1000:.0f} ms" if abs(value) >= 0.01 else f"{value * 1000:.2f} ms"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def _pick(headlines: pd.DataFrame, claim: Claim, variant: str) -> pd.Series | None:
    rows = headlines[(headlines["metric"] == claim.metric) & (headlines["variant"] == variant)]
    if rows.empty:
        return None
    order = {e: i for i, e in enumerate(claim.experiments)}
    rows = rows.assign(_rank=rows["experiment"].map(lambda e: order.get(e, len(order))))
    return rows.sort_values("_rank", kind="stable").iloc[0]


def baseline_rows(
    headlines: pd.DataFrame, missing: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One record per claim: the claim, the measured values and how they were measured."""
    missing = dict(missing or {})
    records: list[dict[str, Any]] = []
    for claim in BASELINE:
        record: dict[str, Any] = {
            "metric": claim.metric,
            "title": claim.title,
            "claimed_current": claim.claimed_current,
            "claimed_target": claim.claimed_target,
            "unit": claim.unit,
        }
        reasons = [missing[e] for e in claim.experiments if e in missing]
        for variant in VARIANTS:
            row = _pick(headlines, claim, variant)
            if row is None:
                reason = "; ".join(reasons) or f"no lab reported {claim.metric} / {variant}"
                record[f"{variant}_value"] = math.nan
                record[f"{variant}_text"] = f"{NOT_MEASURED} ({reason})"
                record[f"{variant}_label"] = ""
                record[f"{variant}_source"] = ""
            else:
                record[f"{variant}_value"] = float(row["value"])
                record[f"{variant}_text"] = format_value(float(row["value"]), str(row["unit"]))
                record[f"{variant}_label"] = str(row["label"])
                record[f"{variant}_source"] = f"{row['experiment']} {row['run_id']}".strip()
        naive, improved = record["naive_value"], record["improved_value"]
        if math.isfinite(naive) and math.isfinite(improved) and naive > 0:
            record["change"] = f"{(improved - naive) / naive:+.0%}"
        else:
            record["change"] = ""
        records.append(record)
    return records


def baseline_table(
    headlines: pd.DataFrame, missing: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The review's table with two measured columns, ready to display."""
    records = baseline_rows(headlines, missing)
    return pd.DataFrame(
        {
            "Metric": [r["title"] for r in records],
            "Claimed current": [r["claimed_current"] for r in records],
            "Claimed target": [r["claimed_target"] for r in records],
            "Measured naive": [r["naive_text"] for r in records],
            "Measured improved": [r["improved_text"] for r in records],
            "Change": [r["change"] for r in records],
            "What was measured": [
                "; ".join(x for x in (r["naive_label"], r["improved_label"]) if x) for r in records
            ],
        }
    )


def other_headlines(headlines: pd.DataFrame) -> pd.DataFrame:
    """Headlines that are not one of the baseline metrics (shown below the table)."""
    known = {c.metric for c in BASELINE}
    rest = headlines[~headlines["metric"].isin(known)]
    return pd.DataFrame(
        {
            "Lab": rest["experiment"],
            "Metric": rest["metric"],
            "Variant": rest["variant"],
            "Value": [format_value(v, u) for v, u in zip(rest["value"], rest["unit"], strict=True)],
            "What was measured": rest["label"],
        }
    ).reset_index(drop=True)


def table_html(table: pd.DataFrame, *, table_id: str = "baseline") -> str:
    """An HTML table (escaped) with an id tests and readers can find."""
    return table.to_html(index=False, escape=True, table_id=table_id, na_rep="", border=0)


def plot_baseline(headlines: pd.DataFrame, missing: Mapping[str, str] | None = None) -> Any:
    """Claimed vs measured, one panel per metric; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    records = baseline_rows(headlines, missing)
    by_metric = {c.metric: c for c in BASELINE}
    fig, axes = plt.subplots(1, len(records), figsize=(3.2 * len(records), 3.2))
    for ax, record in zip(axes, records, strict=True):
        claim = by_metric[record["metric"]]
        labels = ["claimed\ncurrent", "claimed\ntarget", "measured\nnaive", "measured\nimproved"]
        values = [
            claim.current_value,
            claim.target_value,
            record["naive_value"],
            record["improved_value"],
        ]
        heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
        colors = ["#bbbbbb", "#dddddd", "#d62728", "#2ca02c"]
        ax.bar(labels, heights, color=colors)
        for i, v in enumerate(values):
            text = "n/a" if v is None or not math.isfinite(v) else format_value(v, claim.unit)
            ax.annotate(text, (i, heights[i]), ha="center", va="bottom", fontsize=7)
        ax.set_title(claim.title, fontsize=9)
        ax.set_ylabel(claim.unit)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


# -- figures of executed lab notebooks ---------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Figure:
    """A PNG figure from an executed notebook and the heading it sits under."""

    notebook: str
    caption: str
    png: bytes


def notebook_figures(path: str | Path, *, limit: int | None = None) -> list[Figure]:
    """PNG outputs of an executed notebook, captioned by the last markdown heading above."""
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise PerfkitError(f"executed notebook {path} not found")
    nb = nbformat.read(path, as_version=4)
    caption = path.stem
    figures: list[Figure] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.lstrip().startswith("#"):
                    caption = line.lstrip("# ").strip()
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                figures.append(Figure(notebook=path.stem, caption=caption, png=png))
    return figures[:limit] if limit is not None else figures


def lab_status_table(labs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The lab runs of a report: notebook, status, wall time and kernel overhead."""
    rows = []
    for lab in labs:
        ok = bool(lab.get("ok"))
        rows.append(
            {
                "Notebook": Path(str(lab.get("notebook", ""))).name,
                "Status": "ok" if ok else "failed",
                "Wall time": format_value(float(lab.get("wall_s", math.nan)), "s"),
                "Kernel/papermill overhead": format_value(float(lab.get("overhead_s", 0.0)), "s"),
                "Error": "" if ok else str(lab.get("error") or ""),
            }
        )
    return pd.DataFrame(
        rows, columns=["Notebook", "Status", "Wall time", "Kernel/papermill overhead", "Error"]
    )
