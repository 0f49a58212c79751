"""perfkit.summary: the review's baseline table built from the labs' saved results."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest

from perfkit import registry, results, summary
from perfkit.errors import ConfigError
from perfkit.headlines import Headline
from perfkit.lab import Results

matplotlib.use("Agg")  # tests draw without a display; notebooks keep their inline backend


def _headlines(*items: Headline, experiment: str = "lab", run_id: str = "r1") -> pd.DataFrame:
    frame = summary.headline_frame(items)
    frame["experiment"], frame["run_id"] = experiment, run_id
    return summary.normalise(frame)


def _row(table: pd.DataFrame, metric: str) -> dict[str, str]:
    return table.set_index("Metric").loc[metric].to_dict()


def test_table_has_the_review_rows_and_the_four_columns() -> None:
    table = summary.baseline_table(_headlines())
    assert table["Metric"].tolist() == [
        "Database Connection Time",
        "Test Suite Runtime",
        "Memory Usage",
        "Container Startup",
    ]
    assert table.columns[:5].tolist() == [
        "Metric",
        "Claimed current",
        "Claimed target",
        "Measured naive",
        "Measured improved",
    ]
    assert _row(table, "Database Connection Time")["Claimed current"] == "500ms × 30 = 15s"
    assert _row(table, "Container Startup")["Claimed target"] == "Shared/cached"


def test_measured_values_are_formatted_with_units_and_change() -> None:
    headlines = _headlines(
        Headline(metric="connection_time", variant="naive", value=15.2, unit="s", label="fixed"),
        Headline(
            metric="connection_time", variant="improved", value=450, unit="ms", label="backoff"
        ),
        Headline(metric="memory", variant="naive", value=300 * 2**20, unit="B"),
        Headline(metric="memory", variant="improved", value=60.0, unit="MiB"),
    )
    table = summary.baseline_table(headlines)
    conn, mem = _row(table, "Database Connection Time"), _row(table, "Memory Usage")
    assert (conn["Measured naive"], conn["Measured improved"]) == ("15.2 s", "450 ms")
    assert conn["Change"] == "-97% ▼ better"
    assert conn["What was measured"] == "naive: fixed; improved: backoff"
    assert (mem["Measured naive"], mem["Measured improved"]) == ("300 MiB", "60.0 MiB")


def test_unmeasured_rows_say_not_measured_and_why() -> None:
    table = summary.baseline_table(
        _headlines(), {"lifecycle": "lab 03_container_lifecycle failed: boom"}
    )
    suite = _row(table, "Test Suite Runtime")
    assert suite["Measured naive"] == "not measured (lab 03_container_lifecycle failed: boom)"
    assert _row(table, "Database Connection Time")["Measured improved"].startswith("not measured")


def test_lab_named_in_the_claim_wins_over_another_lab_for_the_same_metric() -> None:
    other = _headlines(
        Headline(metric="memory", variant="naive", value=1.0, unit="MiB"), experiment="zzz"
    )
    lifecycle = _headlines(
        Headline(metric="memory", variant="naive", value=2.0, unit="MiB"), experiment="lifecycle"
    )
    table = summary.baseline_table(pd.concat([other, lifecycle], ignore_index=True))
    assert _row(table, "Memory Usage")["Measured naive"] == "2.00 MiB"


def test_headline_rejects_unknown_variant_and_unit() -> None:
    with pytest.raises(ConfigError, match="variant"):
        Headline(metric="m", variant="best", value=1.0, unit="s")
    with pytest.raises(ConfigError, match="unit"):
        Headline(metric="m", variant="naive", value=1.0, unit="parsecs")
    with pytest.raises(ConfigError, match="value"):
        Headline(metric="m", variant="naive", value=True, unit="s")


def test_non_finite_values_count_as_not_measured() -> None:
    headlines = _headlines(
        Headline(metric="suite_runtime", variant="naive", value=math.nan, unit="s")
    )
    assert _row(summary.baseline_table(headlines), "Test Suite Runtime")[
        "Measured naive"
    ].startswith("not measured")


def test_lifecycle_wide_headline_frame_is_read_through_its_lab(tmp_path: Path) -> None:
    wide = pd.DataFrame(
        {
            "metric": ["Test Suite Runtime", "Memory Usage", "Servers Started"],
            "unit": ["s", "MiB peak", "count"],
            "naive": [30.0, 400.0, 29.0],
            "improved": [2.0, 40.0, 1.0],
            "naive_label": ["per-test-server"] * 3,
            "improved_label": ["rollback"] * 3,
            "workers": [1, 1, 1],
        }
    )
    run = results.save(frames={"headline": wide}, experiment="lifecycle", out_dir=tmp_path)
    headlines = summary.headlines_of(results.load(run.path))
    table = summary.baseline_table(headlines)
    assert _row(table, "Test Suite Runtime")["Measured improved"] == "2.00 s"
    assert _row(table, "Memory Usage")["Measured naive"] == "400 MiB"
    assert "rollback (workers=1)" in _row(table, "Test Suite Runtime")["What was measured"]
    others = summary.other_headlines(headlines)
    assert others["Metric"].tolist() == ["servers_started", "servers_started"]


def test_streaming_lab_headlines_are_client_memory_of_fetchall_vs_best_stream() -> None:
    from perfkit.streaming import analysis

    mib = 2**20
    runs = pd.DataFrame(
        [
            {
                "method": m,
                "traced": traced,
                "py_peak_bytes": py * mib,
                "rss_growth_bytes": rss * mib,
            }
            | {"wall_s": 1.0}
            for m, py, rss in (
                ("fetchall", 200, 300),
                ("fetchmany", 1, 250),
                ("server_cursor", 1, 3),
                ("stream", 2, 2),
            )
            for traced in (True, False)
            for _ in range(3)
        ]
    )
    table = analysis.compare(runs)
    frames = {
        "summary": table,
        "samples": analysis.samples_frame(runs, table),
        "conclusions": pd.DataFrame([{"rows": 50_000}]),
    }
    h = summary.normalise(registry.get("streaming").headlines(Results(frames=frames)))
    rss = h[h["metric"] == "streaming_rss_growth"].set_index("variant")
    assert rss.loc["naive", "value"] == 300.0 and rss.loc["improved", "value"] == 2.0
    assert rss.loc["improved", "label"] == (
        "stream: RSS growth reading 50,000 rows (interval: the range of 3)"
    )
    assert rss.loc["naive", "n"] == 3


def test_pool_lab_headlines_are_review_preset_vs_best_size() -> None:
    conclusions = pd.DataFrame(
        [
            {
                "review_throughput_rps": 900.0,
                "best_throughput_rps": 1500.0,
                "review_max_size": 5,
                "best_max_size": 9,
                "review_wait_p99_ms": 40.0,
                "best_wait_p99_ms": 3.0,
                "preset_workers": 16,
            }
        ]
    )
    lab = registry.get("pool")
    h = summary.normalise(lab.headlines(Results(frames={"conclusions": conclusions})))
    tput = h[h["metric"] == "pool_throughput"].set_index("variant")["value"].to_dict()
    assert tput == {"naive": 900.0, "improved": 1500.0}
    wait = h[h["metric"] == "pool_wait_p99"].set_index("variant")["value"].to_dict()
    assert wait == {"naive": 0.04, "improved": 0.003}  # ms -> s


def test_headline_with_an_interval_shows_it_and_its_n() -> None:
    item = Headline(
        metric="suite_runtime", variant="naive", value=30.0, unit="s", n=5, ci_low=28, ci_high=33
    )
    table = summary.baseline_table(_headlines(item))
    assert _row(table, "Test Suite Runtime")["Measured naive"] == "30.0 s [28.0 s, 33.0 s] (n=5)"


def test_latest_runs_ignores_runs_older_than_since(tmp_path: Path) -> None:
    old = results.save(frames={}, experiment="retry", out_dir=tmp_path)
    since = pd.Timestamp.now(tz="UTC").isoformat()
    fresh = results.save(frames={}, experiment="pool", out_dir=tmp_path)
    runs, missing = summary.latest_runs(tmp_path, since=since)
    assert list(runs) == ["pool"] and runs["pool"].run_id == fresh.run_id
    assert f"latest is {old.run_id}" in missing["retry"]
    assert "no results of the lifecycle lab" in missing["lifecycle"]


def test_table_html_is_escaped_and_has_an_id() -> None:
    table = pd.DataFrame({"Metric": ["<b>x</b>"], "Value": ["1 s"]})
    out = summary.table_html(table, table_id="baseline")
    assert 'id="baseline"' in out and "&lt;b&gt;x&lt;/b&gt;" in out


def test_plot_has_one_panel_per_baseline_row() -> None:
    fig = summary.plot_baseline(
        _headlines(Headline(metric="suite_runtime", variant="naive", value=30.0, unit="s"))
    )
    assert [ax.get_title() for ax in fig.axes] == [c.title for c in summary.BASELINE]


def test_lab_status_table_shows_failures_and_overhead() -> None:
    table = summary.lab_status_table(
        [
            {
                "notebook": "/r/01_a.ipynb",
                "ok": True,
                "wall_s": 12.5,
                "overhead_s": 1.5,
                "error": "",
            },
            {
                "notebook": "/r/02_b.ipynb",
                "ok": False,
                "wall_s": 3.0,
                "overhead_s": 1.0,
                "error": "cell 3 raised X",
            },
        ]
    )
    assert table["Status"].tolist() == ["ok", "failed"]
    assert table["Kernel/papermill overhead"].tolist() == ["1.50 s", "1.00 s"]
    assert table["Error"].tolist() == ["", "cell 3 raised X"]


def test_latest_runs_skips_the_reports_own_results(tmp_path: Path) -> None:
    results.save(frames={}, experiment=summary.REPORT_EXPERIMENT, out_dir=tmp_path)
    results.save(frames={}, experiment="streaming", out_dir=tmp_path)
    runs, _ = summary.latest_runs(tmp_path)
    assert sorted(runs) == ["streaming"]


def test_plot_draws_an_interval_on_a_measured_bar_that_has_one() -> None:
    item = Headline(
        metric="suite_runtime", variant="naive", value=30.0, unit="s", n=5, ci_low=28, ci_high=33
    )
    fig = summary.plot_baseline(_headlines(item))
    suite_panel = fig.axes[[c.metric for c in summary.BASELINE].index("suite_runtime")]
    (bar,) = [c for c in suite_panel.containers if type(c).__name__ == "ErrorbarContainer"]
    (segment,) = bar.lines[2][0].get_segments()
    assert [y for _, y in segment] == [28.0, 33.0]


def test_machine_load_table_marks_loaded_runs(tmp_path: Path) -> None:
    quiet = {"cores": 2, "load_1m_before": 1.9, "other_cpu_share": 0.02}
    busy = {"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.5}
    runs = {
        name: results.load(
            results.save(frames={}, experiment=name, out_dir=tmp_path, extra={"noise": record}).path
        )
        for name, record in (("pool", quiet), ("retry", busy))
    }
    table = summary.machine_load_table(runs).set_index("Lab")
    assert table.loc["pool", "Loaded"] == "no" and table.loc["retry", "Loaded"] == "LOADED"
    assert table.loc["retry", "Other processes' CPU"] == "50%"


def _connection(naive_s: float, improved_s: float, better: str = "lower") -> pd.DataFrame:
    return _headlines(
        *(
            Headline(metric="connection_time", variant=v, value=x, unit="s", better=better)
            for v, x in (("naive", naive_s), ("improved", improved_s))
        ),
        experiment="retry",
    )


def test_a_measured_improved_value_worse_than_naive_says_worse() -> None:
    row = _row(summary.baseline_table(_connection(15.0, 26.6)), "Database Connection Time")
    assert row["Change"] == "+77% ▲ worse"
    assert row["Better"] == "lower is better"


def test_a_higher_value_is_better_when_the_metric_says_higher_is_better() -> None:
    row = _row(summary.baseline_table(_connection(1.0, 2.0, "higher")), "Database Connection Time")
    assert row["Change"] == "+100% ▲ better"


def _improved_cell_style(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    table = soup.find("table", id="baseline")
    head = [th.get_text(strip=True) for th in table.find("thead").find_all("th")]
    first = table.find("tbody").find("tr").find_all("td")
    cell_id = first[head.index("Measured improved")]["id"]
    css = soup.find("style").get_text()
    return " ".join(block for block in css.split("}") if f"#{cell_id}," in block + ",")


def test_a_worse_than_naive_improved_value_is_coloured_red_not_green() -> None:
    style = _improved_cell_style(summary.baseline_html(_connection(15.0, 26.6)))
    assert summary.DIRECTION_STYLE["worse"].split(";")[0] in style
    assert summary.DIRECTION_STYLE["better"].split(";")[0] not in style


def test_a_better_than_naive_improved_value_is_coloured_green() -> None:
    style = _improved_cell_style(summary.baseline_html(_connection(15.0, 0.5)))
    assert summary.DIRECTION_STYLE["better"].split(";")[0] in style


def test_the_plot_draws_a_worse_improved_bar_red_not_green() -> None:
    from matplotlib.colors import to_hex

    fig = summary.plot_baseline(_connection(15.0, 26.6))
    panel = fig.axes[[c.metric for c in summary.BASELINE].index("connection_time")]
    improved_bar = panel.patches[3]
    assert to_hex(improved_bar.get_facecolor()) == summary.DIRECTION_COLOUR["worse"]
    assert "+77% ▲ worse" in [t.get_text().split("\n")[-1] for t in panel.texts]


def test_headlines_saved_without_a_direction_get_their_labs_declared_one(tmp_path: Path) -> None:
    frame = summary.headline_frame(
        [Headline(metric="pool_throughput", variant="naive", value=1.0, unit="rps")]
    ).drop(columns="better")
    run = results.save(frames={"headline": frame}, experiment="report", out_dir=tmp_path)
    headlines = summary.headlines_of(results.load(run.path))
    assert headlines["better"].tolist() == ["higher"]


class _ManyFiguresLab:
    """A lab that draws more figures than matplotlib allows open at once (20)."""

    name, title = "many_figures", "Many figures"

    def figures(self, results: Results) -> Iterator[tuple[str, Any]]:
        import matplotlib.pyplot as plt

        for i in range(25):
            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, i])
            yield f"figure {i}", fig

    def conclusions(self, results: Results) -> str:
        return "drawn"


def test_lab_sections_hold_at_most_one_open_figure_and_close_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(registry, "LABS", (_ManyFiguresLab(),))
    run = results.save(
        {"samples": pd.DataFrame({"value": [1.0]})}, "many_figures", out_dir=tmp_path
    )
    open_counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "More than 20 figures" would raise here
        for _title, text, figures in summary.lab_sections({"many_figures": run}):
            assert text == "drawn"
            for _caption, _figure in figures:
                open_counts.append(len(plt.get_fignums()))
    assert len(open_counts) == 25
    assert max(open_counts) == 1
    assert plt.get_fignums() == []
