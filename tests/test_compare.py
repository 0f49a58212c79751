"""`perfkit compare`: ratios of key metrics between two saved runs, flagged beyond a threshold."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from perfkit import compare, results, summary
from perfkit.cli import main
from perfkit.errors import ConfigError, PerfkitError
from perfkit.headlines import Headline, headline_frame


def _headline_run(tmp_path: Path, naive: float, improved: float) -> results.Run:
    frame = headline_frame(
        [
            Headline(metric="connection_time", variant="naive", value=naive, unit="s"),
            Headline(metric="connection_time", variant="improved", value=improved, unit="s"),
        ]
    )
    return results.save(frames={"headline": frame}, experiment="retry", out_dir=tmp_path)


def test_ratios_are_b_over_a_and_changes_beyond_threshold_are_flagged() -> None:
    a = pd.Series({"up": 1.0, "down": 2.0, "same": 4.0, "small": 10.0})
    b = pd.Series({"up": 1.5, "down": 1.0, "same": 4.0, "small": 10.5})
    table = compare.compare_metrics(a, b, threshold=0.1).set_index("metric")
    assert table["ratio"].to_dict() == {"up": 1.5, "down": 0.5, "same": 1.0, "small": 1.05}
    assert table["flag"].to_dict() == {"up": "+", "down": "-", "same": "", "small": ""}


def test_threshold_decides_what_is_flagged() -> None:
    a, b = pd.Series({"m": 10.0}), pd.Series({"m": 10.5})
    assert compare.compare_metrics(a, b, threshold=0.01)["flag"].tolist() == ["+"]
    assert compare.compare_metrics(a, b, threshold=0.1)["flag"].tolist() == [""]


def test_only_metrics_present_in_both_runs_are_compared() -> None:
    table = compare.compare_metrics(
        pd.Series({"a": 1.0, "b": 2.0}), pd.Series({"b": 2.0, "c": 1.0})
    )
    assert table["metric"].tolist() == ["b"]


def test_zero_baseline_gives_no_ratio_and_no_flag() -> None:
    table = compare.compare_metrics(pd.Series({"m": 0.0}), pd.Series({"m": 3.0}))
    assert math.isnan(table["ratio"][0]) and table["flag"][0] == ""


def test_negative_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        compare.compare_metrics(pd.Series(dtype=float), pd.Series(dtype=float), threshold=-1)


def test_headline_frames_are_the_key_metrics(tmp_path: Path) -> None:
    run = _headline_run(tmp_path, naive=15.0, improved=0.4)
    assert compare.key_metrics(results.load(run.path)).to_dict() == {
        "connection_time/naive [s]": 15.0,
        "connection_time/improved [s]": 0.4,
    }


def test_runs_that_are_not_of_a_lab_are_an_error_naming_the_labs(tmp_path: Path) -> None:
    run = results.save(frames={}, experiment="sweep", out_dir=tmp_path)
    with pytest.raises(PerfkitError, match=r"not a lab \(retry, pool"):
        compare.key_metrics(results.load(run.path))


def test_compare_command_prints_ratios_and_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _headline_run(tmp_path, naive=15.0, improved=0.5)
    b = _headline_run(tmp_path, naive=15.3, improved=1.0)
    assert main(["compare", str(a.path), str(b.path), "--threshold", "0.1"]) == 0
    out = capsys.readouterr().out
    assert f"A = {a.run_id}   B = {b.run_id}" in out
    naive_line = next(line for line in out.splitlines() if line.startswith("connection_time/naive"))
    improved_line = next(line for line in out.splitlines() if "connection_time/improved" in line)
    assert "1.020" in naive_line and "(+)" not in naive_line
    assert "2.000" in improved_line and "(+) up" in improved_line
    assert "1 of 2 metrics changed by more than 10%" in out


def test_fail_on_change_exits_1_when_something_moved(tmp_path: Path) -> None:
    a = _headline_run(tmp_path, naive=15.0, improved=0.5)
    b = _headline_run(tmp_path, naive=15.0, improved=1.0)
    assert main(["compare", str(a.path), str(b.path), "--fail-on-change"]) == 1
    assert main(["compare", str(a.path), str(a.path), "--fail-on-change"]) == 0


def test_experiment_directory_means_its_latest_run(tmp_path: Path) -> None:
    _headline_run(tmp_path, naive=1.0, improved=1.0)
    latest = _headline_run(tmp_path, naive=2.0, improved=2.0)
    assert compare.resolve_run(tmp_path / "retry").run_id == latest.run_id


def test_runs_without_common_metrics_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _headline_run(tmp_path, naive=1.0, improved=1.0)
    other = headline_frame([Headline(metric="other", variant="naive", value=1.0, unit="s")])
    b = results.save(frames={"headline": other}, experiment="retry", out_dir=tmp_path)
    with pytest.raises(PerfkitError, match="no key metric in common"):
        compare.compare_paths(a.path, b.path)
    assert main(["compare", str(a.path), str(b.path)]) == 2
    assert "no key metric in common" in capsys.readouterr().err


def test_path_that_is_not_a_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PerfkitError, match="neither a results run directory"):
        compare.resolve_run(tmp_path)


def test_report_runs_compare_every_labs_headlines_by_lab(tmp_path: Path) -> None:
    def report_run(connect_s: float) -> results.Run:
        frame = summary.normalise(
            summary.headline_frame(
                [
                    Headline(metric="connection_time", variant="naive", value=connect_s, unit="s"),
                    Headline(metric="suite_runtime", variant="naive", value=9.0, unit="s"),
                ]
            ).assign(experiment=["retry", "lifecycle"], run_id=["r1", "l1"])
        )
        return results.save(
            frames={"headline": frame}, experiment=summary.REPORT_EXPERIMENT, out_dir=tmp_path
        )

    table = compare.compare_paths(report_run(15.0).path, report_run(30.0).path).set_index("metric")
    assert table["ratio"].to_dict() == {
        "retry: connection_time/naive [s]": 2.0,
        "lifecycle: suite_runtime/naive [s]": 1.0,
    }


def test_differing_parameters_are_noted_but_paths_are_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = headline_frame([Headline(metric="m", variant="naive", value=1.0, unit="s")])
    a = results.save(
        frames={"headline": frame},
        experiment="retry",
        params={"quick": True, "out_dir": "/a"},
        out_dir=tmp_path,
    )
    b = results.save(
        frames={"headline": frame},
        experiment="retry",
        params={"quick": False, "out_dir": "/b"},
        out_dir=tmp_path,
    )
    assert main(["compare", str(a.path), str(b.path)]) == 0
    out = capsys.readouterr().out
    assert "note: parameters differ, quick: True -> False" in out
    assert "out_dir" not in out


def test_committed_reference_run_holds_every_labs_headlines() -> None:
    reference = Path(__file__).resolve().parent.parent / "data" / "reference" / "report"
    table = compare.compare_paths(reference, reference, threshold=0.1)
    labs = {metric.split(":")[0] for metric in table["metric"]}
    assert labs == {"retry", "pool", "lifecycle", "streaming"}
    assert (table["ratio"] == 1.0).all()
