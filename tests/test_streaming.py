"""Streaming vs loading all rows: every method reads the same rows; streaming memory stays flat."""

from __future__ import annotations

import pytest

from perfkit import streaming as st
from perfkit.errors import ConfigError, PerfkitError
from perfkit.postgres import PostgresServer


def test_bad_settings_fail_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"StreamSettings\.rows"):
        st.StreamSettings(rows=0)
    with pytest.raises(ConfigError, match=r"StreamSettings\.batch_size"):
        st.StreamSettings(batch_size=-5)
    with pytest.raises(ConfigError, match=r"StreamSettings\.sample_interval"):
        st.StreamSettings(sample_interval=0)


def test_unknown_method_is_rejected_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="'slurp'"):
        st.run_streaming("postgresql://nowhere", st.StreamSettings(), methods=["slurp"])


def test_expected_checksum_matches_consume_on_fake_rows() -> None:
    rows = [(i, "x" * 32, 0.0) for i in range(1, 101)]
    assert st.consume(rows) == (100, st.expected_checksum(100))


@pytest.mark.parametrize("method", st.METHODS)
def test_every_method_reads_every_row(pg_server: PostgresServer, method: str) -> None:
    settings = st.StreamSettings(rows=3000, batch_size=700)
    rec = st.measure_here(pg_server.dsn, method, settings, traced=True)
    assert rec["rows_read"] == 3000
    assert rec["checksum"] == st.expected_checksum(3000)
    assert rec["py_peak_bytes"] > 0
    assert rec["rss_peak_bytes"] >= rec["rss_baseline_bytes"]


def test_streaming_peak_memory_is_far_below_fetchall(pg_server: PostgresServer) -> None:
    settings = st.StreamSettings(rows=100_000, batch_size=1000)
    frames = st.run_streaming(
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
        settings = st.StreamSettings(rows=rows, batch_size=1000)
        return float(st.measure_here(pg_server.dsn, method, settings, traced=True)["py_peak_bytes"])

    assert peak("fetchall", 60_000) / peak("fetchall", 12_000) > 3
    assert peak("server_cursor", 60_000) / peak("server_cursor", 12_000) < 1.5


def test_frames_have_documented_columns(pg_server: PostgresServer) -> None:
    frames = st.run_streaming(
        pg_server.dsn, st.StreamSettings(rows=2000, batch_size=500), methods=("stream",)
    )
    assert tuple(frames["runs"].columns) == st.RUN_COLUMNS
    assert tuple(frames["memory"].columns) == st.MEMORY_COLUMNS
    assert frames["runs"]["traced"].tolist() == [True, False]
    summary = st.compare(frames["runs"], baseline="stream")
    assert summary.loc[0, "py_peak_x_lower"] == pytest.approx(1.0)


def test_child_failure_is_reported_without_the_password(pg_server: PostgresServer) -> None:
    bad = pg_server.dsn.replace(f":{pg_server.settings.password}@", ":Wr0ngSecret99@")
    with pytest.raises(PerfkitError) as info:
        st.measure_in_subprocess(bad, "stream", st.StreamSettings(rows=10), traced=False)
    assert "Wr0ngSecret99" not in str(info.value)
    assert pg_server.settings.password not in str(info.value)


@pytest.mark.bench
def test_bench_streaming_1m_rows_is_10x_below_fetchall(pg_server: PostgresServer) -> None:
    frames = st.run_streaming(
        pg_server.dsn,
        st.StreamSettings(rows=1_000_000),
        methods=("fetchall", "server_cursor", "stream"),
    )
    summary = st.compare(frames["runs"])
    print(summary.to_string())
    c = st.conclusions(summary, 1_000_000)
    assert c["goal_10x_met"]
