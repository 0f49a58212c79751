"""The PgBouncer lab's pure helpers, parameter checks, headlines and conclusions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perfkit.errors import BackendUnavailable, ConfigError
from perfkit.lab import SAMPLE_COLUMNS
from perfkit.pgbouncer import analysis, conclusions, lab, measure
from perfkit.postgres import PostgresServer
from perfkit.postgres.pgbouncer import BINARY_ENV


def synthetic_frames(direct_ms: float = 20.0, bouncer_ms: float = 10.0) -> dict[str, pd.DataFrame]:
    """Frames shaped like a run's, with latency around the given medians."""
    rng = np.random.default_rng(0)
    connect = pd.DataFrame(
        [
            {"variant": v, "i": i, "ms": center + rng.normal(0, 1)}
            for v, center in (("direct", direct_ms), ("transaction", bouncer_ms))
            for i in range(30)
        ]
        + [{"variant": "session", "i": i, "ms": bouncer_ms + rng.normal(0, 1)} for i in range(30)]
    )
    bins = pd.DataFrame(
        [
            {"variant": v, "threads": 4, "bin": i, "t_s": i / 10, "rps": rate + rng.normal(0, 5)}
            for v, rate in (("direct", 70.0), ("transaction", 120.0), ("session", 125.0))
            for i in range(10)
        ]
    )
    throughput = bins.groupby("variant", as_index=False).agg(rps=("rps", "mean"))
    throughput = throughput.assign(
        threads=4, rps_bin_mean=throughput["rps"], rps_low=0.0, rps_high=0.0
    )
    storm = pd.DataFrame(
        [
            {
                "variant": v,
                "rep": 0,
                "n_clients": 20,
                "outage_s": 0.5,
                "retry_delay_ms": 50.0,
                "lost": 20,
                "peak_backends_after_restart": peak,
                "server_peak_attempts_per_s": rate,
                "client_peak_attempts_per_s": rate,
                "server_login_retry_s": 0.5,
            }
            for v, peak, rate in (("direct", 20.0, 300.0), ("transaction", 4.0, 30.0))
        ]
    )
    storm_clients = pd.DataFrame(
        [
            {"variant": v, "client": i, "recovered_after_ready_ms": ms + i}
            for v, ms in (("direct", 20.0), ("transaction", 350.0))
            for i in range(20)
        ]
    )
    frames = {
        "connect": connect,
        "throughput": throughput,
        "throughput_bins": bins,
        "storm": storm,
        "storm_clients": storm_clients,
        "pool": pd.DataFrame(),
        "pool_bins": pd.DataFrame(),
        "modes": pd.DataFrame(),
    }
    frames["samples"] = analysis.samples_frame(frames)
    return frames


def test_bin_rates_counts_events_per_second_with_empty_bins() -> None:
    rates = measure.bin_rates([0.01, 0.02, 0.25], 0.3, bin_s=0.1)
    assert rates.tolist() == [20.0, 0.0, 10.0]


def test_bin_rates_drops_events_past_the_last_full_bin() -> None:
    assert measure.bin_rates([0.05, 0.31], 0.35, bin_s=0.1).sum() == 10.0


def test_peak_rate_is_the_busiest_bin_per_second() -> None:
    assert measure.peak_rate([-0.05, 0.01, 0.02, 0.03, 0.5], bin_s=0.1) == 30.0


def test_peak_rate_of_no_events_is_zero() -> None:
    assert measure.peak_rate([]) == 0.0


def test_server_connections_sums_every_server_state_of_the_database() -> None:
    pools = [
        {"database": "app", "sv_active": 2, "sv_idle": 3, "sv_used": 1, "sv_login": 1},
        {"database": "pgbouncer", "sv_active": 5},
    ]
    assert measure.server_connections(pools, "app") == 7


def test_order_of_variants_has_each_variant_once_per_round() -> None:
    order = measure.order_of_variants(["a", "b", "c"], 4, seed=3)
    assert [sorted(order[i : i + 3]) for i in range(0, 12, 3)] == [["a", "b", "c"]] * 4


def test_order_of_variants_is_seeded() -> None:
    assert measure.order_of_variants("abc", 5, seed=1) == measure.order_of_variants(
        "abc", 5, seed=1
    )


def test_peak_after_ignores_samples_before_the_restart() -> None:
    samples = pd.DataFrame({"t_event_s": [-1.0, 0.0, 0.5], "backends": [50, 3, 7]})
    assert measure.peak_after(samples, 0.0) == 7


def test_ready_after_is_the_probe_when_no_client_came_back_earlier() -> None:
    assert measure.ready_after(5.0, [5.5, None, 6.0]) == 5.0


def test_ready_after_is_the_first_client_back_when_the_probe_was_late() -> None:
    assert measure.ready_after(5.0, [4.8, None]) == 4.8


def test_samples_frame_has_the_contract_columns_and_headline_variants() -> None:
    samples = synthetic_frames()["samples"]
    assert list(samples.columns) == [*SAMPLE_COLUMNS, "run"]
    assert set(samples["variant"]) == {"naive", "improved"}


def test_storm_samples_say_which_repetition_they_came_from() -> None:
    samples = synthetic_frames()["samples"]
    peaks = samples[samples["metric"] == analysis.METRIC_PEAK]
    storm = synthetic_frames()["storm"]
    assert sorted(set(peaks["run"])) == sorted(set(storm["rep"]))


def test_headlines_carry_n_and_an_interval_around_the_value() -> None:
    items = analysis.headlines(synthetic_frames()).itertuples()
    latency = next(h for h in items if h.metric == analysis.METRIC_LATENCY and h.variant == "naive")
    assert latency.n == 30 and latency.ci_low <= latency.value <= latency.ci_high


def test_conclusions_name_pgbouncer_when_the_data_separate_it() -> None:
    text = conclusions.conclusions(synthetic_frames(direct_ms=20.0, bouncer_ms=10.0))
    assert "transaction is fastest" in text


def test_conclusions_say_indistinguishable_when_the_data_do_not_separate() -> None:
    text = conclusions.conclusions(synthetic_frames(direct_ms=10.0, bouncer_ms=10.0))
    assert "direct and transaction are indistinguishable" in text or (
        "transaction and direct are indistinguishable" in text
    )


def test_conclusions_compare_with_the_published_numbers() -> None:
    text = conclusions.conclusions(synthetic_frames())
    assert "pgcat issue #459" in text and "Cybertec" in text


def test_conclusions_say_whether_pgbouncer_absorbs_the_storm() -> None:
    assert "PgBouncer absorbs the storm" in conclusions.conclusions(synthetic_frames())


def test_params_refuse_a_herd_larger_than_max_connections() -> None:
    with pytest.raises(ConfigError, match=r"'storm_clients'.*max_connections"):
        lab.Params(storm_clients=500)


def test_params_refuse_empty_pool_workers() -> None:
    with pytest.raises(ConfigError, match="'pool_workers' must not be empty"):
        lab.Params(pool_workers=())


def test_params_refuse_a_missing_pgbouncer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-pgbouncer"))
    with pytest.raises(BackendUnavailable, match="apt-get install pgbouncer"):
        lab.Params(quick=True)


def test_bouncer_settings_carry_the_login_retry() -> None:
    settings = lab.Params(server_login_retry_s=0.25).bouncer_settings("session")
    assert settings.pool_mode == "session" and settings.server_login_retry == 0.25


def test_server_settings_ask_for_max_connections_and_connection_logs() -> None:
    gucs = lab.LAB.server_settings(lab.Params(max_connections=150)).server_settings
    assert gucs["max_connections"] == "150" and gucs["log_connections"] == "on"


@pytest.mark.local
def test_measure_connect_keeps_one_row_per_connect(pg_server: PostgresServer) -> None:
    frame = measure.measure_connect({"direct": pg_server.dsn}, 3, seed=0)
    assert frame["variant"].tolist() == ["direct"] * 3 and (frame["ms"] > 0).all()


def test_a_comparison_with_one_measured_variant_says_so() -> None:
    line = conclusions.verdict_line(
        {"direct": np.array([1.0, 2.0]), "session": np.array([])}, "x", "ms"
    )
    assert "not enough variants measured" in line
