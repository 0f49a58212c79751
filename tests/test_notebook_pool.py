"""notebooks/02_pool_settings.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import notebooks, results
from perfkit.errors import ConfigError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_pool_settings.ipynb"

pytestmark = pytest.mark.notebook


def test_quick_run_writes_pool_results_with_consistent_counts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(out)},
        output_dir=tmp_path / "runs",
        html=False,
    )
    assert run.ok
    saved = results.latest("pool", out_dir=out)
    runs = saved.frames["runs"]
    assert set(runs["experiment"]) >= {"size", "spike", "timeout", "churn", "recovery", "presets"}
    assert (runs["requests"] == runs["successes"] + runs["errors"]).all()
    assert (runs["leaked"] == 0).all()
    conclusions = saved.frames["conclusions"].iloc[0]
    assert conclusions["peak_pool_size"] in set(runs["max_size"])
    assert conclusions["review_wait_p99_ms"] > 0
    assert set(saved.frames) >= {"requests", "stats", "events", "checkout", "checkout_summary"}
    assert saved.metadata["params"]["quick"] is True
    executed = run.executed.read_text()
    assert "Peak throughput" in executed
    assert "image/png" in executed


def test_bad_sweep_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(ConfigError) as info:
        notebooks.execute(
            NOTEBOOK,
            {"quick": True, "backend": "local", "out_dir": str(out), "worker_counts": [0]},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert "workers" in str(info.value)
    assert not out.exists()


def test_unknown_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_sise"):
        notebooks.execute(NOTEBOOK, {"max_sise": 5}, output_dir=tmp_path, html=False)
