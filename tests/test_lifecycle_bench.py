"""The measured suites, their runner, the analysis of their frames, and the benchmarks (-m bench).

The short suite and a user's own suite run as real pytest subprocesses on real
local PostgreSQL servers, natively (one shared database) and under ``template``.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.lifecycle import analysis, bench, micro, registry, shortbench
from perfkit.lifecycle.lab import LAB_STRATEGIES, Params
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.postgres import cleanup

REPO = Path(__file__).resolve().parent.parent
SMALL = 30  # short-suite size for tests that run it (about 2 s per run)


def collect(suite: Path, *args: str, **env_vars: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PERFKIT_SUITE"))}
    env.update(env_vars)
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


def _ratio(runs: pd.DataFrame, improved: str, value: str = "wall_s") -> float:
    found = analysis.versus_naive(runs, improved, value=value)
    assert found is not None
    return found.ratio


def test_speedup_and_best_shared_strategy() -> None:
    runs = runs_frame()
    assert analysis.best_shared(runs, 1) == "rollback"  # "none" does not isolate
    assert _ratio(runs, "rollback") == pytest.approx(15.0)
    assert _ratio(runs, "rollback", value="session_s") == pytest.approx(29.0)
    assert analysis.parallel_gain(runs, "template") == pytest.approx(1 / 0.6)
    assert analysis.versus_naive(runs, "warm-pool") is None


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


def test_lab_headlines_come_from_per_run_samples_with_their_n() -> None:
    from perfkit.lab import Results
    from perfkit.lifecycle.lab import LAB

    runs = pd.concat([runs_frame()] * 3, ignore_index=True)  # three repetitions
    events = pd.DataFrame([{"run_id": "rollback-1", "event": "server_start", "seconds": 1.45}])
    samples = analysis.samples_frame(runs, events)
    heads = LAB.headlines(Results(frames={"samples": samples})).set_index(["metric", "variant"])
    assert heads.loc[("suite_runtime", "naive"), "value"] == 30.0
    assert heads.loc[("suite_runtime", "improved"), "n"] == 3
    assert heads.loc[("container_startup", "improved"), "value"] == pytest.approx(0.05)
    assert heads.loc[("suite_runtime", "improved"), "label"] == (
        "rollback (workers=1) (interval: the range of 3)"
    )


def test_goals_report_the_suite_ratio_against_twenty() -> None:
    goals = analysis.goals(runs_frame())
    by_name = dict(zip(goals["goal"], goals["met"], strict=True))
    assert [met for name, met in by_name.items() if "process wall" in name and "20x" in name] == [
        False
    ]
    assert [met for name, met in by_name.items() if "session time" in name] == [True]


def test_micro_summary_compares_each_case_with_its_raw_baseline() -> None:
    frame = pd.DataFrame(
        [{"case": "raw_create", "i": i, "seconds": 0.030} for i in range(3)]
        + [{"case": "template_cycle", "i": i, "seconds": 0.075} for i in range(3)]
        + [{"case": "pool_handout", "i": i, "seconds": 0.001} for i in range(3)]
    )
    summary = micro.summarize(frame).set_index("case")
    assert summary.loc["template_cycle", "ratio"] == pytest.approx(2.5)
    assert not summary.loc["template_cycle", "met"]
    assert summary.loc["pool_handout", "met"]


def test_lifecycle_config_rejects_bad_parameters_by_name() -> None:
    with pytest.raises(ConfigError, match="per-test-container"):
        Params(strategies=("per-test-container",))
    with pytest.raises(ConfigError, match="parallel"):
        Params(parallel=(0,))
    with pytest.raises(ConfigError, match="backend"):
        Params(backend="external")
    assert Params.from_mapping({"quick": True, "out_dir": "x"}).iterations == 10


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
    assert Params.from_mapping(params).worker_counts == expected


@pytest.mark.bench
def test_bench_micro_goals(capsys: pytest.CaptureFixture[str]) -> None:
    settings = IsolationSettings(backend="local", migrations=(bench.SUITE_DIR / "migrations.sql",))
    summary = micro.summarize(micro.run_all(settings, 60, think_s=0.1))
    with capsys.disabled():
        print("\n" + summary.to_string())
    goals = summary.dropna(subset=["goal"])
    assert goals["met"].all(), goals


@pytest.mark.bench
def test_bench_suite_shared_rollback_vs_per_test_servers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The review's goal is about containers: >= 20x on Docker; local servers start faster."""
    backend = Params(backend="auto").resolved_backend()
    matrix = bench.run_matrix(["per-test-server", "rollback"], [1, 2], backend=backend)
    runs = matrix.frames["runs"]
    wall = _ratio(runs, "rollback")
    session = _ratio(runs, "rollback", value="session_s")
    with capsys.disabled():
        columns = ["strategy", "workers", "wall_s", "session_s", "peak_total_bytes"]
        print(f"\nbackend {backend}\n{runs[columns].to_string()}")
        print(f"per-test-server / rollback: wall {wall:.1f}x, session {session:.1f}x")
    assert (runs["exit_code"] == 0).all()
    assert session is not None and session >= (20 if backend == "docker" else 10)


# -- the short suite ------------------------------------------------------------------------


def test_short_suite_has_about_250_tests_over_psycopg_and_psycopg2(tmp_path: Path) -> None:
    suite = bench.prepare_suite(tmp_path / "short", bench.SHORT_SUITE_DIR)
    tests = collect(suite)
    assert len(tests) == bench.SHORT_FULL_TESTS == 250
    drivers = pd.Series([t.split("[", 1)[1].split("-", 1)[0] for t in tests]).value_counts()
    assert drivers.to_dict() == {"psycopg": 125, "psycopg2": 125}
    assert {bench._kind(t) for t in tests} == {"temp_table", "shared_tables"}


def test_short_suite_size_follows_its_test_count_variable(tmp_path: Path) -> None:
    suite = bench.prepare_suite(tmp_path / "short", bench.SHORT_SUITE_DIR)
    tests = collect(suite, PERFKIT_SUITE_TESTS=str(bench.SHORT_QUICK_TESTS))
    assert 14 <= len(tests) <= bench.SHORT_QUICK_TESTS  # every function on both drivers


LIVE_BEFORE_SHORT_RUNS: list[object] = []


@pytest.fixture(scope="module")
def short_runs() -> dict[str, bench.SuiteResult]:
    """The short suite at SMALL size, natively and under template, on local servers."""
    LIVE_BEFORE_SHORT_RUNS[:] = cleanup.live_servers()  # e.g. other tests' session servers
    return {
        strategy: bench.run_suite(
            bench.SuiteSettings(strategy=strategy, suite="short", backend="local", test_count=SMALL)
        )
        for strategy in ("native", "template")
    }


def test_short_suite_passes_natively_on_one_shared_database(
    short_runs: dict[str, bench.SuiteResult],
) -> None:
    result = short_runs["native"]
    run = result.run
    assert run["exit_code"] == 0, result.output
    assert run["tests"] >= 20 and run["tests_failed"] == 0
    assert run["servers_started"] == 1 and run["server_start_s"] > 0  # started by the bench
    assert run["databases_created"] == 0  # the plugin made none: the suite made its own
    assert run["peak_server_bytes"] > 0
    assert len(result.tests) == run["tests"]  # rows from the plugin's phase records
    assert {t["isolation"] for t in result.tests} == {"native"}
    assert all(math.isnan(t["acquire_s"]) for t in result.tests)  # no lease, no isolation cost


def test_short_suite_passes_under_template_with_a_database_per_test(
    short_runs: dict[str, bench.SuiteResult],
) -> None:
    result = short_runs["template"]
    run = result.run
    assert run["exit_code"] == 0, result.output
    assert run["tests"] == short_runs["native"].run["tests"] and run["tests_failed"] == 0
    assert run["databases_created"] >= run["tests"]
    assert {t["isolation"] for t in result.tests} == {"template"}
    assert len(result.tests) == run["tests"]


def test_suite_runs_leave_no_server_running(short_runs: dict[str, bench.SuiteResult]) -> None:
    started = [s for s in cleanup.live_servers() if s not in LIVE_BEFORE_SHORT_RUNS]
    assert short_runs and not started


# -- a user's own suite -----------------------------------------------------------------------

USER_CONFTEST = """
import os

import psycopg
import pytest


@pytest.fixture
def database_url(request):
    return os.environ.get("DATABASE_URL") or request.getfixturevalue("perfkit_dsn")


@pytest.fixture
def db(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn
"""
USER_TESTS = """
import os


def test_database_answers(db):
    assert db.execute("SELECT 1").fetchone() == (1,)


def test_temp_table_round_trip(db):
    db.execute("CREATE TEMP TABLE notes (body text)")
    db.execute("INSERT INTO notes VALUES ('a'), ('b')")
    assert db.execute("SELECT count(*) FROM notes").fetchone() == (2,)


def test_database_comes_from_where_the_run_says(database_url):
    expected = os.environ["EXPECT_SOURCE"]
    assert ("DATABASE_URL" in os.environ) == (expected == "env")
    assert database_url.startswith("postgresql://")
"""


@pytest.fixture
def user_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "my_suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(textwrap.dedent(USER_CONFTEST))
    (suite / "test_notes.py").write_text(textwrap.dedent(USER_TESTS))
    return suite


def test_user_suite_gets_the_native_server_through_its_dsn_env(
    user_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPECT_SOURCE", "env")
    result = bench.run_suite(
        bench.SuiteSettings(
            strategy="native", suite=user_suite, backend="local", dsn_env="DATABASE_URL"
        )
    )
    assert result.run["exit_code"] == 0, result.output
    assert result.run["tests"] == 3 and result.run["servers_started"] == 1
    assert result.run["suite"] == str(user_suite.resolve())


def test_user_suite_under_template_gets_perfkit_databases_not_the_callers_url(
    user_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPECT_SOURCE", "perfkit")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/not_this_one")
    result = bench.run_suite(
        bench.SuiteSettings(
            strategy="template", suite=user_suite, backend="local", dsn_env="DATABASE_URL"
        )
    )
    assert result.run["exit_code"] == 0, result.output
    assert result.run["tests"] == 3
    assert {t["isolation"] for t in result.tests} == {"template"}


def test_user_suite_runs_with_its_own_config_and_extra_pytest_args(user_suite: Path) -> None:
    settings = bench.SuiteSettings(
        strategy="template", suite=user_suite, pytest_args=["-k", "answers"]
    )
    cmd = bench.pytest_command(settings, user_suite, user_suite / "t.json")
    assert "-c" not in cmd and "--rootdir" not in cmd
    assert cmd[-2:] == ["-k", "answers"]
    assert "--perfkit-isolation=template" in cmd


def test_a_suite_past_its_timeout_is_interrupted_and_cleans_up(tmp_path: Path) -> None:
    suite = tmp_path / "slow_suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_slow.py").write_text(
        "import time\n\n\ndef test_sleeps(perfkit_dsn):\n    time.sleep(120)\n"
    )
    result = bench.run_suite(
        bench.SuiteSettings(strategy="template", suite=suite, backend="local", timeout=5)
    )
    assert result.run["timed_out"] and result.run["exit_code"] != 0
    assert result.run["wall_s"] < 60  # SIGINT was enough: pytest tore down at once
    assert "KeyboardInterrupt" in result.output  # (the session's leak check sees no server)


# -- settings are checked before anything starts -------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"suite": "/no/such/suite"}, "does not exist"),
        ({"suite": 42}, "suite must be"),
        ({"suite": "short", "pytest_args": "-k fast"}, "pytest_args must be a list"),
        ({"suite": "short", "pytest_args": ["-x", 1]}, "pytest_args must all be strings"),
        ({"suite": "short", "test_count": 0}, "test_count must be >= 1"),
        ({"suite": "short", "test_count": True}, "test_count must be an integer"),
        ({"suite": "short", "workers": "2"}, "workers must be an integer"),
        ({"suite": "short", "strategy": "rollback"}, "rollback"),
        ({"suite": "short", "dsn_env": "DATABASE_URL"}, "dsn_env applies to your own suite"),
        ({"suite": "lab", "strategy": "native"}, "lab suite has no native mode"),
        ({"suite": "lab", "test_count": 10}, "test_count sizes the short suite"),
        ({"strategy": "shared"}, "unknown isolation strategy"),
    ],
)
def test_bad_suite_settings_are_config_errors(overrides: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"strategy": "template", **overrides}
    with pytest.raises(ConfigError, match=message):
        bench.SuiteSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategy": "native"}, "needs dsn_env"),
        ({"dsn_env": "DATABASE-URL"}, "environment variable name"),
        ({"dsn_env": 5}, "environment variable name"),
        ({"quick": True}, "-k or -m in pytest_args"),
    ],
)
def test_bad_user_suite_settings_are_config_errors(
    user_suite: Path, overrides: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"strategy": "template", "suite": user_suite, **overrides}
    with pytest.raises(ConfigError, match=message):
        bench.SuiteSettings(**values)  # type: ignore[arg-type]


def test_a_suite_path_that_is_a_file_is_a_config_error(user_suite: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        bench.SuiteSettings(strategy="template", suite=user_suite / "conftest.py")


def test_a_bad_run_in_a_matrix_stops_it_before_the_first_run(tmp_path: Path) -> None:
    started: list[str] = []
    live_before = cleanup.live_servers()
    with pytest.raises(ConfigError, match="does not exist"):
        bench.run_matrix(
            ["template", "native"],
            [1],
            suite=tmp_path / "missing",
            progress=lambda s, r: started.append(s.strategy),
        )
    with pytest.raises(ConfigError, match="lab suite has no native mode"):
        bench.run_matrix(["template", "native"], [1], progress=lambda s, r: started.append("x"))
    assert started == [] and cleanup.live_servers() == live_before


def test_native_is_a_baseline_of_the_bench_not_a_plugin_strategy() -> None:
    assert bench.BASELINES == ("native",)
    assert "native" not in registry.NAMES
    assert bench.check_strategy("native") == "native"
    with pytest.raises(ConfigError):
        registry.check_name("native")


def test_native_command_has_no_isolation_options(tmp_path: Path) -> None:
    cmd = bench.pytest_command(
        bench.SuiteSettings(strategy="native", suite="short"), tmp_path, tmp_path / "t.json"
    )
    assert not [a for a in cmd if a.startswith(("--perfkit-isolation", "--perfkit-backend"))]
    assert f"--perfkit-timings={tmp_path / 't.json'}" in cmd


def test_suite_environment_scrubs_dsns_the_run_did_not_choose() -> None:
    caller = {"DATABASE_URL": "postgresql://x@h/db", "PERFKIT_DSN": "postgresql://y@h/db"}
    native = bench.SuiteSettings(strategy="native", suite="short")
    env = bench.suite_environment(native, {**caller, "PERFKIT_SUITE_DSN": "old"})
    assert env["PERFKIT_SUITE_MODE"] == "native" and env["PERFKIT_SUITE_TESTS"] == "250"
    assert "PERFKIT_DSN" not in env and "PERFKIT_SUITE_DSN" not in env  # run_suite sets it
    quick = bench.SuiteSettings(strategy="template", suite="short", quick=True)
    env = bench.suite_environment(quick, caller)
    assert env["PERFKIT_SUITE_MODE"] == "perfkit" and env["PERFKIT_SUITE_TESTS"] == "24"


# -- variants: a strategy with plugin options, under its own name -----------------------------


def test_a_variant_runs_its_strategy_with_its_plugin_options(tmp_path: Path) -> None:
    settings = bench.SuiteSettings(strategy="verified+stable-dsn", suite="short")
    command = bench.pytest_command(settings, tmp_path, tmp_path / "t.json")
    assert "--perfkit-isolation=verified" in command and "--perfkit-stable-dsn" in command
    assert not [a for a in command if a.startswith("--perfkit-isolation=verified+")]


def test_a_variants_rows_carry_the_variant_name_not_its_strategys() -> None:
    settings = bench.SuiteSettings(strategy="verified+stable-dsn", suite="short")
    rows = [{"isolation": "verified", "test": "t"}, {"event": "pool_reuse", "strategy": "verified"}]
    bench.relabel(settings, rows)
    assert rows[0]["isolation"] == rows[1]["strategy"] == "verified+stable-dsn"
    plain = [{"isolation": "verified"}]
    bench.relabel(bench.SuiteSettings(strategy="verified", suite="short"), plain)
    assert plain == [{"isolation": "verified"}]


def test_a_variant_is_held_to_the_fresh_database_goal_and_can_be_the_best_shared() -> None:
    runs = native_runs()
    stable = runs[runs["strategy"] == "warm-pool"].assign(strategy="verified+stable-dsn")
    runs = pd.concat([runs, stable.assign(wall_s=stable["wall_s"] * 0.9)], ignore_index=True)
    goals = analysis.goals(runs)
    assert goals["goal"].str.contains(r"\(verified\+stable-dsn\) within 1.25x").any()
    assert analysis.best_shared(runs.assign(tests=1), 1) == "verified+stable-dsn"


def test_conclusions_show_a_variant_apart_and_say_why_the_micro_benchmarks_skip_it() -> None:
    from perfkit.lifecycle.conclusions import conclusions

    runs = native_runs()
    stable = runs[runs["strategy"] == "warm-pool"].assign(strategy="verified+stable-dsn")
    runs = pd.concat([runs, stable], ignore_index=True).assign(
        tests=24, backend="local", session_s=runs["wall_s"] / 2
    )
    tests = pd.DataFrame(
        {"isolation": ["verified+stable-dsn", "template"], "acquire_s": [0.001, 0.01]}
    )
    micro_summary = pd.DataFrame({"case": ["template_cycle"], "median_s": [0.02]})
    text = conclusions(
        {
            "runs": runs,
            "tests": tests,
            "micro_summary": micro_summary,
            "versus_native": analysis.versus_native(runs),
        }
    )
    assert "- verified+stable-dsn / native (one shared database), workers=1: 1.10x" in text
    assert "- verified+stable-dsn: not in the micro-benchmarks" in text
    assert "verified+stable-dsn 1.00 ms" in text


# -- the comparison with native ---------------------------------------------------------------


def native_runs() -> pd.DataFrame:
    rows = []
    for repetition, drift in enumerate([1.0, 1.1, 0.9]):
        for strategy, wall in [("native", 10.0), ("template", 14.0), ("warm-pool", 11.0)]:
            rows.append(
                {
                    "strategy": strategy,
                    "workers": 1,
                    "repetition": repetition,
                    "wall_s": wall * drift,
                    "exit_code": 0,
                    "suite": "short",
                }
            )
    return pd.DataFrame(rows)


def test_ratio_to_native_is_a_ratio_of_medians_with_a_seeded_interval() -> None:
    table = analysis.versus_native(native_runs(), seed=3).set_index("strategy")
    assert table.loc["template", "ratio"] == pytest.approx(1.4)
    assert table.loc["warm-pool", "ratio"] == pytest.approx(1.1)
    assert table.loc["native", "ratio"] == 1.0 and math.isnan(table.loc["native", "ratio_low"])
    # paired by repetition, the drift cancels: every resample gives the same ratio
    assert table.loc["template", "paired"]
    assert table.loc["template", "ratio_low"] == pytest.approx(1.4)
    assert table.loc["template", "ratio_high"] == pytest.approx(1.4)
    again = analysis.versus_native(native_runs(), seed=3)
    assert again.equals(analysis.versus_native(native_runs(), seed=3))


def test_unpaired_interval_covers_the_point_estimate() -> None:
    point, low, high = analysis.ratio_interval([12, 14, 15, 13], [10, 11, 9], seed=1)
    assert low <= point <= high and low < high
    assert (point, low, high) == analysis.ratio_interval([12, 14, 15, 13], [10, 11, 9], seed=1)


def test_goals_hold_fresh_databases_to_1_25x_of_native() -> None:
    goals = analysis.goals(native_runs())
    fresh = goals[goals["goal"].str.contains("within 1.25x of native")]
    strategy = fresh["goal"].str.extract(r"\((template|warm-pool)\)")[0]
    assert dict(zip(strategy, fresh["met"], strict=True)) == {"template": False, "warm-pool": True}
    assert not goals["goal"].str.contains("20x|30x").any()  # the lab's goals need the lab suite


# -- per-test servers over the best shared strategy (the lab suite's 30x) --------------------


def lab_runs(walls: dict[str, float], drifts: tuple[float, ...] = (1.0, 1.1, 0.9)) -> pd.DataFrame:
    """Lab-suite runs, one per strategy and repetition; each repetition's drift scales all."""
    return pd.DataFrame(
        {
            "run_id": f"{strategy}-{repetition}",
            "strategy": strategy,
            "workers": 1,
            "repetition": repetition,
            "wall_s": wall * drift,
            "session_s": wall * drift / 2,
            "exit_code": 0,
            "suite": "lab",
            "tests": 29,
            "backend": "docker",
        }
        for repetition, drift in enumerate(drifts)
        for strategy, wall in walls.items()
    )


REUSE_WALLS = {
    "per-test-server": 32.0,
    "rollback": 2.0,
    "verified": 1.2,
    "verified+stable-dsn": 1.0,
}


def test_versus_naive_is_a_ratio_of_medians_with_each_sides_n() -> None:
    found = analysis.versus_naive(lab_runs(REUSE_WALLS), "verified")
    assert found is not None
    assert found.ratio == pytest.approx(32.0 / 1.2)
    assert (found.n_naive, found.n_improved, found.paired) == (3, 3, True)


def test_versus_naive_interval_is_seeded_and_covers_the_ratio_when_unpaired() -> None:
    runs = lab_runs(REUSE_WALLS).drop(columns="repetition")
    found = analysis.versus_naive(runs, "rollback", seed=2)
    assert found is not None and not found.paired
    assert found.low <= found.ratio <= found.high and found.low < found.high
    assert found == analysis.versus_naive(runs, "rollback", seed=2)


def test_versus_naive_is_none_without_per_test_server_runs() -> None:
    runs = lab_runs({"rollback": 2.0, "verified": 1.2})
    assert analysis.versus_naive(runs, "verified") is None


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(30.0, 35.0, "met"), (20.0, 29.9, "not met"), (25.0, 31.0, "undecided")],
)
def test_a_ratio_meets_a_goal_only_when_its_whole_interval_clears_it(
    low: float, high: float, verdict: str
) -> None:
    found = analysis.NaiveRatio("verified", (low + high) / 2, low, high, 5, 5, paired=True)
    assert found.verdict(analysis.SUITE_REUSE_GOAL) == verdict


def test_goals_hold_the_best_shared_strategy_reuse_included_to_30x() -> None:
    goals = analysis.goals(lab_runs(REUSE_WALLS)).set_index("goal")
    row = goals.loc[
        "suite (process wall time): per-test server / best shared (verified+stable-dsn) >= 30x"
    ]
    assert row["value"] == pytest.approx(32.0) and row["n"] == 3 and row["met"]
    assert row["ci_low"] == pytest.approx(32.0) and row["ci_high"] == pytest.approx(32.0)


def test_goals_say_30x_is_not_met_when_the_best_shared_is_slower() -> None:
    goals = analysis.goals(lab_runs({**REUSE_WALLS, "verified+stable-dsn": 1.5, "verified": 1.6}))
    row = goals[goals["goal"].str.contains("30x")].iloc[0]
    assert "(verified+stable-dsn)" in row["goal"]
    assert row["value"] == pytest.approx(32.0 / 1.5) and not row["met"]


def test_goals_give_the_20x_rollback_ratio_its_interval_and_n() -> None:
    goals = analysis.goals(lab_runs(REUSE_WALLS).drop(columns="repetition"))
    row = goals[goals["goal"].str.contains("process wall time.*20x")].iloc[0]
    assert row["n"] == 3 and row["ci_low"] <= row["value"] <= row["ci_high"]


def test_goals_are_read_at_the_fewest_workers_that_ran() -> None:
    goals = analysis.goals(lab_runs(REUSE_WALLS).assign(workers=2))
    row = goals[goals["goal"].str.contains("30x")].iloc[0]
    assert "workers=2" in row["goal"] and row["value"] == pytest.approx(32.0)


def test_conclusions_give_per_test_server_over_the_best_shared_with_interval_n_and_goal() -> None:
    from perfkit.lifecycle.conclusions import conclusions

    text = conclusions({"runs": lab_runs(REUSE_WALLS), "tests": pd.DataFrame()})
    assert (
        "- process wall time: per-test server / shared+verified+stable-dsn (the best shared of "
        "rollback, verified, verified+stable-dsn) = 32.0x, 95% interval 32.0-32.0 (n=3 and 3 "
        "runs); goal >= 30x: met"
    ) in text
    assert (
        "- process wall time: per-test server / shared+rollback = 16.0x, 95% interval "
        "16.0-16.0 (n=3 and 3 runs); goal >= 20x: not met"
    ) in text


def test_conclusions_name_no_lab_goal_for_another_suite() -> None:
    from perfkit.lifecycle.conclusions import conclusions

    runs = lab_runs(REUSE_WALLS).assign(suite="/my/suite")
    text = conclusions({"runs": runs, "tests": pd.DataFrame()})
    assert "per-test server / shared+rollback = 16.0x" in text and "goal >=" not in text


def test_lab_suite_measures_both_reusing_strategies_by_default() -> None:
    assert {"verified", "verified+stable-dsn"} <= set(Params(suite="lab").strategies)


# -- the notebook's parameters ------------------------------------------------------------


def test_lifecycle_config_picks_strategies_by_suite(user_suite: Path) -> None:
    assert Params().strategies == LAB_STRATEGIES
    assert Params(suite="short").strategies == (
        "native",
        "template",
        "warm-pool",
        "verified",
        "verified+stable-dsn",
    )
    assert Params(suite=str(user_suite)).strategies == (
        "template",
        "warm-pool",
        "verified",
        "verified+stable-dsn",
    )
    with_env = Params(suite=str(user_suite), dsn_env="DATABASE_URL")
    assert with_env.strategies[0] == "native"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategies": ["native"]}, "lab suite has no native mode"),
        ({"suite": "short", "strategies": ["rollback"]}, "rollback"),
        ({"suite": "/no/such/suite"}, "does not exist"),
        ({"suite": "short", "pytest_args": ["-x", 3]}, "pytest_args"),
        (
            {"suite": "short", "strategies": ["template+stable-dsn"]},
            r"strategies: unknown variant 'template\+stable-dsn': \+stable-dsn works only "
            r"with verified\+stable-dsn",
        ),
        ({"suite": "short", "strategies": ["verified+nonesuch"]}, "strategies: unknown variant"),
    ],
)
def test_lifecycle_config_rejects_bad_suite_parameters(
    params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Params.from_mapping(params)


# -- the short benchmark ------------------------------------------------------------------


def test_shortbench_alternates_native_first_and_last() -> None:
    plan = shortbench.make_plan(shortbench.parse_args(["--strategies", "template,warm-pool"]))
    assert plan.order(0) == ["native", "template", "warm-pool"]
    assert plan.order(1) == ["warm-pool", "template", "native"]
    assert plan.repeat == 3 and {s.suite for s in plan.settings.values()} == {"short"}


def test_shortbench_runs_a_stable_dsn_variant_of_verified_with_its_option() -> None:
    args = shortbench.parse_args(["--strategies", "verified,verified+stable-dsn"])
    plan = shortbench.make_plan(args)
    stable = plan.settings["verified+stable-dsn"]
    assert stable.strategy == "verified+stable-dsn" and stable.isolation == "verified"
    command = bench.pytest_command(stable, Path("suite"), Path("t.json"))
    assert "--perfkit-isolation=verified" in command and "--perfkit-stable-dsn" in command
    plain = bench.pytest_command(plan.settings["verified"], Path("suite"), Path("t.json"))
    assert "--perfkit-stable-dsn" not in plain


@pytest.mark.parametrize(
    "argv",
    [
        ["--strategies", "rollback"],
        ["--strategies", "shared"],
        ["--repeat", "0"],
        ["--strategies", "nonesuch+stable-dsn"],
        ["--strategies", "template+stable-dsn"],
    ],
)
def test_shortbench_refuses_bad_input_before_starting_a_server(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    live_before = cleanup.live_servers()
    assert shortbench.main(argv) == 2
    assert "shortbench:" in capsys.readouterr().err
    assert cleanup.live_servers() == live_before


SHORTBENCH_SMALL = ("--tests", "16", "--repeat", "1", "--strategies", "template")


def test_shortbench_prints_ratio_interval_and_plugin_timings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out = subprocess.run(
        [sys.executable, "-m", "perfkit.lifecycle.shortbench", *SHORTBENCH_SMALL],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    template = next(line for line in lines if line.startswith("template "))
    assert template.split()[1] == "1"  # n
    assert "[" in template and "/" in template  # interval, acquire p50/p99
    assert any(line.startswith("goal: fresh database per test within 1.25x") for line in lines)


@pytest.mark.bench
def test_bench_shortbench_fresh_database_per_test_vs_native(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The goal: a fresh database per test within 1.25x of the suite on one shared database."""
    plan = shortbench.make_plan(shortbench.parse_args([]))
    frames = shortbench.run(plan)
    table = shortbench.summary(frames)
    with capsys.disabled():
        print("\n" + shortbench.format_summary(table, int(frames["runs"]["tests"].median())))
    assert (frames["runs"]["exit_code"] == 0).all()


# -- packaging ------------------------------------------------------------------------------


def test_both_suites_ship_their_non_python_files() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data = data["package-data"]
    for package, directory in [
        ("perfkit.lifecycle.suite", bench.SUITE_DIR),
        ("perfkit.lifecycle.short_suite", bench.SHORT_SUITE_DIR),
    ]:
        globs = package_data[package]
        files = {p.name for p in directory.iterdir() if p.suffix in (".ini", ".sql")}
        shipped = {name for g in globs for name in (p.name for p in directory.glob(g))}
        assert files and files <= shipped, package
