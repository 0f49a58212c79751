"""What the installed plugin costs a suite whose selected tests need no database.

``pytest -m bench -s tests/test_plugin_overhead_bench.py`` runs a 30-test suite
without database tests as a real pytest subprocess, PAIRS times with the plugin
and PAIRS times with ``-p no:perfkit``, each pair in alternating order, and
prints the paired shift (Hodges–Lehmann, exact Wilcoxon 95 % interval, n pairs)
of the wall time and of the CPU time (user + system) of the pytest process; on a
shared machine the CPU time is the steadier of the two.
Once with the plugin merely installed, once configured in pytest.ini as in a
project whose database tests are simply not selected (``pytest tests/unit``).
The goal is at most 0.1 s.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pluginrun import STEERING_ENV

from perfkit.stats import paired_shift_interval

pytestmark = pytest.mark.bench

PAIRS = 24
SUITE = "".join(f"def test_{i}():\n    assert {i} + 1 > {i}\n\n" for i in range(30))
CONFIGURED_INI = "[pytest]\nperfkit_isolation = warm-pool\nperfkit_backend = auto\n"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(folder: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest run of ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STEERING_ENV)}
    c0 = _cpu()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    assert "30 passed" in done.stdout
    return seconds, _cpu() - c0


@pytest.mark.parametrize("ini", ["[pytest]\n", CONFIGURED_INI], ids=["installed", "configured"])
def test_plugin_overhead_on_a_suite_without_database_tests(tmp_path: Path, ini: str) -> None:
    (tmp_path / "test_unit.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text(ini)
    without: list[tuple[float, float]] = []
    with_plugin: list[tuple[float, float]] = []
    _run(tmp_path)  # warm the file cache and byte code
    for i in range(PAIRS):
        if i % 2 == 0:
            without.append(_run(tmp_path, "-p", "no:perfkit"))
            with_plugin.append(_run(tmp_path))
        else:
            with_plugin.append(_run(tmp_path))
            without.append(_run(tmp_path, "-p", "no:perfkit"))
    kind = "configured" if "perfkit" in ini else "installed"
    print()
    for column, what in ((0, "wall"), (1, "CPU")):
        a = [run[column] for run in without]
        b = [run[column] for run in with_plugin]
        shift = paired_shift_interval(a, b)
        assert shift is not None
        print(
            f"plugin {kind}: 30 tests without a database, {what} overhead "
            f"{shift.format(scale=1000, unit=' ms')} over {sorted(a)[PAIRS // 2]:.3f} s "
            f"(median without; {PAIRS} pairs)"
        )
