"""notebooks/03_container_lifecycle.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import notebooks, pages, results
from perfkit.errors import ConfigError

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "03_container_lifecycle.ipynb"
QUICK = {
    "quick": True,
    "backend": "local",
    "strategies": ["per-test-server", "rollback"],  # the leak check still covers all of them
    "parallel": [1, 2],
}

pytestmark = pytest.mark.notebook


def test_quick_run_measures_every_strategy_and_saves_the_frames(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK, {**QUICK, "out_dir": str(out)}, output_dir=tmp_path / "runs", html=False
    )
    assert run.ok
    saved = results.latest("lifecycle", out_dir=out)
    assert set(saved.frames) >= {
        "runs",
        "tests",
        "events",
        "memory",
        "micro",
        "micro_summary",
        "leaks",
        "headline",
        "goals",
    }
    runs = saved.frames["runs"]
    assert set(zip(runs["strategy"], runs["workers"], strict=True)) == {
        (s, w) for s in QUICK["strategies"] for w in QUICK["parallel"]
    }
    assert (runs["exit_code"] == 0).all() and (runs["tests"] == 6).all()
    per_test = runs[runs["strategy"] == "per-test-server"]
    assert (per_test["servers_started"] == 6).all()
    shared = runs[runs["strategy"] != "per-test-server"]
    assert (shared["servers_started"] == shared["workers"]).all()
    assert saved.frames["leaks"]["isolated"].all()
    headline = saved.frames["headline"].set_index("metric")
    assert set(headline.index) >= {"Test Suite Runtime", "Container Startup", "Memory Usage"}
    assert headline.loc["Servers Started", "naive"] == 6
    executed = run.executed.read_text()
    assert "per-test server / shared+rollback" in executed
    assert executed.count("image/png") >= 4
    assert saved.metadata["params"]["quick"] is True
    assert pages.lab_page_problems(run.executed) == []  # no IsolationWarning, no raw frames


def test_quick_short_suite_run_compares_template_and_the_stable_dsn_with_native(
    tmp_path: Path,
) -> None:
    out = tmp_path / "data"
    params = {
        "quick": True,
        "backend": "local",
        "suite": "short",
        "strategies": ["native", "template", "verified+stable-dsn"],
        "out_dir": str(out),
    }
    run = notebooks.execute(NOTEBOOK, params, output_dir=tmp_path / "runs", html=False)
    assert run.ok
    saved = results.latest("lifecycle", out_dir=out)
    runs = saved.frames["runs"]
    assert sorted(runs["strategy"]) == ["native", "template", "verified+stable-dsn"]
    assert (runs["exit_code"] == 0).all() and (runs["suite"] == "short").all()
    assert runs["tests"].nunique() == 1 and runs["tests"].iloc[0] >= 14
    versus = saved.frames["versus_native"].set_index("strategy")
    for name in ("template", "verified+stable-dsn"):
        assert versus.loc[name, "ratio"] > 0
        assert versus.loc[name, "ratio_low"] <= versus.loc[name, "ratio_high"]
    tests = saved.frames["tests"]
    assert "verified+stable-dsn" in set(tests["isolation"])  # its own rows, not verified's
    assert "verified" not in set(tests["isolation"])
    leaks = saved.frames["leaks"].set_index("strategy")
    assert leaks.loc["verified+stable-dsn", "isolated"]
    executed = run.executed.read_text()
    assert "template / native (one shared database)" in executed
    assert "verified+stable-dsn / native (one shared database)" in executed
    assert "verified+stable-dsn: not in the micro-benchmarks" in executed
    assert pages.lab_page_problems(run.executed) == []
    assert saved.metadata["params"]["suite"] == "short"


def test_an_unknown_variant_is_refused_naming_the_parameter_before_a_kernel_starts(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"strategies: unknown variant 'template\+stable-dsn'"):
        notebooks.execute(
            NOTEBOOK,
            {**QUICK, "strategies": ["template+stable-dsn"], "out_dir": str(tmp_path / "data")},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started


def test_unknown_strategy_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(ConfigError) as info:
        notebooks.execute(
            NOTEBOOK,
            {**QUICK, "strategies": ["per-test-container"], "out_dir": str(out)},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert "per-test-container" in str(info.value)
    assert not out.exists()


def test_native_for_the_lab_suite_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        notebooks.execute(
            NOTEBOOK,
            {**QUICK, "strategies": ["native"], "out_dir": str(tmp_path / "data")},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert "no native mode" in str(info.value)


def test_unknown_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strategys"):
        notebooks.execute(NOTEBOOK, {"strategys": ["rollback"]}, output_dir=tmp_path, html=False)


def test_the_micro_stage_alone_measures_no_suite_and_every_cell_copes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    run = notebooks.execute(
        NOTEBOOK,
        {**QUICK, "out_dir": str(out), "stages": ["micro"]},
        output_dir=tmp_path / "runs",
        html=False,
    )
    assert run.ok
    saved = results.latest("lifecycle", out_dir=out)
    assert set(saved.frames) == {"micro", "micro_summary"}
    text = run.executed.read_text()
    assert "suites: not measured in this run" in text and "leaks: not measured" in text
    assert "Not measured in this run: leaks, suites." in text
