"""perfkit.retry.plots: labels, units and notes a reader needs to read each figure."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from perfkit.retry import plots


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _summary(lengths: list[float], medians_s: tuple[float, float] = (0.4, 0.3)) -> pd.DataFrame:
    rows = []
    for length in lengths:
        for label, median in zip(("naive", "full_jitter"), medians_s, strict=True):
            rows.append(
                {
                    "scenario": "outage",
                    "label": label,
                    "param_s": length,
                    "overshoot_median_s": median,
                    "overshoot_ci_low_s": median - 0.05,
                    "overshoot_ci_high_s": median + 0.05,
                    "attempts_median": 4.0,
                    "attempts_ci_low": 3.0,
                    "attempts_ci_high": 5.0,
                }
            )
    return pd.DataFrame(rows)


def _texts(fig: matplotlib.figure.Figure) -> str:
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    return " ".join([t.get_text() for t in fig.texts] + legends)


def test_outage_sweep_with_one_length_says_it_is_not_a_sweep() -> None:
    fig = plots.outage_sweep(_summary([1.0]))
    assert "One outage length in this run (1 s)" in _texts(fig)


def test_outage_sweep_with_two_lengths_has_no_such_note() -> None:
    fig = plots.outage_sweep(_summary([1.0, 5.0]))
    assert "One outage length" not in _texts(fig)


def test_negative_median_overshoot_is_explained_in_the_sweep() -> None:
    fig = plots.outage_sweep(_summary([1.0, 5.0], medians_s=(0.4, -0.004)))
    assert "before the probe" in _texts(fig)


def _runs(overshoots_s: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "scenario": "cold_start",
            "param_s": float("nan"),
            "label": "naive",
            "overshoot_s": overshoots_s,
        }
    )


def test_ecdf_explains_negative_overshoot_when_there_is_one() -> None:
    fig = plots.overshoot_ecdf(_runs([-0.004, 0.02, 0.03]), scenario="cold_start")
    assert "connected before the probe (polling every 10 ms) saw the server ready" in _texts(fig)


def test_ecdf_without_negative_overshoot_has_no_such_note() -> None:
    fig = plots.overshoot_ecdf(_runs([0.004, 0.02]), scenario="cold_start")
    assert "before the probe" not in _texts(fig)


def test_model_vs_real_title_names_the_unit_of_its_axes() -> None:
    comparison = pd.DataFrame(
        {
            "metric": "overshoot_median_s",
            "scenario": "cold_start",
            "param_s": float("nan"),
            "label": ["naive", "full_jitter"],
            "predicted": [0.45, 0.05],
            "predicted_low": [0.44, 0.04],
            "predicted_high": [0.46, 0.06],
            "measured": [0.46, 0.06],
            "measured_low": [0.44, 0.03],
            "measured_high": [0.48, 0.09],
        }
    )
    ax = plots.model_vs_real(comparison).axes[0]
    assert ax.get_title() == "Model vs real: overshoot median (ms)"
    assert "(ms)" in ax.get_xlabel() and "(ms)" in ax.get_ylabel()


def test_timelines_legend_names_each_attempt_outcome() -> None:
    attempts = pd.DataFrame(
        {
            "scenario": "cold_start",
            "rep": 0,
            "param_s": float("nan"),
            "label": ["naive", "naive"],
            "t_event_s": [0.0, 0.5],
            "t_event_end_s": [0.01, 0.52],
            "outcome": ["error", "ok"],
        }
    )
    runs = pd.DataFrame(
        {
            "scenario": "cold_start",
            "rep": [0],
            "param_s": [float("nan")],
            "ready_after_event_s": [0.3],
        }
    )
    fig = plots.timelines(attempts, runs, scenario="cold_start", labels=["naive"])
    legend = _texts(fig)
    assert all(f"attempt: {outcome}" in legend for outcome in ("ok", "error", "timeout"))
    assert fig.axes[0].get_ylabel()
