"""notebooks/04_streaming.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import notebooks, results
from perfkit.errors import ConfigError
from perfkit.streaming.settings import METHODS

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_streaming.ipynb"

pytestmark = pytest.mark.notebook


def test_quick_run_writes_streaming_results(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(out), "rows": 20_000},
        output_dir=tmp_path / "runs",
        html=False,
    )
    assert run.ok
    saved = results.latest("streaming", out_dir=out)
    runs = saved.frames["runs"]
    assert set(runs["method"]) == set(METHODS)
    assert (runs["rows_read"] == 20_000).all()
    summary = saved.frames["summary"].set_index("method")
    assert summary.loc["stream", "py_peak_bytes"] < summary.loc["fetchall", "py_peak_bytes"]
    assert not saved.frames["memory"].empty
    assert "goal (>= 10x" in run.executed.read_text()


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
