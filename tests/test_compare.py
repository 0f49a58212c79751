"""`perfkit compare`: ratios of key metrics between two saved runs, flagged beyond a threshold."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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
            headline_frame(
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


# Compare by samples: the ratio's interval, not its point, decides.

NAIVE, IMPROVED = "connection_time/naive [s]", "connection_time/improved [s]"


def _draws(seed: int, median: float, n: int = 20, sigma: float = 0.1) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)


def _samples_run(tmp_path: Path, samples: dict[str, np.ndarray]) -> results.Run:
    variants = {name: name.split("/")[1].split(" ")[0] for name in samples}
    headline = headline_frame(
        [
            Headline(
                metric="connection_time",
                variant=variants[name],
                value=float(np.median(values)),
                unit="s",
            )
            for name, values in samples.items()
        ]
    )
    frame = pd.DataFrame(
        [
            {"metric": "connection_time", "variant": variants[name], "unit": "s", "value": v}
            for name, values in samples.items()
            for v in values
        ]
    )
    return results.save(
        frames={"headline": headline, "samples": frame}, experiment="retry", out_dir=tmp_path
    )


def test_two_samples_of_one_distribution_are_not_flagged() -> None:
    metrics = [f"m{i}" for i in range(22)]
    for seed in range(10):
        a = {m: _draws(1000 * seed + i, 1.0, n=10) for i, m in enumerate(metrics)}
        b = {m: _draws(1000 * seed + i + 500, 1.0, n=10) for i, m in enumerate(metrics)}
        table = compare.compare_samples(a, b, threshold=0.1, seed=seed)
        assert not table["changed"].any(), table[table["changed"]]


def test_a_planted_30_percent_regression_is_flagged_up_in_nine_seeds_of_ten() -> None:
    # the interval must clear 1.1, not just 1: at n = 20, sigma 0.1 that happens ~98 % of the time
    seeds = 50
    flags = [
        compare.compare_samples(
            {"m": _draws(seed, 1.0, n=20)}, {"m": _draws(seed + 100, 1.3, n=20)}, seed=seed
        )["flag"][0]
        for seed in range(seeds)
    ]
    assert flags.count("+") / seeds >= 0.9 and "-" not in flags


def test_a_planted_30_percent_improvement_is_flagged_down() -> None:
    table = compare.compare_samples({"m": _draws(0, 1.0)}, {"m": _draws(1, 0.7)})
    assert table["changed"].tolist() == [True] and table["flag"].tolist() == ["-"]


def test_a_certain_change_within_the_threshold_is_not_flagged() -> None:
    table = compare.compare_samples(
        {"m": _draws(0, 1.0, n=30, sigma=0.01)}, {"m": _draws(1, 1.05, n=30, sigma=0.01)}
    )
    row = table.iloc[0]
    assert row["ratio_low"] > 1.0 and not row["changed"]


def test_sample_table_has_medians_ratio_interval_and_sizes() -> None:
    a, b = _draws(0, 1.0, n=8), _draws(1, 1.3, n=12)
    row = compare.compare_samples({"m": a}, {"m": b}).iloc[0]
    assert (row["a"], row["b"]) == (np.median(a), np.median(b))
    assert row["ratio"] == pytest.approx(np.median(b) / np.median(a))
    assert row["ratio_low"] < row["ratio"] < row["ratio_high"]
    assert (row["n_a"], row["n_b"], row["basis"]) == (8, 12, "samples")


def test_a_metric_without_samples_on_one_side_falls_back_to_the_scalar_rule() -> None:
    table = compare.compare_samples({"m": 1.0}, {"m": [1.5, 1.4, 1.6]})
    row = table.iloc[0]
    assert (row["basis"], row["ratio"], row["flag"], row["changed"]) == ("scalar", 1.5, "+", True)
    assert math.isnan(row["ratio_low"]) and math.isnan(row["ratio_high"])


def test_sample_comparison_skips_metrics_missing_on_one_side() -> None:
    table = compare.compare_samples({"a": [1.0, 2.0], "b": [1.0, 2.0]}, {"b": [1.0, 2.0]})
    assert table["metric"].tolist() == ["b"]


def test_sample_comparison_rejects_a_negative_threshold() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        compare.compare_samples({}, {}, threshold=-0.1)


def test_samples_frame_gives_each_metrics_samples(tmp_path: Path) -> None:
    run = _samples_run(tmp_path, {NAIVE: np.array([1.0, 2.0, 3.0])})
    samples = compare.key_samples(results.load(run.path))
    assert list(samples) == [NAIVE] and samples[NAIVE].tolist() == [1.0, 2.0, 3.0]


def test_samples_in_milliseconds_are_compared_in_the_reports_seconds(tmp_path: Path) -> None:
    headline = headline_frame([Headline(metric="m", variant="naive", value=2.0, unit="ms")])
    frame = pd.DataFrame({"metric": "m", "variant": "naive", "unit": "ms", "value": [1.0, 3.0]})
    run = results.save(
        frames={"headline": headline, "samples": frame}, experiment="retry", out_dir=tmp_path
    )
    samples = compare.key_samples(results.load(run.path))
    assert samples["m/naive [s]"].tolist() == [0.001, 0.003]


def test_samples_frame_without_its_columns_is_an_error(tmp_path: Path) -> None:
    frame = pd.DataFrame({"name": ["m"], "value": [1.0]})
    run = results.save(frames={"samples": frame}, experiment="retry", out_dir=tmp_path)
    with pytest.raises(PerfkitError, match="metric"):
        compare.key_samples(results.load(run.path))


def test_compare_command_prints_each_ratio_with_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _samples_run(tmp_path, {NAIVE: _draws(0, 15.0), IMPROVED: _draws(1, 0.5)})
    b = _samples_run(tmp_path, {NAIVE: _draws(2, 15.0), IMPROVED: _draws(3, 0.65)})
    assert main(["compare", str(a.path), str(b.path)]) == 0
    out = capsys.readouterr().out
    table = compare.compare_paths(a.path, b.path).set_index("metric")
    for metric in (NAIVE, IMPROVED):
        line = next(line for line in out.splitlines() if line.startswith(metric))
        low, high = table.loc[metric, ["ratio_low", "ratio_high"]]
        assert f"[{low:.3f}, {high:.3f}]" in line and "20/20" in line
    assert "(+) up" in next(line for line in out.splitlines() if line.startswith(IMPROVED))
    assert "1 of 2 metrics changed by more than 10%" in out


def test_compare_command_marks_scalar_fallbacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _headline_run(tmp_path, naive=15.0, improved=0.5)  # headlines only
    b = _samples_run(tmp_path, {NAIVE: _draws(2, 15.0), IMPROVED: _draws(3, 0.5)})
    assert main(["compare", str(a.path), str(b.path)]) == 0
    out = capsys.readouterr().out
    assert "(scalar)" in next(line for line in out.splitlines() if line.startswith(NAIVE))


def test_fail_on_change_by_samples_exits_1_only_for_a_real_change(tmp_path: Path) -> None:
    a = _samples_run(tmp_path, {NAIVE: _draws(0, 15.0), IMPROVED: _draws(1, 0.5)})
    same = _samples_run(tmp_path, {NAIVE: _draws(2, 15.0), IMPROVED: _draws(3, 0.5)})
    slower = _samples_run(tmp_path, {NAIVE: _draws(4, 15.0), IMPROVED: _draws(5, 0.65)})
    assert main(["compare", str(a.path), str(same.path), "--fail-on-change"]) == 0
    assert main(["compare", str(a.path), str(slower.path), "--fail-on-change"]) == 1


def test_report_runs_compare_every_labs_samples_by_lab(tmp_path: Path) -> None:
    def report_run(seed: int) -> results.Run:
        lab_run = _samples_run(tmp_path / f"lab{seed}", {NAIVE: _draws(seed, 15.0)})
        runs = {"retry": results.load(lab_run.path)}
        return results.save(
            frames={
                "headline": summary.collect_headlines(runs),
                "samples": summary.collect_samples(runs),
            },
            experiment=summary.REPORT_EXPERIMENT,
            out_dir=tmp_path,
        )

    table = compare.compare_paths(report_run(0).path, report_run(1).path)
    row = table.set_index("metric").loc[f"retry: {NAIVE}"]
    assert row["basis"] == "samples" and not row["changed"]
