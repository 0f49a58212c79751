"""The measured suite, its runner, the analysis of its frames, and the benchmarks (-m bench)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.lifecycle import analysis, bench, micro
from perfkit.lifecycle.experiment import LifecycleConfig
from perfkit.lifecycle.settings import IsolationSettings


def collect(suite: Path, *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(suite / "pytest.ini"),
            "--rootdir",
            str(suite),
            str(suite),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "::" in line]


def test_shipped_suite_has_the_reviews_shape(tmp_path: Path) -> None:
    suite = bench.prepare_suite(tmp_path / "suite")
    tests = collect(suite)
    kinds = pd.Series([bench._kind(t) for t in tests]).value_counts().to_dict()
    assert kinds == bench.FULL_COUNTS == {"end_to_end": 7, "integration": 19, "migration": 3}
    quick = collect(suite, "-m", "quick")
    assert len(quick) == bench.QUICK_TESTS
    assert {bench._kind(t) for t in quick} == {"end_to_end", "integration", "migration"}


def test_suite_settings_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown isolation"):
        bench.SuiteSettings(strategy="shared")
    with pytest.raises(ConfigError, match="workers"):
        bench.SuiteSettings(strategy="rollback", workers=0)
    with pytest.raises(ConfigError, match="dsn"):
        bench.SuiteSettings(strategy="rollback", backend="external")


def test_command_uses_xdist_only_in_parallel_and_never_carries_the_dsn(tmp_path: Path) -> None:
    secret = "postgresql://u:topsecret@127.0.0.1:5432/x"
    serial = bench.pytest_command(
        bench.SuiteSettings(strategy="template", backend="external", dsn=secret),
        tmp_path,
        tmp_path / "t.json",
    )
    parallel = bench.pytest_command(
        bench.SuiteSettings(strategy="template", workers=2, quick=True), tmp_path, tmp_path / "t"
    )
    assert "-n" not in serial and "topsecret" not in " ".join(serial)
    assert parallel[parallel.index("-n") + 1] == "2"
    assert parallel[parallel.index("quick") - 1] == "-m"


def test_quick_suite_run_under_rollback_is_measured() -> None:
    result = bench.run_suite(bench.SuiteSettings(strategy="rollback", backend="local", quick=True))
    run = result.run
    assert run["exit_code"] == 0, result.output
    assert run["tests"] == 6 and run["tests_failed"] == 0
    assert run["servers_started"] == 1 and run["containers_started"] == 0
    assert run["peak_server_bytes"] > 0 and run["peak_pytest_bytes"] > 0
    assert run["session_s"] < run["wall_s"]
    assert {t["kind"] for t in result.tests} == {"end_to_end", "integration", "migration"}
    assert all(t["isolation"] == "rollback" for t in result.tests)
    assert result.memory and all(m["run_id"] == run["run_id"] for m in result.memory)


def test_the_suite_fails_without_isolation() -> None:
    result = bench.run_suite(bench.SuiteSettings(strategy="none", backend="local", quick=True))
    assert result.run["exit_code"] == 1
    assert result.run["tests_failed"] >= 1


def test_memory_sampler_sees_the_process_tree() -> None:
    sample = bench.MemorySampler(os.getpid(), 0.1).sample()
    assert sample["pytest_bytes"] > 0
    assert sample["processes"] >= 1


def runs_frame() -> pd.DataFrame:
    rows = []
    for strategy, wall, session_s in [
        ("per-test-server", 30.0, 29.0),
        ("rollback", 2.0, 1.0),
        ("template", 4.0, 3.0),
        ("none", 1.5, 0.5),
    ]:
        for workers, factor in [(1, 1.0), (2, 0.6)]:
            rows.append(
                {
                    "run_id": f"{strategy}-{workers}",
                    "strategy": strategy,
                    "workers": workers,
                    "wall_s": wall * factor,
                    "session_s": session_s * factor,
                    "exit_code": 0,
                    "tests": 29,
                    "servers_started": 29 if strategy == "per-test-server" else workers,
                    "peak_total_bytes": 100 * 2**20,
                }
            )
    return pd.DataFrame(rows)


def test_speedup_and_best_shared_strategy() -> None:
    runs = runs_frame()
    assert analysis.best_shared(runs, 1) == "rollback"  # "none" does not isolate
    assert analysis.speedup(runs, improved="rollback") == pytest.approx(15.0)
    assert analysis.speedup(runs, improved="rollback", value="session_s") == pytest.approx(29.0)
    assert analysis.parallel_gain(runs, "template") == pytest.approx(1 / 0.6)
    assert analysis.speedup(runs, improved="warm-pool") is None


def test_headline_compares_per_test_servers_with_the_best_shared_strategy() -> None:
    runs = runs_frame()
    events = pd.DataFrame(
        [{"run_id": "per-test-server-1", "event": "server_start", "seconds": 1.0}] * 29
        + [{"run_id": "rollback-1", "event": "server_start", "seconds": 1.45}]
    )
    frame = analysis.headline(runs, events).set_index("metric")
    assert frame.loc["Test Suite Runtime", "naive"] == 30.0
    assert frame.loc["Test Suite Runtime", "improved"] == 2.0
    assert frame.loc["Container Startup", "naive"] == pytest.approx(1.0)
    assert frame.loc["Container Startup", "improved"] == pytest.approx(0.05)
    assert frame.loc["Servers Started", "improvement_pct"] == pytest.approx(100 * 28 / 29)
    assert set(frame["improved_label"]) == {"rollback"}


def test_goals_report_the_suite_ratio_against_twenty() -> None:
    goals = analysis.goals(runs_frame())
    by_name = dict(zip(goals["goal"], goals["met"], strict=True))
    assert [met for name, met in by_name.items() if "process wall" in name] == [False]
    assert [met for name, met in by_name.items() if "session time" in name] == [True]


def test_micro_summary_compares_each_case_with_its_raw_baseline() -> None:
    frame = pd.DataFrame(
        [{"case": "raw_create", "i": i, "seconds": 0.030} for i in range(3)]
        + [{"case": "template_cycle", "i": i, "seconds": 0.075} for i in range(3)]
        + [{"case": "pool_handout", "i": i, "seconds": 0.001} for i in range(3)]
    )
    summary = micro.summarise(frame).set_index("case")
    assert summary.loc["template_cycle", "ratio"] == pytest.approx(2.5)
    assert not summary.loc["template_cycle", "met"]
    assert summary.loc["pool_handout", "met"]


def test_lifecycle_config_rejects_bad_parameters_by_name() -> None:
    with pytest.raises(ConfigError, match="per-test-container"):
        LifecycleConfig(strategies=("per-test-container",))
    with pytest.raises(ConfigError, match="parallel"):
        LifecycleConfig(parallel=(0,))
    with pytest.raises(ConfigError, match="backend"):
        LifecycleConfig(backend="external")
    assert LifecycleConfig.from_params({"quick": True, "out_dir": "x"}).iterations == 10


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, (1, 2)),
        ({"quick": True}, (1,)),
        ({"quick": True, "parallel": [1, 2]}, (1, 2)),
        ({"parallel": [2]}, (2,)),
    ],
)
def test_suite_runs_serial_and_with_two_workers_unless_quick(
    params: dict[str, object], expected: tuple[int, ...]
) -> None:
    assert LifecycleConfig.from_params(params).worker_counts == expected


@pytest.mark.bench
def test_bench_micro_goals(capsys: pytest.CaptureFixture[str]) -> None:
    settings = IsolationSettings(backend="local", migrations=(bench.SUITE_DIR / "migrations.sql",))
    summary = micro.summarise(micro.run_all(settings, 60, think_s=0.1))
    with capsys.disabled():
        print("\n" + summary.to_string())
    goals = summary.dropna(subset=["goal"])
    assert goals["met"].all(), goals


@pytest.mark.bench
def test_bench_suite_shared_rollback_vs_per_test_servers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The review's goal is about containers: >= 20x on Docker; local servers start faster."""
    backend = LifecycleConfig(backend="auto").resolved_backend()
    matrix = bench.run_matrix(["per-test-server", "rollback"], [1, 2], backend=backend)
    runs = matrix.frames["runs"]
    wall = analysis.speedup(runs, improved="rollback")
    session = analysis.speedup(runs, improved="rollback", value="session_s")
    with capsys.disabled():
        columns = ["strategy", "workers", "wall_s", "session_s", "peak_total_bytes"]
        print(f"\nbackend {backend}\n{runs[columns].to_string()}")
        print(f"per-test-server / rollback: wall {wall:.1f}x, session {session:.1f}x")
    assert (runs["exit_code"] == 0).all()
    assert session is not None and session >= (20 if backend == "docker" else 10)
