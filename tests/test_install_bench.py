"""What installing perfkit costs: the light install (the plugin) next to the full one (``[lab]``).

``pytest -m bench -s tests/test_install_bench.py`` builds the wheel and installs
it REPEATS times each way into fresh venvs, alternating light and full so that
load on the machine falls on both, and prints pip's wall time (median and range,
n; with n = 5 the range covers the median 94 % of the time) and the venv's size.
pip's cache is whatever this machine has: the times are installs from a warm
cache and a local index, not downloads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wheelbuild import LAB_ONLY, build_wheel, install

pytestmark = [pytest.mark.bench, pytest.mark.wheel]

REPEATS = 5


@pytest.mark.timeout(3600)
def test_light_install_against_the_full_install(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    seconds: dict[str, list[float]] = {"light": [], "lab": []}
    sizes: dict[str, list[int]] = {"light": [], "lab": []}
    counts: dict[str, int] = {}
    for i in range(REPEATS):
        order = ("light", "lab") if i % 2 == 0 else ("lab", "light")
        for kind in order:
            done = install(wheel, tmp_path / f"{kind}{i}", extras="" if kind == "light" else "lab")
            seconds[kind].append(done.seconds)
            sizes[kind].append(done.size_bytes())
            dists = done.distributions()
            counts[kind] = len(dists)
            if kind == "light":
                assert not set(dists) & set(LAB_ONLY)
    print()
    for kind, label in (("light", "pip install perfkit"), ("lab", "pip install 'perfkit[lab]'")):
        t = sorted(seconds[kind])
        mib = [s / 2**20 for s in sizes[kind]]
        print(
            f"{label:28} median {t[len(t) // 2]:.1f} s [range {t[0]:.1f}, {t[-1]:.1f}] "
            f"(n={len(t)}); venv {min(mib):.0f}-{max(mib):.0f} MiB, "
            f"{counts[kind]} distributions"
        )
