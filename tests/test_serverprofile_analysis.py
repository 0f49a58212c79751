"""The profile frames to shares, sentences and figures: pure, on hand-made frames."""

from __future__ import annotations

import pandas as pd
import pytest

from perfkit.serverprofile import analysis
from perfkit.serverprofile.plots import plot_where_time_went
from perfkit.serverprofile.sampler import Profile


def _profile(variant: str, samples: int, counts: dict[tuple[str, str, str, str], int]) -> list:
    return Profile(counts=counts, samples=samples, missed=0, elapsed_s=1.0, query_s=0.0).rows(
        variant=variant, workers=16
    )


def _frame() -> pd.DataFrame:
    active = "active"
    cb = "client backend"
    rows = _profile("2", 100, {("", "", active, cb): 150, ("LWLock", "WALWrite", active, cb): 50})
    rows += _profile(
        "16",
        100,
        {
            ("", "", active, cb): 200,
            ("LWLock", "WALWrite", active, cb): 600,
            ("", "", "idle", cb): 400,
            ("Activity", "WalWriterMain", "", "walwriter"): 100,
        },
    )
    return pd.DataFrame(rows)


def test_active_backend_with_no_wait_event_counts_as_cpu() -> None:
    shares = analysis.time_shares(_frame()).set_index(["variant", "event"])
    assert shares.loc[("2", "CPU"), "share"] == pytest.approx(0.75)
    assert shares.loc[("16", "LWLock:WALWrite"), "share"] == pytest.approx(0.75)


def test_idle_and_background_backends_are_not_active_time() -> None:
    events = set(analysis.time_shares(_frame())["event"])
    assert events == {"CPU", "LWLock:WALWrite"}


def test_every_state_counts_when_asked_with_the_state_as_its_label() -> None:
    shares = analysis.time_shares(_frame(), states=None)
    assert "idle" in set(shares[shares["variant"] == "16"]["event"])


def test_share_interval_uses_the_number_of_samples_as_n() -> None:
    shares = analysis.time_shares(_frame())
    row = shares[(shares["variant"] == "16") & (shares["event"] == "LWLock:WALWrite")].iloc[0]
    assert row["samples"] == 100
    assert row["share_low"] < row["share"] < row["share_high"]


def test_samples_of_repeated_runs_of_a_variant_add_up() -> None:
    frame = pd.DataFrame(
        _profile("2", 40, {("", "", "active", "client backend"): 1})
        + [r | {"rep": 1} for r in _profile("2", 60, {("", "", "active", "client backend"): 1})]
    )
    assert analysis.time_shares(frame)["samples"].tolist() == [100]


def test_sentence_says_more_connections_added_waiting_not_throughput() -> None:
    text = analysis.profile_sentence(
        _frame(), what="max_size", order=["2", "16"], throughput={"2": 1000.0, "16": 1010.0}
    )
    assert "75 %" in text and "`LWLock:WALWrite`" in text
    assert "added waiting, not throughput" in text
    assert "n = 100 samples" in text


def test_sentence_does_not_blame_waiting_when_throughput_grew() -> None:
    text = analysis.profile_sentence(
        _frame(), what="max_size", order=["2", "16"], throughput={"2": 1000.0, "16": 3000.0}
    )
    assert "not throughput" not in text
    assert "+200 %" in text


def test_overhead_needs_six_pairs_for_an_interval() -> None:
    rows = [
        {"pair": p, "sampler": s, "throughput_rps": 100.0 + p + s}
        for p in range(5)
        for s in (False, True)
    ]
    assert analysis.overhead(pd.DataFrame(rows)) is None
    assert "fewer than 6" in analysis.overhead_sentence(pd.DataFrame(rows))


def test_figure_has_one_bar_per_variant_in_the_given_order() -> None:
    fig = plot_where_time_went(_frame(), order=["2", "16"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["2\nn=100", "16\nn=100"]


def test_report_recognises_each_labs_where_the_time_went_caption() -> None:
    from perfkit import summary

    assert summary.is_where_figure("Where the time went: server wait events, direct vs PgBouncer")
    assert summary.is_where_figure("Closed loop: where the time went: wait events by pool size")
    assert not summary.is_where_figure("Closed loop: throughput vs connections")
