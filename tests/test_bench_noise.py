"""Benchmark: do comparisons hold on a busy machine? (issue 18's acceptance numbers)

Run with ``python -m pytest -m bench -s tests/test_bench_noise.py`` (about half
an hour on 2 cores). Side A is ``perfkit report --quick --runs 4``; side B the
same with a one-core CPU hog beside it (a bounded busy loop in another
process). Same commit, same parameters: every flag is a false flag. It prints
``perfkit compare``'s table and the number of metrics flagged, then
calibrates this machine's noise from side A and compares again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfkit import calibrate, compare, results, summary

pytestmark = pytest.mark.bench
RUNS = 4
HOG_S = 3600  # bounded: the hog stops by itself even if this test is killed


def _reports(tmp: Path, side: str) -> list[str]:
    data = tmp / side / "data"
    command = [sys.executable, "-m", "perfkit.cli", "report", "--quick", "--backend", "local"]
    command += ["--runs", str(RUNS), "--data-dir", str(data), "--output-dir", str(tmp / "runs")]
    subprocess.run(command, check=True)
    return [str(p) for p in results.run_dirs(summary.REPORT_EXPERIMENT, data)]


def _hog() -> subprocess.Popen[bytes]:
    loop = f"import time\nend = time.time() + {HOG_S}\nwhile time.time() < end: pass\n"
    return subprocess.Popen([sys.executable, "-c", loop])


@pytest.mark.timeout(5400)  # eight quick reports: about 20 minutes on 2 cores
def test_bench_a_cpu_hog_beside_one_side_flags_at_most_one_metric(tmp_path: Path) -> None:
    started = time.monotonic()
    side_a = _reports(tmp_path, "a")
    hog = _hog()
    try:
        side_b = _reports(tmp_path, "b")
    finally:
        hog.kill()
        hog.wait()
    table = compare.compare_paths(side_a, side_b, threshold=0.1)
    print(compare.format_table(table, threshold=0.1))
    flagged = int(table["flag"].ne("").sum())
    made = calibrate.calibrate(side_a, out_dir=tmp_path / "cal")
    floored = compare.compare_paths(
        side_a, side_b, threshold=0.1, floors=calibrate.floors_of(results.load(made.path))
    )
    floored.attrs["calibration"] = made.run_id
    print(compare.format_table(floored, threshold=0.1))
    print(calibrate.format_floors(results.load(made.path)))
    print(
        f"flagged {flagged} of {len(table)} (with noise floors: "
        f"{int(floored['flag'].ne('').sum())}); {time.monotonic() - started:.0f} s"
    )
    assert flagged <= 1
