"""The review's "Current Performance Baseline" table, measured.

Each lab states its headline numbers through the lab contract
(``LAB.headlines(results)``, one long schema: :data:`perfkit.headlines.HEADLINE_COLUMNS`).
:func:`baseline_table` lays them next to the review's claims; a metric no lab
measured shows "not measured" and the reason. :func:`lab_sections` gives each
lab's conclusions and figures, drawn from its saved results.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from perfkit import noise, registry
from perfkit.errors import PerfkitError
from perfkit.headlines import (
    HEADLINE_COLUMNS,
    RUN_COLUMN,
    UNIT_SCALE,
    VARIANTS,
    candidate_of,
    headline_frame,
    with_better,
)
from perfkit.lab import SAMPLE_COLUMNS, SAMPLES_FRAME, Results
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


def normalise(headlines: pd.DataFrame) -> pd.DataFrame:
    """Convert values to the table's units (s, MiB); drop rows without a finite value."""
    if headlines.empty:
        return pd.DataFrame(columns=[*HEADLINE_COLUMNS, "experiment", "run_id"])
    out = headlines.copy()
    for col in ("experiment", "run_id", "label"):
        if col not in out.columns:
            out[col] = ""
    for col, missing in (("n", 0), ("ci_low", math.nan), ("ci_high", math.nan), ("better", "")):
        if col not in out.columns:  # saved before headlines carried intervals
            out[col] = missing
    scales, units = [], []
    for unit in out["unit"]:
        unit = str(unit).split(" ", 1)[0] if str(unit).split() else ""  # "MiB peak" -> MiB
        target, scale = UNIT_SCALE.get(unit, (unit, 1.0))
        units.append(target)
        scales.append(scale)
    out["unit"] = units
    for col in ("value", "ci_low", "ci_high"):
        out[col] = out[col].astype(float) * scales
    out = out[out["value"].map(math.isfinite)]
    return out.reset_index(drop=True)


def headlines_of(run: Run) -> pd.DataFrame:
    """A run's headlines: its lab's ``headlines()`` (a report's run: the saved frame)."""
    if run.experiment == REPORT_EXPERIMENT:
        frame = run.frames.get("headline", headline_frame([]))
    else:
        lab = registry.find(run.experiment)
        frame = lab.headlines(Results.of_run(run)) if lab is not None else headline_frame([])
    frame = with_better(frame, registry.headline_specs())  # saved before headlines said it
    for column, value in (("experiment", run.experiment), ("run_id", run.run_id)):
        if column not in frame.columns:  # a report's headline frame keeps each lab's
            frame[column] = value
    return normalise(frame)


def samples_of(run: Run) -> pd.DataFrame:
    """The raw samples behind a run's headlines (``metric, variant, unit, value, run``, plus
    ``experiment``), in the report's units; empty when the lab saved none."""
    frame = run.frames.get(SAMPLES_FRAME)
    if frame is None or frame.empty:
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN, "experiment"])
    missing = [c for c in SAMPLE_COLUMNS if c not in frame.columns]
    if missing:
        raise PerfkitError(
            f"run {run.run_id}: the {SAMPLES_FRAME!r} frame needs the columns "
            f"{', '.join(SAMPLE_COLUMNS)} (missing {', '.join(missing)})"
        )
    out = frame.copy()
    if "experiment" not in out.columns:
        out["experiment"] = run.experiment
    if RUN_COLUMN not in out.columns:  # saved by older code: the run as a whole
        out[RUN_COLUMN] = run.run_id
    return normalise(out)[[*SAMPLE_COLUMNS, RUN_COLUMN, "experiment"]]


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


def collect_samples(runs: Mapping[str, Run]) -> pd.DataFrame:
    """The samples behind every run's headlines, concatenated (for the report's own run)."""
    frames = [samples_of(run) for run in runs.values()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN, "experiment"])
    return pd.concat(frames, ignore_index=True)


# -- the table ---------------------------------------------------------------------


def format_estimate(row: Any) -> str:
    """``value [ci_low, ci_high] (n=N)`` when the headline has an interval, else the value."""
    text = format_value(float(row["value"]), str(row["unit"]))
    low, high = float(row.get("ci_low", math.nan)), float(row.get("ci_high", math.nan))
    n = int(row.get("n", 0) or 0)
    if math.isfinite(low) and math.isfinite(high):
        lo, hi = format_value(low, str(row["unit"])), format_value(high, str(row["unit"]))
        text = f"{text} [{lo}, {hi}]"
    return f"{text} (n={n})" if n else text


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
                record[f"{variant}_low"] = record[f"{variant}_high"] = math.nan
                record[f"{variant}_text"] = f"{NOT_MEASURED} ({reason})"
                record[f"{variant}_label"] = ""
                record[f"{variant}_source"] = ""
            else:
                record[f"{variant}_value"] = float(row["value"])
                record[f"{variant}_low"] = float(row.get("ci_low", math.nan))
                record[f"{variant}_high"] = float(row.get("ci_high", math.nan))
                record[f"{variant}_text"] = format_estimate(row)
                record[f"{variant}_label"] = str(row["label"])
                record[f"{variant}_source"] = f"{row['experiment']} {row['run_id']}".strip()
        record["better"] = _better_of(headlines, claim)
        record["direction"] = direction(
            record["naive_value"], record["improved_value"], record["better"]
        )
        record["change"] = change_text(
            record["naive_value"], record["improved_value"], record["better"]
        )
        records.append(record)
    return records


def _better_of(headlines: pd.DataFrame, claim: Claim) -> str:
    """The claim's metric's better direction, as its headlines declare it ("" if unknown)."""
    if "better" not in headlines.columns:
        return ""
    declared = headlines.loc[headlines["metric"] == claim.metric, "better"]
    declared = [str(b) for b in declared if str(b) in ("lower", "higher")]
    return declared[0] if declared else ""


def direction(naive: float, improved: float, better: str) -> str:
    """``"better"`` or ``"worse"``: improved against naive, in the metric's better direction
    (``"same"`` when equal, ``""`` when either value or the direction is missing)."""
    if not (math.isfinite(naive) and math.isfinite(improved)) or better not in ("lower", "higher"):
        return ""
    if improved == naive:
        return "same"
    lower = improved < naive
    return "better" if lower == (better == "lower") else "worse"


def change_text(naive: float, improved: float, better: str) -> str:
    """``-91% ▼ better``, ``+78% ▲ worse``: improved against naive (the arrow: which way the
    value went) and what that means in the metric's better direction."""
    if not (math.isfinite(naive) and math.isfinite(improved)) or naive <= 0:
        return ""
    word = direction(naive, improved, better)
    arrow = "▲" if improved > naive else "▼" if improved < naive else "="
    text = f"{(improved - naive) / naive:+.0%} {arrow}"
    return f"{text} {word}" if word else text


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
            "Better": [f"{r['better']} is better" if r["better"] else "" for r in records],
            "What was measured": [_measured(r) for r in records],
        }
    )


def _measured(record: Mapping[str, Any]) -> str:
    """Which candidate each measured column is: ``naive: <label>; improved: <label>``."""
    parts = [f"{v}: {record[f'{v}_label']}" for v in VARIANTS if record[f"{v}_label"]]
    return "; ".join(parts)


#: Cell styles of a measured value against the other variant, in its better direction.
DIRECTION_STYLE = {
    "better": "color: #1a7f37; font-weight: bold",
    "worse": "color: #c62828; font-weight: bold",
}
#: Bar colours of the measured improved value in :func:`plot_baseline`.
DIRECTION_COLOUR = {"better": "#2ca02c", "worse": "#d62728", "same": "#999999", "": "#999999"}


def baseline_html(
    headlines: pd.DataFrame, missing: Mapping[str, str] | None = None, *, table_id: str = "baseline"
) -> str:
    """The baseline table as HTML (escaped), the measured improved value and its change
    coloured by the metric's better direction: green when better than naive, red when worse."""
    records = baseline_rows(headlines, missing)
    table = baseline_table(headlines, missing)
    styles = [DIRECTION_STYLE.get(r["direction"], "") for r in records]

    def colour(frame: pd.DataFrame) -> pd.DataFrame:
        css = pd.DataFrame("", index=frame.index, columns=frame.columns)
        for column in ("Measured improved", "Change"):
            css[column] = styles
        return css

    styler = table.style.hide(axis="index").format(escape="html").apply(colour, axis=None)
    styler = styler.set_uuid(table_id).set_table_attributes('border="0"')
    # the cells keep Styler's ids (its CSS selects them); the table gets the id readers use
    return styler.to_html().replace(f'<table id="T_{table_id}"', f'<table id="{table_id}"', 1)


def other_headlines(headlines: pd.DataFrame) -> pd.DataFrame:
    """Headlines that are not one of the baseline metrics (shown below the table)."""
    known = {c.metric for c in BASELINE}
    rest = headlines[~headlines["metric"].isin(known)]
    return pd.DataFrame(
        {
            "Lab": rest["experiment"],
            "Metric": rest["metric"],
            "Variant": [
                f"{v} ({candidate_of(label)})" if candidate_of(label) else str(v)
                for v, label in zip(rest["variant"], rest["label"], strict=True)
            ],
            "Value": [format_estimate(row) for _, row in rest.iterrows()],
            "Better": [f"{b} is better" if b else "" for b in rest["better"]],
            "What was measured": rest["label"],
        }
    ).reset_index(drop=True)


def table_html(table: pd.DataFrame, *, table_id: str = "baseline") -> str:
    """An HTML table (escaped) with an id tests and readers can find."""
    return table.to_html(index=False, escape=True, table_id=table_id, na_rep="", border=0)


def plot_baseline(headlines: pd.DataFrame, missing: Mapping[str, str] | None = None) -> Any:
    """Claimed vs measured, one panel per metric, measured bars with their 95 % intervals;
    returns the matplotlib Figure."""
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
        colors = ["#bbbbbb", "#dddddd", "#1f77b4", DIRECTION_COLOUR[record["direction"]]]
        ax.bar(labels, heights, color=colors)
        for i, variant in ((2, "naive"), (3, "improved")):  # measured: 95 % interval bars
            low, high = record[f"{variant}_low"], record[f"{variant}_high"]
            if math.isfinite(low) and math.isfinite(high):
                err = [[max(heights[i] - low, 0.0)], [max(high - heights[i], 0.0)]]
                ax.errorbar([i], [heights[i]], yerr=err, color="black", capsize=3, lw=1)
        for i, v in enumerate(values):
            text = "n/a" if v is None or not math.isfinite(v) else format_value(v, claim.unit)
            if i == 3 and record["change"]:  # say which way the improved value went
                text = f"{text}\n{record['change']}"
            ax.annotate(text, (i, heights[i]), ha="center", va="bottom", fontsize=7)
        ax.margins(y=0.2)  # room for the labels above the bars
        ax.set_title(claim.title, fontsize=9)
        ax.set_ylabel(claim.unit)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig


# -- each lab's figures and conclusions, from its saved results ---------------------


def lab_sections(runs: Mapping[str, Run]) -> list[tuple[str, str, Iterator[tuple[str, Any]]]]:
    """(title, conclusions, (caption, figure)...) of each lab run, through the lab contract.

    The figures are drawn one at a time, as they are iterated, and each is closed
    when the next one is asked for: a report never holds more than one open
    figure (matplotlib warns past 20, into the page).
    """
    sections = []
    for lab in registry.LABS:
        run = runs.get(lab.name)
        if run is None:
            continue
        results = Results.of_run(run)
        figures = one_figure_at_a_time(lab.figures(results))
        sections.append((lab.title, lab.conclusions(results), figures))
    return sections


def where_time_went(runs: Mapping[str, Run]) -> Iterator[tuple[str, str, Any]]:
    """(lab title, caption, figure): each lab's "where the time went" figure, drawn one at
    a time like :func:`lab_sections` (each closed once the consumer moves past it)."""
    for lab in registry.LABS:
        run = runs.get(lab.name)
        if run is None:
            continue
        for caption, figure in one_figure_at_a_time(lab.figures(Results.of_run(run))):
            if is_where_figure(caption):
                yield lab.title, caption, figure


def is_where_figure(caption: str) -> bool:
    """Whether a lab figure's caption names a "where the time went" figure."""
    from perfkit.serverprofile.plots import CAPTION

    return CAPTION.lower() in caption.lower()


def one_figure_at_a_time(figures: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """``figures`` lazily, each closed once the consumer moves past it (or stops)."""
    import matplotlib.pyplot as plt

    for caption, figure in figures:
        try:
            yield caption, figure
        finally:
            plt.close(figure)


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


def machine_load_table(runs: Mapping[str, Run]) -> pd.DataFrame:
    """How busy the machine was during each lab's run (:mod:`perfkit.noise`); loaded runs marked."""
    rows = []
    for experiment, run in runs.items():
        record = noise.of_run(run.metadata)
        if record is None:
            rows.append({"Lab": experiment, "Run": run.run_id, "Loaded": "not recorded"})
            continue
        share = record.get("other_cpu_share")
        rows.append(
            {
                "Lab": experiment,
                "Run": run.run_id,
                "Other processes' CPU": "" if share is None else f"{float(share):.0%}",
                "Load before (1 min)": f"{float(record.get('load_1m_before') or 0.0):.2f}",
                "Cores": int(record.get("cores") or 0),
                "Loaded": "LOADED" if noise.is_loaded(record) else "no",
            }
        )
    columns = ["Lab", "Run", "Other processes' CPU", "Load before (1 min)", "Cores", "Loaded"]
    return pd.DataFrame(rows, columns=columns).fillna("")
