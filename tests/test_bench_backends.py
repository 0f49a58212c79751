"""Benchmark: start-to-first-connection, teardown and memory of each backend.

Run with ``python -m pytest -m bench -s tests/test_bench_backends.py``; the
figures are printed (medians of several runs), never asserted.
"""

from __future__ import annotations

import time
from statistics import median

import pytest

from perfkit.postgres import ServerSettings, create_server

pytestmark = pytest.mark.bench
RUNS = 5


def measure(backend: str) -> dict[str, float]:
    starts, stops, memory = [], [], []
    for _ in range(RUNS):
        server = create_server(ServerSettings(backend=backend))
        t0 = time.monotonic()
        server.start()
        starts.append(time.monotonic() - t0)
        memory.append(server.memory_bytes() / 2**20)
        t0 = time.monotonic()
        server.stop()
        stops.append(time.monotonic() - t0)
    return {"start_s": median(starts), "stop_s": median(stops), "memory_mib": median(memory)}


@pytest.mark.parametrize("backend", ["local", "docker"])
def test_bench_backend_startup_teardown_memory(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_or_skip")
    figures = measure(backend)
    print(
        f"\n{backend}: start->first connect {figures['start_s']:.3f} s, "
        f"teardown {figures['stop_s']:.3f} s, server memory {figures['memory_mib']:.1f} MiB "
        f"(medians of {RUNS})"
    )
