"""notebooks/05_pgbouncer.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from perfkit import notebooks, pages, results
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.lab import SAMPLE_COLUMNS, Results
from perfkit.pgbouncer.analysis import METRIC_LATENCY, METRIC_PEAK, METRIC_RPS
from perfkit.pgbouncer.lab import LAB
from perfkit.postgres import leaks
from perfkit.postgres.pgbouncer import BINARY_ENV

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_pgbouncer.ipynb"
FRAMES = (
    "connect",
    "throughput",
    "throughput_bins",
    "storm",
    "storm_clients",
    "storm_attempts",
    "storm_backends",
    "pool",
    "pool_bins",
    "modes",
    "mode_servers",
    "samples",
)

pytestmark = pytest.mark.notebook


def test_quick_run_writes_pgbouncer_results_and_leaves_nothing(tmp_path: Path) -> None:
    before = set(leaks.find_leftovers())
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(out)},
        output_dir=tmp_path / "runs",
        html=False,
    )
    assert run.ok
    saved = results.latest("pgbouncer", out_dir=out)
    assert set(FRAMES) <= set(saved.frames)
    headline = LAB.headlines(Results.of_run(saved))
    assert {METRIC_LATENCY, METRIC_RPS, METRIC_PEAK} <= set(headline["metric"])
    assert all(math.isfinite(v) for v in headline["value"])
    samples = saved.frames["samples"]
    assert list(samples.columns) == [*SAMPLE_COLUMNS, "run"]
    assert set(samples["variant"]) == {"naive", "improved"}
    assert "PgBouncer in front of one server" in run.executed.read_text()
    assert pages.lab_page_problems(run.executed) == []
    assert set(leaks.find_leftovers()) <= before


def test_unknown_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown parameter no_such_thing"):
        notebooks.execute(
            NOTEBOOK, {"quick": True, "no_such_thing": 1}, output_dir=tmp_path / "runs"
        )
    assert not (tmp_path / "runs").exists()


def test_ill_typed_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="storm_clients"):
        notebooks.execute(
            NOTEBOOK, {"quick": True, "storm_clients": "many"}, output_dir=tmp_path / "runs"
        )
    assert not (tmp_path / "runs").exists()


def test_missing_pgbouncer_is_refused_before_a_kernel_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-pgbouncer"))
    with pytest.raises(BackendUnavailable, match="pgbouncer"):
        notebooks.execute(NOTEBOOK, {"quick": True}, output_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_one_stage_measures_only_its_part_and_the_other_cells_say_so(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(out), "stages": ["connect"]},
        output_dir=tmp_path / "runs",
        html=False,
    )
    assert run.ok
    saved = results.latest("pgbouncer", out_dir=out)
    assert set(saved.frames) == {"connect", "samples"}
    headline = LAB.headlines(Results.of_run(saved))
    assert set(headline["metric"]) == {METRIC_LATENCY}
    text = run.executed.read_text()
    assert "storm: not measured in this run" in text and "modes: not measured" in text
    assert "Not measured in this run: requests, storm, pool, modes." in text
