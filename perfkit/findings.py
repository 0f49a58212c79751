"""The report's answers first: one finding per question of the review, in plain words.

For each question (retry, pool settings, container lifecycle, streaming,
PgBouncer) a :class:`Finding` says what to do and what that measured, or
"cannot tell at this n" and why, in one or two sentences; the statistics behind
it go into :attr:`Finding.details`, shown folded under it. Everything is
computed from a run's frames, nothing is typed in: the headlines (the values,
their 95 % intervals and n, each metric's better direction) and the samples
behind them, judged by :func:`perfkit.verdicts.decide` (a recommendation only
when the samples separate the candidates). Where a lab's own frames are at
hand (the report notebook has every lab run), a lab may answer better from
them: the retry lab's schedule fitted to the machine's boots and its verdict.

Pure functions of frames: :func:`findings` (the frames), :func:`of_runs` (the
labs' runs), :func:`of_report_run` (a saved report); :func:`to_html` renders them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from perfkit import summary
from perfkit.headlines import RUN_COLUMN, HeadlineSpec, candidate_of
from perfkit.results import Run
from perfkit.verdicts import Verdict, decide

Status = Literal["separated", "indistinguishable", "insufficient", "not measured"]
CANNOT_TELL = "cannot tell at this n"


@dataclass(frozen=True, kw_only=True)
class Question:
    """One of the review's questions and the headline metric that answers it."""

    title: str
    experiment: str
    metric: str  # the headline metric whose naive/improved samples decide
    what: str  # the metric in words ("suite wall time")
    naive: str = "{candidate}"  # how to call each side ({candidate}: from its label)
    improved: str = "{candidate}"
    repeat: str = ""  # the lab's parameter that repeats its measurements (for "too few runs")


#: The review's questions, in report order.
QUESTIONS: tuple[Question, ...] = (
    Question(
        title="Connection retry",
        experiment="retry",
        metric="cold_start_overshoot",
        what="cold-start overshoot (connected minus server ready)",
        naive="the fixed 500 ms loop",
        improved="the review's backoff",
        repeat="repetitions",
    ),
    Question(
        title="Pool settings",
        experiment="pool",
        metric="pool_throughput",
        what="throughput",
        naive="the review's pool preset ({candidate})",
        improved="the best pool size found ({candidate})",
    ),
    Question(
        title="Container lifecycle and isolation",
        experiment="lifecycle",
        metric="suite_runtime",
        what="suite wall time",
        naive="a server per test",
        improved="one shared server ({candidate})",
        repeat="repetitions",
    ),
    Question(
        title="Streaming rows",
        experiment="streaming",
        metric="streaming_rss_growth",
        what="client memory growth (RSS)",
        naive="loading every row ({candidate})",
        improved="streaming them ({candidate})",
        repeat="repeats",
    ),
    Question(
        title="PgBouncer",
        experiment="pgbouncer",
        metric="pgbouncer_connect_latency",
        what="connect + SELECT 1 + close",
        naive="connecting directly",
        improved="PgBouncer in {candidate} mode",
    ),
)


@dataclass(frozen=True, kw_only=True)
class Finding:
    """The answer to one question: ``answer`` in plain words, ``details`` the statistics."""

    question: str
    experiment: str
    status: Status
    recommendation: str  # what to use; "" when the data cannot tell (or nothing was measured)
    answer: str
    details: tuple[str, ...] = ()

    @property
    def decided(self) -> bool:
        return bool(self.recommendation)


# -- estimates in words ----------------------------------------------------------------


def _estimate(row: Mapping[str, Any]) -> str:
    """``62 ms [5 ms, 78 ms]``: the headline's value and its 95 % interval (value alone
    without one)."""
    unit = str(row["unit"])
    text = summary.format_value(float(row["value"]), unit)
    low, high = float(row.get("ci_low", math.nan)), float(row.get("ci_high", math.nan))
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{summary.format_value(low, unit)}, {summary.format_value(high, unit)}]"
    return text


def _n_text(naive: Mapping[str, Any], improved: Mapping[str, Any]) -> str:
    a, b = int(naive.get("n", 0) or 0), int(improved.get("n", 0) or 0)
    if not a and not b:
        return "n not known"
    return f"n={a} each" if a == b else f"n={b} and {a}"


def _name(template: str, row: Mapping[str, Any], variant: str) -> str:
    candidate = candidate_of(str(row.get("label", ""))) or variant
    return template.format(candidate=candidate)


# -- deciding from the samples -----------------------------------------------------------


def _samples_of(samples: pd.DataFrame, question: Question, variant: str) -> pd.DataFrame:
    if samples.empty:
        return samples
    rows = samples[(samples["metric"] == question.metric) & (samples["variant"] == variant)]
    if "experiment" in rows.columns:
        rows = rows[rows["experiment"] == question.experiment]
    return rows[rows["value"].notna()]


def judge(
    naive: pd.DataFrame,
    improved: pd.DataFrame,
    names: tuple[str, str],
    *,
    better: str,
    statistic: str = "median",
) -> Verdict | None:
    """:func:`perfkit.verdicts.decide` between the two sides' samples (None without samples).

    The run is the unit when both sides come from two or more runs (as in
    :func:`perfkit.headlines.from_samples`); otherwise each sample is one.
    """
    if naive.empty or improved.empty:
        return None
    sides = dict(zip(names, (naive, improved), strict=True))
    by_run = all(RUN_COLUMN in s.columns and s[RUN_COLUMN].nunique() >= 2 for s in sides.values())
    groups = {n: s[RUN_COLUMN].astype(str).tolist() for n, s in sides.items()} if by_run else None
    return decide(
        {n: s["value"].astype(float).tolist() for n, s in sides.items()},
        lower_is_better=better != "higher",
        statistic=statistic,  # type: ignore[arg-type]
        groups=groups,
    )


def _why_not(verdict: Verdict | None, repeat: str = "") -> str:
    if verdict is None:
        return "the run saved no samples to decide from"
    if verdict.status == "insufficient":
        more = f"; run the lab with a larger `{repeat}`" if repeat else ""
        return verdict.reason + more
    if verdict.n_to_separate is None:
        return "no difference was observed, so more runs need not separate them"
    return f"about {verdict.n_to_separate} runs each would separate them"


# -- one finding ---------------------------------------------------------------------


def _rows(headlines: pd.DataFrame, question: Question) -> dict[str, dict[str, Any]]:
    if headlines.empty:
        return {}
    mine = headlines[
        (headlines["experiment"] == question.experiment) & (headlines["metric"] == question.metric)
    ]
    return {str(r["variant"]): dict(r) for _, r in mine.iterrows()}


def _answer(question: Question, verdict: Verdict | None, rows: Mapping[str, Any]) -> Finding:
    naive, improved = rows["naive"], rows["improved"]
    names = (_name(question.naive, naive, "naive"), _name(question.improved, improved, "improved"))
    both = f"{_estimate(improved)} vs {_estimate(naive)}"
    n = _n_text(naive, improved)
    status: Status = "insufficient" if verdict is None else verdict.status
    if verdict is not None and verdict.status == "separated":
        if verdict.winner == names[1]:
            answer = f"Use {names[1]} rather than {names[0]}: {question.what} {both} ({n})."
        else:
            answer = (
                f"Keep {names[0]}: {names[1]} measured worse, {question.what} "
                f"{_estimate(improved)} vs {_estimate(naive)} ({n})."
            )
        recommendation = str(verdict.winner)
    else:
        answer = (
            f"{CANNOT_TELL.capitalize()}: {question.what} {_estimate(improved)} with "
            f"{names[1]} vs {_estimate(naive)} with {names[0]} ({n}); "
            f"{_why_not(verdict, question.repeat)}."
        )
        recommendation = ""
    return Finding(
        question=question.title,
        experiment=question.experiment,
        status=status,
        recommendation=recommendation,
        answer=answer,
    )


def _detail_lines(
    headlines: pd.DataFrame,
    samples: pd.DataFrame,
    question: Question,
    specs: Mapping[str, HeadlineSpec],
) -> tuple[str, ...]:
    """Per headline metric of the lab: both sides with interval and n, and the verdict."""
    lines = []
    mine = (
        headlines[headlines["experiment"] == question.experiment] if len(headlines) else headlines
    )
    for metric, group in mine.groupby("metric", sort=False):
        rows = {str(r["variant"]): dict(r) for _, r in group.iterrows()}
        better = str(group["better"].iloc[0] or "lower")
        parts = [
            f"{v} ({candidate_of(str(r.get('label', ''))) or v}): {summary.format_estimate(r)}"
            for v, r in rows.items()
        ]
        line = f"{metric} ({better} is better): " + "; ".join(parts)
        if set(rows) == {"naive", "improved"}:
            sub = Question(title="", experiment=question.experiment, metric=str(metric), what="")
            spec = specs.get(str(metric), HeadlineSpec())
            verdict = judge(
                _samples_of(samples, sub, "naive"),
                _samples_of(samples, sub, "improved"),
                ("naive", "improved"),
                better=better,
                statistic=spec.statistic,
            )
            line += ". " + _verdict_text(verdict, group, samples, sub)
        lines.append(line)
    return tuple(lines)


def _verdict_text(
    verdict: Verdict | None, group: pd.DataFrame, samples: pd.DataFrame, question: Question
) -> str:
    """The verdict's sentence in readable units, and what its n counts."""
    if verdict is None:
        computed = (group["n"].fillna(0) == 0).all()
        return "Computed from the configuration, not measured." if computed else "No samples."
    unit, scale = str(group["unit"].iloc[0]), 1.0
    if unit == "s" and group["value"].abs().max() < 1:
        unit, scale = "ms", 1000.0
    text = verdict.text(unit=unit, scale=scale).rstrip(".") + "."
    sides = [_samples_of(samples, question, v) for v in ("naive", "improved")]
    one_run = any(
        len(s) > 1 and (RUN_COLUMN not in s.columns or s[RUN_COLUMN].nunique() == 1) for s in sides
    )
    return text + (
        " n counts samples of one run: they share that run's conditions, so the "
        "verdict is about this run, not a replicated one."
        if one_run
        else " n counts runs."
    )


def answer_question(
    question: Question,
    headlines: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    specs: Mapping[str, HeadlineSpec],
    missing: Mapping[str, str] | None = None,
) -> Finding:
    """The finding of one question from the headlines and samples (every lab's)."""
    rows = _rows(headlines, question)
    if set(rows) != {"naive", "improved"}:
        reason = (missing or {}).get(question.experiment) or (
            f"no {question.metric} headline of both sides in the {question.experiment} lab's run"
        )
        return Finding(
            question=question.title,
            experiment=question.experiment,
            status="not measured",
            recommendation="",
            answer=f"Not measured: {reason}.",
        )
    names = (
        _name(question.naive, rows["naive"], "naive"),
        _name(question.improved, rows["improved"], "improved"),
    )
    better = str(rows["improved"].get("better") or "lower")
    spec = specs.get(question.metric, HeadlineSpec())
    verdict = judge(
        _samples_of(samples, question, "naive"),
        _samples_of(samples, question, "improved"),
        names,
        better=better,
        statistic=spec.statistic,
    )
    found = _answer(question, verdict, rows)
    details = _detail_lines(headlines, samples, question, specs)
    return Finding(**{**found.__dict__, "details": details})


# -- a lab's own frames --------------------------------------------------------------


def _ms_interval(value: float, low: float, high: float) -> str:
    return f"{value * 1000:.0f} ms [{low * 1000:.0f}, {high * 1000:.0f}]"


def _retry_loops(summary_frame: pd.DataFrame | None) -> str:
    """The review's two loops' cold-start overshoot from the retry lab's ``summary`` frame."""
    if summary_frame is None or summary_frame.empty:
        return ""
    cold = summary_frame[summary_frame["scenario"] == "cold_start"].set_index("label")
    parts = []
    for label, name in (("naive", "the fixed 500 ms loop"), ("review", "the review's backoff")):
        if label in cold.index:
            r = cold.loc[label]
            interval = _ms_interval(
                r["overshoot_median_s"], r["overshoot_ci_low_s"], r["overshoot_ci_high_s"]
            )
            parts.append(f"{interval} for {name} (n={int(r['n'])})")
    return " vs " + " and ".join(parts) if parts else ""


def _retry_fitted(frames: Mapping[str, pd.DataFrame], found: Finding) -> Finding:
    """The retry lab's schedule fitted to this machine's boots, when the run measured it and
    its verdict against the review's two loops (the lab's ``verdicts`` frame) is at hand."""
    from perfkit.retry.conclusions import FITTED, describe_schedule

    fitted, verdicts = frames.get("fitted"), frames.get("verdicts")
    if fitted is None or fitted.empty or verdicts is None or verdicts.empty:
        return found
    chosen = verdicts[
        (verdicts["scenario"] == "cold_start")
        & (verdicts["metric"] == "overshoot_s")
        & (verdicts["candidates"].astype(str).str.startswith(FITTED))
    ]
    if chosen.empty:
        return found
    verdict, f = chosen.iloc[0], fitted.iloc[0]
    schedule = describe_schedule(dict(f))
    measured = _ms_interval(
        f["measured_overshoot_median_s"],
        f["measured_overshoot_ci_low_s"],
        f["measured_overshoot_ci_high_s"],
    )
    measured += f" after the server is ready (n={int(f['measured_n'])})"
    loops = _retry_loops(frames.get("summary"))
    details = (*found.details, f"Fitted schedule vs the review's loops: {verdict['text']}")
    if verdict["status"] == "separated" and verdict["winner"] == FITTED:
        return Finding(
            question=found.question,
            experiment=found.experiment,
            status="separated",
            recommendation=f"the fitted schedule ({schedule})",
            answer=f"Use the schedule fitted to this machine's boots ({schedule}): "
            f"{measured}{loops}.",
            details=details,
        )
    answer = (
        f"{found.answer} The schedule fitted to this machine's boots ({schedule}) measured "
        f"{measured}: {CANNOT_TELL} whether it beats them."
    )
    return Finding(**{**found.__dict__, "answer": answer, "details": details})


def _retry_fleet(frames: Mapping[str, pd.DataFrame], found: Finding) -> Finding:
    """The retry lab's backoff for a fleet (measured, with the size the herd model held at)
    as one more line under the retry answer."""
    rec, check = frames.get("fleet_recommendation"), frames.get("validation")
    if rec is None or rec.empty:
        return found
    from perfkit.retry.modelcheck import validated_up_to

    r = rec.iloc[0]
    sentence = str(r.get("measured_sentence") or "") or f"{r['sentence']} (predicted)"
    largest = validated_up_to(frames) if check is not None else None
    held = (
        f"the herd model agreed with real herds up to {largest:,} clients"
        if largest is not None
        else "the herd model did not agree with the real herds at any checked size"
    )
    line = f"Backoff for a fleet: {sentence[0].upper()}{sentence[1:]}; {held}."
    return Finding(**{**found.__dict__, "details": (*found.details, line)})


def _retry(frames: Mapping[str, pd.DataFrame], found: Finding) -> Finding:
    return _retry_fleet(frames, _retry_fitted(frames, found))


#: Experiment -> how its lab's own frames refine its finding.
REFINE = {"retry": _retry}


# -- every question ------------------------------------------------------------------


def findings(
    headlines: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    specs: Mapping[str, HeadlineSpec] | None = None,
    missing: Mapping[str, str] | None = None,
    frames: Mapping[str, Mapping[str, pd.DataFrame]] | None = None,
    questions: Sequence[Question] = QUESTIONS,
) -> list[Finding]:
    """One finding per question, from every lab's headlines and samples (the report's units,
    as :func:`perfkit.summary.collect_headlines` and ``collect_samples`` give them).

    ``specs`` gives each metric's statistic (default: the registered labs'); ``missing``
    why a lab has no run; ``frames`` each experiment's own frames, where at hand.
    """
    if specs is None:
        from perfkit import registry

        specs = registry.headline_specs()
    out = []
    for question in questions:
        found = answer_question(question, headlines, samples, specs=specs, missing=missing)
        refine = REFINE.get(question.experiment)
        lab_frames = (frames or {}).get(question.experiment)
        if refine is not None and lab_frames is not None and found.status != "not measured":
            found = refine(lab_frames, found)
        out.append(found)
    return out


def of_runs(runs: Mapping[str, Run], missing: Mapping[str, str] | None = None) -> list[Finding]:
    """The findings of the labs' latest runs (what :func:`perfkit.summary.latest_runs` gives)."""
    return findings(
        summary.collect_headlines(runs),
        summary.collect_samples(runs),
        missing=missing,
        frames={name: run.frames for name, run in runs.items()},
    )


def of_report_run(run: Run) -> list[Finding]:
    """The findings of a saved report run (its headline and samples frames)."""
    return findings(summary.headlines_of(run), summary.samples_of(run))


# -- rendering -----------------------------------------------------------------------


def to_html(items: Sequence[Finding]) -> str:
    """The findings as HTML (escaped): a paragraph each, the statistics folded under it."""
    parts = ['<div id="findings">']
    for f in items:
        parts.append(
            f'<div class="finding" data-experiment="{html.escape(f.experiment)}" '
            f'data-status="{html.escape(f.status)}" style="margin: 0 0 1em 0">'
            f"<p><strong>{html.escape(f.question)}.</strong> {html.escape(f.answer)}</p>"
        )
        if f.details:
            rows = "".join(f"<li>{html.escape(line)}</li>" for line in f.details)
            parts.append(f"<details><summary>Statistics</summary><ul>{rows}</ul></details>")
        parts.append("</div>")
    parts.append("</div>")
    return "\n".join(parts)


def to_markdown(items: Sequence[Finding]) -> str:
    """The findings as Markdown, one paragraph each (the statistics left out)."""
    return "\n\n".join(f"**{f.question}.** {f.answer}" for f in items)
