"""perfkit ab / run --runs / calibrate: repeated and interleaved lab runs from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perfkit import abtest, results
from perfkit.cli import main

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
STREAMING = str(NOTEBOOKS / "04_streaming.ipynb")


def test_pairs_alternate_which_side_runs_first() -> None:
    assert abtest.pair_orders(4) == [(0, 1), (1, 0), (0, 1), (1, 0)]


def test_identical_sides_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ab", STREAMING, "-p", "quick", "True", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "A and B are the same" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_an_unknown_side_parameter_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ab", STREAMING, "--b", "batch_sise", "500", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "batch_sise" in capsys.readouterr().err


def test_a_python_that_cannot_run_perfkit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nowhere" / "python")
    code = main(["ab", STREAMING, "--b-python", missing, "--data-dir", str(tmp_path)])
    assert code == 2
    assert "cannot run perfkit" in capsys.readouterr().err


def test_a_notebook_that_is_not_a_lab_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = str(NOTEBOOKS / "99_report.ipynb")
    code = main(["run", report, "--runs", "2", "--data-dir", str(tmp_path)])
    assert code == 2
    assert "not a lab notebook" in capsys.readouterr().err


def test_zero_pairs_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ab", STREAMING, "--b", "batch_size", "500", "--pairs", "0"])
    assert code == 2
    assert "--pairs must be at least 1" in capsys.readouterr().err


@pytest.mark.notebook
@pytest.mark.e2e
def test_ab_runs_both_sides_alternately_and_compares_the_pairs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = [sys.executable, "-m", "perfkit.cli", "ab", STREAMING, "-p", "quick", "True"]
    command += ["-p", "backend", "local", "--b", "batch_size", "500", "--pairs", "2"]
    command += ["--data-dir", str(data), "--output-dir", str(tmp_path / "runs")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stdout.splitlines() if line.startswith("== pair")] == [
        "== pair 1 of 2: A",
        "== pair 1 of 2: B",
        "== pair 2 of 2: B",
        "== pair 2 of 2: A",
    ]
    assert "note: A and B differ in batch_size: 5000 -> 500" in proc.stdout
    assert "not enough runs (6 pairs needed)" in proc.stdout
    runs = [results.load(p) for p in results.run_dirs("streaming", data)]
    assert sorted(r.metadata["params"]["batch_size"] for r in runs) == [500, 500, 5000, 5000]


@pytest.mark.notebook
@pytest.mark.e2e
def test_run_runs_k_times_then_calibrate_reads_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    command = [sys.executable, "-m", "perfkit.cli", "run", STREAMING, "-p", "quick", "True"]
    command += ["-p", "backend", "local", "--runs", "3", "--data-dir", str(data)]
    command += ["--output-dir", str(tmp_path / "runs")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = results.run_dirs("streaming", data)
    assert len(made) == 3 and "perfkit calibrate" in proc.stdout
    calibrate = [sys.executable, "-m", "perfkit.cli", "calibrate", *map(str, made)]
    out = subprocess.run(
        [*calibrate, "--data-dir", str(data)], capture_output=True, text=True, check=True
    ).stdout
    assert "streaming_rss_growth/naive (fetchall) [MiB]" in out
    assert len(results.run_dirs("calibration", data)) == 1
