"""Benchmark (pytest -m bench -s): what papermill and the kernel cost per notebook run."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfkit import notebooks

TINY = Path(__file__).parent / "notebooks" / "tiny.ipynb"
PERFKIT = Path(sys.executable).parent / "perfkit"
REPEATS = 5


@pytest.mark.bench
@pytest.mark.notebook
def test_bench_papermill_and_kernel_overhead_per_notebook(tmp_path: Path) -> None:
    runs = [
        notebooks.execute(TINY, {"out_dir": str(tmp_path / "data")}, output_dir=tmp_path / "runs")
        for _ in range(REPEATS)
    ]
    cli = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        subprocess.run(
            [
                str(PERFKIT),
                "run",
                str(TINY),
                "-p",
                "out_dir",
                str(tmp_path / "data"),
                "--output-dir",
                str(tmp_path / "cli"),
            ],
            check=True,
            capture_output=True,
        )
        cli.append(time.perf_counter() - t0)
    med = statistics.median
    print(
        f"\ntiny notebook x{REPEATS}: papermill wall median {med(r.wall_s for r in runs):.2f} s, "
        f"in cells {med(r.cells_s for r in runs):.2f} s, "
        f"overhead (kernel start + papermill) {med(r.overhead_s for r in runs):.2f} s "
        f"[min {min(r.overhead_s for r in runs):.2f}, max {max(r.overhead_s for r in runs):.2f}]; "
        f"`perfkit run` process incl. HTML export: median {med(cli):.2f} s"
    )
    assert all(r.ok for r in runs)
