"""notebooks/01_connection_retry.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import notebooks, pages, results
from perfkit.errors import ConfigError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "01_connection_retry.ipynb"

pytestmark = pytest.mark.notebook

FRAMES = {
    "worst_case",
    "review_claim",
    "runs",
    "attempts",
    "summary",
    "connect_time",
    "herd",
    "herd_rates",
    "herd_backends",
    "calibration",
    "sim_vs_real",
    "sim_rates",
    "simulation",
    "headline",
    "verdicts",
    "model_vs_real",
    "samples",
    "budget",
    "fitted",
    "ready_times",
}


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retry-quick")


@pytest.fixture(scope="module")
def quick_run(quick_data: Path) -> notebooks.NotebookRun:
    """One quick run of the notebook with its HTML page, shared by the checks below."""
    return notebooks.execute(
        NOTEBOOK,
        {
            "quick": True,
            "backend": "local",
            "out_dir": str(quick_data / "data"),
            "sim_clients": 2000,
        },
        output_dir=quick_data / "runs",
    )


@pytest.mark.slow
def test_quick_run_writes_retry_results_figures_and_conclusions(
    quick_run: notebooks.NotebookRun, quick_data: Path
) -> None:
    run, out = quick_run, quick_data / "data"
    assert run.ok
    saved = results.latest("retry", out_dir=out)
    assert set(saved.frames) >= FRAMES
    runs = saved.frames["runs"]
    assert set(runs["scenario"]) == {"cold_start", "outage", "hang"}
    assert runs["connected"].all()
    claim = saved.frames["review_claim"].set_index(["strategy", "scenario"])
    assert claim.loc[("review", "refused"), "sleep_without_jitter_s"] == pytest.approx(21.3)
    connect_time = saved.frames["connect_time"]
    assert {"strategy", "time_to_connect_median_s", "worst_case_refused_max_s"} <= set(
        connect_time.columns
    )
    headline = saved.frames["headline"]
    assert set(headline["variant"]) == {"naive", "improved"}
    assert (saved.frames["simulation"]["n_clients"] == 2000).all()
    assert saved.metadata["params"]["quick"] is True
    executed = run.executed.read_text()
    assert "The review's claim does not hold" in executed
    assert "Which strategy wins where" in executed
    assert executed.count("image/png") >= 8
    assert saved.frames["herd"]["connected"].sum() == 2 * 20
    cold = runs[runs["scenario"] == "cold_start"]
    assert "fitted" in set(cold["label"]) and cold[cold["label"] == "fitted"]["connected"].all()
    verdicts = saved.frames["verdicts"]
    assert {"cold_start", "outage"} <= set(verdicts["scenario"])
    assert set(verdicts["status"]) <= {"separated", "indistinguishable", "insufficient"}
    assert (verdicts["winner"].isna() | (verdicts["status"] == "separated")).all()
    model_vs_real = saved.frames["model_vs_real"]
    assert "fitted" in set(model_vs_real["label"]) and model_vs_real["predicted"].notna().all()
    assert set(saved.frames["samples"]["metric"]) == {
        "cold_start_time_to_connect",
        "cold_start_overshoot",
    }
    budget = saved.frames["budget"]
    assert (budget["round"] == 0).any() and budget["stop_reason"].nunique() == 1
    measured = headline[headline["metric"] == "cold_start_overshoot"]
    assert (measured["n"] >= 2).all() and (measured["ci_low"] <= measured["ci_high"]).all()
    assert "Fitted schedule" in executed and "The model ranks the cold start" in executed
    # the what-if section without a widget frontend (papermill keeps interactive = False):
    # a static table and figure, no widget
    assert "95 % interval (ms)" in executed and "delayed (defaults)" in executed
    assert "application/vnd.jupyter.widget-view+json" not in executed
    assert "not measured in this run" not in executed  # every stage ran
    # Opened again to explore: the saved run is loaded (nothing measured) and, asked for, the
    # what-if section is sliders (a widget view for the frontend) instead of the static table.
    again = notebooks.execute(
        NOTEBOOK,
        {**run.parameters, "reuse_saved": True, "interactive": True},
        output_dir=quick_data / "runs-again",
        html=False,
    )
    reopened = again.executed.read_text()
    assert again.ok and "nothing measured" in reopened
    assert "application/vnd.jupyter.widget-view+json" in reopened
    assert "95 % interval (ms)" not in reopened and "delayed (defaults)" not in reopened
    assert len(results.run_dirs("retry", out)) == 1


@pytest.mark.slow
def test_quick_run_page_has_no_warnings_and_no_raw_frames(
    quick_run: notebooks.NotebookRun,
) -> None:
    assert pages.lab_page_problems(quick_run.executed) == []
    assert quick_run.html is not None and pages.problems(quick_run.html) == []


@pytest.mark.slow
@pytest.mark.skipif(pages.chromium() is None, reason="headless Chromium is not installed")
def test_quick_run_page_fits_1200_px_in_chromium(quick_run: notebooks.NotebookRun) -> None:
    assert quick_run.html is not None
    width, widest = pages.page_width(quick_run.html)
    assert width <= pages.WIDTH_PX, f"{quick_run.html.name} is {width} px wide ({widest})"


def test_bad_strategy_name_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(ConfigError) as info:
        notebooks.execute(
            NOTEBOOK,
            {"quick": True, "backend": "local", "out_dir": str(out), "strategies": ["nope"]},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert "strategies" in str(info.value)
    assert not out.exists()


def test_unknown_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outage_seconds"):
        notebooks.execute(NOTEBOOK, {"outage_seconds": [5.0]}, output_dir=tmp_path, html=False)


def test_unknown_stage_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown stage 'warmup'.*'analytic', 'cold_start'"):
        notebooks.execute(NOTEBOOK, {"stages": ["warmup"]}, output_dir=tmp_path, html=False)
    assert not any(tmp_path.iterdir())


def test_one_stage_runs_every_cell_and_a_second_run_can_reuse_it(tmp_path: Path) -> None:
    out = tmp_path / "data"
    given = {"quick": True, "out_dir": str(out), "stages": ["analytic"]}
    first = notebooks.execute(NOTEBOOK, given, output_dir=tmp_path / "runs", html=False)
    assert first.ok
    text = first.executed.read_text()
    assert "cold_start: not measured in this run" in text and "herd: not measured" in text
    assert "Not measured in this run: cold_start, outages" in text  # the conclusions say so
    assert "what-if: not available" in text
    again = notebooks.execute(
        NOTEBOOK, {**given, "reuse_saved": True}, output_dir=tmp_path / "runs", html=False
    )
    assert again.ok and "nothing measured" in again.executed.read_text()
    assert len(results.run_dirs("retry", out)) == 1
