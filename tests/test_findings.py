"""perfkit.findings: one plain answer per review question, decided by the samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from perfkit import findings, results, summary
from perfkit.headlines import HeadlineSpec, from_samples

REFERENCE = Path(__file__).resolve().parent.parent / "data/reference/report/20261204T182345Z-6010a4"


@pytest.fixture(scope="module")
def reference() -> list[findings.Finding]:
    return findings.of_report_run(results.load(REFERENCE))


@pytest.fixture(scope="module")
def reference_headlines() -> pd.DataFrame:
    return summary.headlines_of(results.load(REFERENCE))


def test_the_reference_run_answers_every_question_in_order(
    reference: list[findings.Finding],
) -> None:
    assert [f.experiment for f in reference] == [q.experiment for q in findings.QUESTIONS]
    assert all(f.status != "not measured" for f in reference)


def test_each_reference_finding_names_a_recommendation_or_says_why_it_cannot(
    reference: list[findings.Finding],
) -> None:
    for f in reference:
        if f.decided:
            assert f.answer.startswith(("Use ", "Keep ")), f.answer
            assert f.recommendation in f.answer
        else:
            assert f.answer.startswith("Cannot tell at this n: "), f.answer
            reason = f.answer.split("; ", 1)[1]
            assert "needed" in reason or "would separate" in reason or "no difference" in reason


def test_each_reference_answer_carries_both_sides_values_and_n(
    reference: list[findings.Finding], reference_headlines: pd.DataFrame
) -> None:
    for f, q in zip(reference, findings.QUESTIONS, strict=True):
        rows = reference_headlines[
            (reference_headlines["experiment"] == q.experiment)
            & (reference_headlines["metric"] == q.metric)
        ]
        for _, row in rows.iterrows():
            assert summary.format_value(float(row["value"]), str(row["unit"])) in f.answer
        assert "n=" in f.answer


def test_a_far_apart_pair_with_hundreds_of_samples_is_a_recommendation(
    reference: list[findings.Finding],
) -> None:
    pgbouncer = next(f for f in reference if f.experiment == "pgbouncer")
    assert pgbouncer.status == "separated" and "transaction" in pgbouncer.recommendation


def test_a_side_measured_once_cannot_be_told_apart_and_the_answer_says_so(
    reference: list[findings.Finding],
) -> None:
    lifecycle = next(f for f in reference if f.experiment == "lifecycle")
    assert lifecycle.status == "insufficient" and not lifecycle.decided
    assert "has n=1" in lifecycle.answer and "`repetitions`" in lifecycle.answer


def test_every_reference_finding_keeps_its_statistics_for_the_details_block(
    reference: list[findings.Finding],
) -> None:
    for f in reference:
        assert f.details, f.question
        assert all("is better" in line for line in f.details)


# -- synthetic frames ---------------------------------------------------------------


def _frames(
    naive: np.ndarray, improved: np.ndarray, *, better: str = "lower", runs: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Headlines and samples of the pgbouncer question's metric, ``runs`` runs per side."""
    rows = []
    for variant, values in (("naive", naive), ("improved", improved)):
        for i, value in enumerate(values):
            rows.append(
                {
                    "metric": "pgbouncer_connect_latency",
                    "variant": variant,
                    "unit": "s",
                    "value": float(value),
                    "run": i % runs,
                    "label": "direct" if variant == "naive" else "transaction",
                }
            )
    samples = pd.DataFrame(rows)
    spec = {"pgbouncer_connect_latency": HeadlineSpec(better=better)}
    headlines = from_samples(samples, spec).assign(experiment="pgbouncer", run_id="r")
    return summary.normalise(headlines), samples.assign(experiment="pgbouncer")


def _pgbouncer(headlines: pd.DataFrame, samples: pd.DataFrame) -> findings.Finding:
    (question,) = [q for q in findings.QUESTIONS if q.experiment == "pgbouncer"]
    return findings.findings(headlines, samples, questions=[question])[0]


def test_two_candidates_drawn_alike_cannot_be_told_apart() -> None:
    rng = np.random.default_rng(7)
    found = _pgbouncer(*_frames(rng.normal(0.005, 0.001, 12), rng.normal(0.005, 0.001, 12)))
    assert found.status == "indistinguishable" and found.recommendation == ""
    assert found.answer.startswith("Cannot tell at this n: ")
    assert "n=12 each" in found.answer


def test_two_candidates_alike_over_runs_cannot_be_told_apart_and_n_counts_runs() -> None:
    rng = np.random.default_rng(3)
    frames = _frames(rng.normal(0.005, 0.001, 40), rng.normal(0.005, 0.001, 40), runs=4)
    found = _pgbouncer(*frames)
    assert not found.decided and "n=4 each" in found.answer
    assert found.details[0].endswith("n counts runs.")


def test_a_clearly_better_improved_side_is_recommended() -> None:
    rng = np.random.default_rng(1)
    found = _pgbouncer(*_frames(rng.normal(0.010, 0.001, 30), rng.normal(0.003, 0.001, 30)))
    assert found.status == "separated"
    assert found.recommendation == "PgBouncer in transaction mode"
    assert found.answer.startswith("Use PgBouncer in transaction mode rather than")


def test_a_clearly_worse_improved_side_is_not_recommended() -> None:
    rng = np.random.default_rng(1)
    found = _pgbouncer(*_frames(rng.normal(0.003, 0.001, 30), rng.normal(0.010, 0.001, 30)))
    assert found.recommendation == "connecting directly"
    assert found.answer.startswith("Keep connecting directly: PgBouncer in transaction mode")


def test_the_better_direction_decides_which_side_is_recommended() -> None:
    rng = np.random.default_rng(1)
    frames = _frames(rng.normal(0.003, 0.001, 30), rng.normal(0.010, 0.001, 30), better="higher")
    assert _pgbouncer(*frames).recommendation == "PgBouncer in transaction mode"


def test_a_lab_without_a_run_is_not_measured_and_says_why() -> None:
    empty = summary.normalise(summary.headline_frame([]))
    items = findings.findings(empty, empty, missing={"retry": "the retry lab failed: boom"})
    retry = items[0]
    assert retry.status == "not measured" and retry.answer == (
        "Not measured: the retry lab failed: boom."
    )
    assert all(f.status == "not measured" for f in items)


def _fitted_frames(status: str, winner: str) -> dict[str, pd.DataFrame]:
    fitted = pd.DataFrame(
        [
            {
                "kind": "delayed_exponential",
                "first_delay": 1.2,
                "base": 0.09,
                "multiplier": 1.0,
                "cap": 0.09,
                "max_attempts": 40,
                "measured_overshoot_median_s": 0.062,
                "measured_overshoot_ci_low_s": 0.005,
                "measured_overshoot_ci_high_s": 0.078,
                "measured_n": 6,
            }
        ]
    )
    verdicts = pd.DataFrame(
        [
            {
                "scenario": "cold_start",
                "metric": "overshoot_s",
                "candidates": "fitted vs naive, review",
                "status": status,
                "winner": winner,
                "text": "the verdict in full",
            }
        ]
    )
    cold = pd.DataFrame(
        [
            {
                "scenario": "cold_start",
                "label": label,
                "n": 6,
                "overshoot_median_s": 0.186,
                "overshoot_ci_low_s": 0.1,
                "overshoot_ci_high_s": 0.3,
            }
            for label in ("naive", "review")
        ]
    )
    return {"fitted": fitted, "verdicts": verdicts, "summary": cold}


def _retry(reference_headlines: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> findings.Finding:
    samples = summary.samples_of(results.load(REFERENCE))
    return findings.findings(reference_headlines, samples, frames={"retry": frames})[0]


def test_a_fitted_retry_schedule_that_beats_both_loops_is_the_recommendation(
    reference_headlines: pd.DataFrame,
) -> None:
    found = _retry(reference_headlines, _fitted_frames("separated", "fitted"))
    assert found.status == "separated" and found.recommendation.startswith("the fitted schedule")
    assert found.answer.startswith(
        "Use the schedule fitted to this machine's boots (delayed_exponential: first retry "
        "after 1200.0 ms, then every 90.0 ms, at most 40 attempts): 62 ms [5, 78] after the "
        "server is ready (n=6) vs 186 ms [100, 300] for the fixed 500 ms loop (n=6)"
    )
    assert found.details[-1].endswith("the verdict in full")


def test_a_fitted_retry_schedule_not_separated_is_reported_but_not_recommended(
    reference_headlines: pd.DataFrame,
) -> None:
    found = _retry(reference_headlines, _fitted_frames("indistinguishable", ""))
    assert not found.decided
    assert "cannot tell at this n whether it beats them" in found.answer


def test_the_measured_fleet_backoff_is_listed_under_the_retry_answer(
    reference_headlines: pd.DataFrame,
) -> None:
    check = pd.DataFrame(
        [
            {"strategy": s, "n_clients": 300, "metric": m, "agrees": True}
            for s in ("naive", "full_jitter")
            for m in ("median_connected_after_ready_s", "timeouts")
        ]
    )
    rec = pd.DataFrame(
        [{"sentence": "for 300 clients ... (model)", "measured_sentence": "for 300 clients use X"}]
    )
    found = _retry(reference_headlines, {"validation": check, "fleet_recommendation": rec})
    assert found.details[-1] == (
        "Backoff for a fleet: For 300 clients use X; the herd model agreed with real herds "
        "up to 300 clients."
    )


def test_findings_render_as_escaped_html_with_the_statistics_folded(
    reference: list[findings.Finding],
) -> None:
    odd = findings.Finding(
        question="<q>", experiment="x", status="insufficient", recommendation="", answer="a<b"
    )
    soup = BeautifulSoup(findings.to_html([*reference, odd]), "html.parser")
    blocks = soup.find("div", id="findings").find_all("div", class_="finding")
    assert len(blocks) == len(reference) + 1
    assert all(b.find("details").find("summary").get_text() == "Statistics" for b in blocks[:-1])
    assert blocks[-1].find("details") is None and blocks[-1].p.get_text() == "<q>. a<b"
