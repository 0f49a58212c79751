"""The plugin's terminal summary and the benchmark's intervals, on records and samples made here."""

from __future__ import annotations

import math
import random

from perfkit.lifecycle.timing_summary import summary_lines
from perfkit.stats import quantile_interval


def _test(acquire_s: float, at: float) -> dict[str, object]:
    return {
        "event": "test",
        "strategy": "warm-pool",
        "acquire_s": acquire_s,
        "release_s": 0.0001,
        "t_acquired": at,
        "seconds": acquire_s,
    }


def test_summary_counts_the_tests_that_waited_for_their_database() -> None:
    records = [_test(0.00002, i * 0.1) for i in range(8)] + [_test(0.030, 0.9), _test(0.020, 1.0)]
    (line,) = summary_lines(records)
    assert line.startswith("warm-pool: 10 tests, 2 waited for a database")


def test_summary_flags_tests_that_outpace_the_cloners() -> None:
    setup = {"event": "session_setup", "strategy": "warm-pool", "clone_workers": 1, "seconds": 0}
    clones = [{"event": "pool_clone", "seconds": 0.1} for _ in range(10)]  # 10/s refill
    tests = [_test(0.0, i * 0.01) for i in range(10)]  # 100/s consumption
    (line,) = summary_lines([setup, *clones, *tests])
    assert "refill 10/s vs consumption 100/s" in line
    assert "raise --perfkit-clone-workers" in line


def test_summary_is_empty_without_tests() -> None:
    assert summary_lines([{"event": "server_start", "seconds": 1.0}]) == []


def test_median_interval_covers_the_true_median_of_a_known_distribution() -> None:
    rng = random.Random(1)
    sample = [rng.gauss(10.0, 1.0) for _ in range(400)]
    estimate = quantile_interval(sample)
    assert estimate.n == 400
    assert estimate.low <= 10.0 <= estimate.high
    assert estimate.high - estimate.low < 0.5


def test_interval_is_reproducible_with_its_seed() -> None:
    sample = [float(i % 7) for i in range(50)]
    assert quantile_interval(sample, 0.9, seed=3) == quantile_interval(sample, 0.9, seed=3)


def test_empty_sample_gives_no_estimate_but_says_n() -> None:
    estimate = quantile_interval([])
    assert math.isnan(estimate.value) and estimate.n == 0
    assert estimate.format() == "n/a (n=0)"


def test_summary_names_the_backend_its_servers_ran_on() -> None:
    start = {"event": "server_start", "seconds": 1.0, "backend": "local", "reused": True}
    (line,) = summary_lines([start, _test(0.0, 0.0)])
    assert line.startswith("warm-pool: 1 tests on local (reused), 0 waited for a database")


def test_summary_counts_the_stable_dsn_paths_apart() -> None:
    tests = [{**_test(0.0, i * 0.1), "strategy": "verified"} for i in range(3)]
    paths = [
        {"event": "pool_reuse", "seconds": 0.0002, "stable": True},
        {"event": "pool_reset", "seconds": 0.003, "stable": True},
        {"event": "pool_dirty", "seconds": 0.02, "stable": True},
    ]
    (line,) = summary_lines([*tests, *paths])
    assert line.endswith(
        "; stable DSN: 1 reused clean (check p50 0.2 ms p99 0.2 ms), "
        "1 reset in place (check p50 3.0 ms p99 3.0 ms), "
        "1 recreated (check p50 20.0 ms p99 20.0 ms)"
    )


def _stable_checks(*checks: str) -> list[dict[str, object]]:
    tests = [{**_test(0.0, i * 0.1), "strategy": "verified"} for i in range(len(checks))]
    paths = [
        {"event": "pool_reset", "seconds": 0.003, "stable": True, "check": check}
        for check in checks
    ]
    return [*tests, *paths]


def test_summary_says_how_many_stable_dsn_checks_read_the_wal() -> None:
    (line,) = summary_lines(_stable_checks("wal", "wal", "scan", "quick"))
    assert line.endswith("; changes read from the WAL in 2 of 3 checks")


def test_summary_says_how_to_read_the_wal_when_every_check_scanned() -> None:
    (line,) = summary_lines(_stable_checks("scan", "scan"))
    assert "every change check (2) scanned all tables and catalogs (install pg_walinspect" in line
