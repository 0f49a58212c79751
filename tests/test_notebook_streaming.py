"""notebooks/04_streaming.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import notebooks, pages, results
from perfkit.errors import ConfigError
from perfkit.streaming.settings import METHODS

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_streaming.ipynb"

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streaming-quick")


@pytest.fixture(scope="module")
def quick_run(quick_data: Path) -> notebooks.NotebookRun:
    """One quick run of the notebook with its HTML page, shared by the checks below."""
    return notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(quick_data / "data"), "rows": 20_000},
        output_dir=quick_data / "runs",
    )


def test_quick_run_writes_streaming_results(
    quick_run: notebooks.NotebookRun, quick_data: Path
) -> None:
    run = quick_run
    assert run.ok
    saved = results.latest("streaming", out_dir=quick_data / "data")
    runs = saved.frames["runs"]
    assert set(runs["method"]) == set(METHODS)
    assert (runs["rows_read"] == 20_000).all()
    summary = saved.frames["summary"].set_index("method")
    assert summary.loc["stream", "py_peak_bytes"] < summary.loc["fetchall", "py_peak_bytes"]
    assert not saved.frames["memory"].empty
    assert "goal (>= 10x" in run.executed.read_text()


def test_quick_run_page_has_no_warnings_and_no_raw_frames(
    quick_run: notebooks.NotebookRun,
) -> None:
    assert pages.lab_page_problems(quick_run.executed) == []
    assert quick_run.html is not None and pages.problems(quick_run.html) == []


@pytest.mark.skipif(pages.chromium() is None, reason="headless Chromium is not installed")
def test_quick_run_page_fits_1200_px_in_chromium(quick_run: notebooks.NotebookRun) -> None:
    assert quick_run.html is not None
    width, widest = pages.page_width(quick_run.html)
    assert width <= pages.WIDTH_PX, f"{quick_run.html.name} is {width} px wide ({widest})"


def test_unknown_method_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(ConfigError, match="slurp"):
        notebooks.execute(
            NOTEBOOK,
            {"quick": True, "out_dir": str(out), "methods": ["slurp"]},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert not out.exists()
