"""notebooks/02_pool_settings.ipynb runs headless under papermill and writes its results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from perfkit import notebooks, pages, results
from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.lab import Results
from perfkit.pool.lab import LAB

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "02_pool_settings.ipynb"

pytestmark = pytest.mark.notebook


@dataclass(frozen=True)
class QuickRun:
    notebook: notebooks.NotebookRun
    saved: results.Run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """One quick run of the notebook (local server), shared by the checks below."""
    tmp = tmp_path_factory.mktemp("pool-quick")
    run = notebooks.execute(
        NOTEBOOK,
        {"quick": True, "backend": "local", "out_dir": str(tmp / "data")},
        output_dir=tmp / "runs",
        html=False,
    )
    return QuickRun(notebook=run, saved=results.latest("pool", out_dir=tmp / "data"))


def test_quick_run_writes_pool_results_with_consistent_counts(quick_run: QuickRun) -> None:
    run, saved = quick_run.notebook, quick_run.saved
    assert run.ok
    runs = saved.frames["runs"]
    assert set(runs["experiment"]) >= {"size", "spike", "timeout", "churn", "recovery", "presets"}
    assert (runs["requests"] == runs["successes"] + runs["errors"]).all()
    assert (runs["leaked"] == 0).all()
    conclusions = saved.frames["conclusions"].iloc[0]
    assert conclusions["peak_pool_size"] in set(runs["max_size"])
    assert conclusions["review_wait_p99_ms"] > 0
    assert set(saved.frames) >= {"requests", "stats", "events", "checkout", "checkout_summary"}
    assert saved.metadata["params"]["quick"] is True
    executed = run.executed.read_text()
    assert "Peak throughput" in executed
    assert "image/png" in executed


def test_quick_run_page_has_no_warnings_and_no_raw_frames(quick_run: QuickRun) -> None:
    assert pages.lab_page_problems(quick_run.notebook.executed) == []


def test_quick_run_has_cpu_columns_in_every_run(quick_run: QuickRun) -> None:
    runs = quick_run.saved.frames["runs"]
    # psutil counts CPU in 10 ms ticks: a mostly waiting 0.4 s run may show 0
    assert (runs["client_cpu_pct"] >= 0).all()
    assert runs["client_bound"].dtype == bool
    size = runs[runs["experiment"] == "size"]
    assert (size["client_cpu_pct"] > 0).all()
    assert (size["server_cpu_pct"] > 0).all()


def test_quick_run_has_pgbench_at_the_size_sweeps_worker_counts(quick_run: QuickRun) -> None:
    pgbench = quick_run.saved.frames["pgbench"]
    workers = set(quick_run.saved.frames["runs"].query("experiment == 'size'")["workers"])
    assert set(pgbench["connections"]) == workers
    assert (pgbench["throughput_rps"] > 0).all()
    compare = quick_run.saved.frames["pgbench_compare"]
    assert set(compare["connections"]) == workers
    assert (compare["ratio_low"] <= compare["ratio"]).all()
    assert (compare["ratio"] <= compare["ratio_high"]).all()


def test_quick_run_has_a_processes_sweep_that_adds_up(quick_run: QuickRun) -> None:
    mp = quick_run.saved.frames["multiproc"]
    assert mp["processes"].tolist() == [1, 2]
    assert (mp["requests"] == mp["successes"] + mp["errors"]).all()
    assert mp["requests_add_up"].all()
    assert (mp["leaked"] == 0).all()
    assert (mp["total_connections"] == mp["processes"] * mp["pool_size"]).all()
    assert not mp["over_max_connections"].any()


def test_quick_run_has_one_long_outage_case(quick_run: QuickRun) -> None:
    outage = quick_run.saved.frames["long_outage"]
    assert len(outage) == 1
    assert set(outage.columns) >= {"mode", "reconnect_timeout_s", "outage_s", "recovered"}


def test_quick_run_has_an_open_loop_stage_beside_pgbench_rate(quick_run: QuickRun) -> None:
    frames = quick_run.saved.frames
    ol = frames["open_loop"]
    assert set(ol["client"]) == {"pool", "pgbench"}
    assert len(set(ol["offered_rps"])) == 3  # quick: three fractions of the closed-loop rate
    assert (ol["completed"] > 0).all()
    assert (ol["latency_p99_ms_low"] <= ol["latency_p99_ms_high"]).all()
    assert set(frames["open_knee"]["client"]) == {"pool", "pgbench"}


def test_quick_run_labels_every_frame_closed_or_open_loop(quick_run: QuickRun) -> None:
    frames = quick_run.saved.frames
    for name in ("runs", "requests", "pgbench", "multiproc"):
        assert set(frames[name]["loop"]) == {"closed"}, name
    for name in ("open_loop", "open_knee"):
        assert set(frames[name]["loop"]) == {"open"}, name
    text = LAB.conclusions(Results.of_run(quick_run.saved))
    assert "**Closed loop**" in text and "**Open loop**" in text
    captions = [caption for caption, _ in LAB.figures(Results.of_run(quick_run.saved))]
    assert any(c.startswith("Open loop") for c in captions)


def test_quick_run_headlines_carry_n_and_intervals_from_the_samples(
    quick_run: QuickRun,
) -> None:
    samples = quick_run.saved.frames["samples"]
    assert list(samples.columns) == ["metric", "variant", "unit", "value", "run"]
    assert set(samples["metric"]) == {"pool_throughput", "pool_wait_p99"}
    heads = LAB.headlines(Results.of_run(quick_run.saved))
    assert (heads["n"] > 0).all()
    assert (heads["ci_low"] <= heads["ci_high"]).all()


def test_bad_sweep_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    out = tmp_path / "data"
    with pytest.raises(ConfigError) as info:
        notebooks.execute(
            NOTEBOOK,
            {"quick": True, "backend": "local", "out_dir": str(out), "worker_counts": [0]},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()  # refused before a kernel started
    assert "workers" in str(info.value)
    assert not out.exists()


def test_missing_pgbench_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(BackendUnavailable, match="pgbench"):
        notebooks.execute(
            NOTEBOOK,
            {"quick": True, "backend": "local", "pgbench_bindir": str(empty)},
            output_dir=tmp_path / "runs",
            html=False,
        )
    assert not (tmp_path / "runs").exists()


def test_unknown_parameter_is_refused_before_a_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_sise"):
        notebooks.execute(NOTEBOOK, {"max_sise": 5}, output_dir=tmp_path, html=False)
