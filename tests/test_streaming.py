"""Streaming vs loading all rows: every method reads the same rows; streaming memory stays flat."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import Results
from perfkit.postgres import PostgresServer
from perfkit.streaming import analysis, child, measure
from perfkit.streaming.settings import METHODS, StreamSettings


def test_bad_settings_fail_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"StreamSettings\.rows"):
        StreamSettings(rows=0)
    with pytest.raises(ConfigError, match=r"StreamSettings\.batch_size"):
        StreamSettings(batch_size=-5)
    with pytest.raises(ConfigError, match=r"StreamSettings\.sample_interval"):
        StreamSettings(sample_interval=0)


def test_unknown_method_is_rejected_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="'slurp'"):
        measure.run_streaming("postgresql://nowhere", StreamSettings(), methods=["slurp"])


def test_the_child_process_imports_only_what_it_measures() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", measure.CHILD_MODULE, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "psycopg" in imported and "psutil" in imported
    heavy = {m for m in imported if m.split(".")[0] in {"pandas", "matplotlib", "numpy"}}
    assert not heavy
    assert {m for m in imported if m.startswith("perfkit")} <= {
        "perfkit",
        "perfkit._exports",
        "perfkit.errors",
        "perfkit.streaming",
        "perfkit.streaming.settings",
    }


def test_lab_is_importable_from_the_package() -> None:
    from perfkit import streaming
    from perfkit.streaming.lab import LAB

    assert streaming.LAB is LAB
    assert streaming.__all__ == ["LAB"]


def test_conclusions_read_the_findings_of_a_saved_run() -> None:
    from perfkit.streaming.lab import LAB

    summary = pd.DataFrame(
        {
            "method": ["fetchall", "stream"],
            "py_peak_bytes": [100.0 * 2**20, 2**20],
            "rss_growth_bytes": [200.0 * 2**20, 2.0 * 2**20],
            "wall_s": [1.0, 1.5],
            "py_peak_x_lower": [1.0, 100.0],
            "rss_growth_x_lower": [1.0, 100.0],
        }
    )
    found = analysis.findings(summary, 50_000) | {"batch_size": 5000}
    saved = Results(frames={"summary": summary, "conclusions": pd.DataFrame([found])})
    text = LAB.conclusions(saved)
    assert text.startswith("50,000 rows, batches of 5000:")
    assert "100x lower Python peak" in text and "goal (>= 10x) met: True" in text


def test_expected_checksum_matches_consume_on_fake_rows() -> None:
    rows = [(i, "x" * 32, 0.0) for i in range(1, 101)]
    assert child.consume(rows) == (100, child.expected_checksum(100))


@pytest.mark.parametrize("method", METHODS)
def test_every_method_reads_every_row(pg_server: PostgresServer, method: str) -> None:
    settings = StreamSettings(rows=3000, batch_size=700)
    rec = child.measure_here(pg_server.dsn, method, settings, traced=True)
    assert rec["rows_read"] == 3000
    assert rec["checksum"] == child.expected_checksum(3000)
    assert rec["py_peak_bytes"] > 0
    assert rec["rss_peak_bytes"] >= rec["rss_baseline_bytes"]


def test_streaming_peak_memory_is_far_below_fetchall(pg_server: PostgresServer) -> None:
    settings = StreamSettings(rows=100_000, batch_size=1000)
    frames = measure.run_streaming(
        pg_server.dsn, settings, methods=("fetchall", "server_cursor", "stream"), traced=(True,)
    )
    peak = frames["runs"].set_index("method")["py_peak_bytes"]
    assert peak["fetchall"] / peak["server_cursor"] >= 10
    assert peak["fetchall"] / peak["stream"] >= 10
    memory = frames["memory"]
    assert {"child", "parent"} <= set(memory["source"])
    assert (memory["t_s"] >= 0).all()


def test_streaming_memory_stays_flat_as_rows_grow(pg_server: PostgresServer) -> None:
    def peak(method: str, rows: int) -> float:
        settings = StreamSettings(rows=rows, batch_size=1000)
        return float(
            child.measure_here(pg_server.dsn, method, settings, traced=True)["py_peak_bytes"]
        )

    assert peak("fetchall", 60_000) / peak("fetchall", 12_000) > 3
    assert peak("server_cursor", 60_000) / peak("server_cursor", 12_000) < 1.5


def test_frames_have_documented_columns(pg_server: PostgresServer) -> None:
    frames = measure.run_streaming(
        pg_server.dsn, StreamSettings(rows=2000, batch_size=500), methods=("stream",)
    )
    assert tuple(frames["runs"].columns) == measure.RUN_COLUMNS
    assert tuple(frames["memory"].columns) == measure.MEMORY_COLUMNS
    assert frames["runs"]["traced"].tolist() == [True, False]
    summary = analysis.compare(frames["runs"], baseline="stream")
    assert summary.loc[0, "py_peak_x_lower"] == pytest.approx(1.0)


def test_child_failure_is_reported_without_the_password(pg_server: PostgresServer) -> None:
    bad = pg_server.dsn.replace(f":{pg_server.settings.password}@", ":Wr0ngSecret99@")
    with pytest.raises(PerfkitError) as info:
        measure.measure_in_subprocess(bad, "stream", StreamSettings(rows=10), traced=False)
    assert "Wr0ngSecret99" not in str(info.value)
    assert pg_server.settings.password not in str(info.value)


@pytest.mark.bench
def test_bench_streaming_1m_rows_is_10x_below_fetchall(pg_server: PostgresServer) -> None:
    frames = measure.run_streaming(
        pg_server.dsn,
        StreamSettings(rows=1_000_000),
        methods=("fetchall", "server_cursor", "stream"),
    )
    summary = analysis.compare(frames["runs"])
    print(summary.to_string())
    c = analysis.findings(summary, 1_000_000)
    assert c["goal_10x_met"]
