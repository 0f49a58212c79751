"""`perfkit compare`: each run is one replicate; a change is flagged only when runs separate it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perfkit import compare, registry, results, summary
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


def _side(tmp_path: Path, naive: float, improved: float, runs: int = 4, seed: int = 0) -> list[str]:
    """``runs`` runs whose values scatter 2 % around the given ones."""
    rng = np.random.default_rng(seed)
    return [
        str(
            _headline_run(
                tmp_path, naive * rng.lognormal(0, 0.02), improved * rng.lognormal(0, 0.02)
            ).path
        )
        for _ in range(runs)
    ]


def test_compare_command_prints_ratio_interval_runs_and_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _side(tmp_path / "a", naive=15.0, improved=0.5, seed=1)
    b = _side(tmp_path / "b", naive=15.0, improved=1.0, seed=2)
    assert main(["compare", *a, "--vs", *b, "--threshold", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "(4 runs)" in out
    naive_line = next(line for line in out.splitlines() if line.startswith("connection_time/naive"))
    improved_line = next(line for line in out.splitlines() if "connection_time/improved" in line)
    assert "4/4" in naive_line and "unchanged" in naive_line
    assert "changed (+) up" in improved_line and "[" in improved_line
    assert "1 of 2 metrics changed by more than 10%" in out


def test_one_run_per_side_is_never_flagged_and_says_how_many_runs_are_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _headline_run(tmp_path, naive=16.66, improved=0.5)
    b = _headline_run(tmp_path, naive=10.55, improved=1.0)  # -37 %: one noisy run says nothing
    assert main(["compare", str(a.path), str(b.path), "--fail-on-change"]) == 0
    out = capsys.readouterr().out
    assert out.count("not enough runs (4 per side needed)") == 2
    assert "0 of 2 metrics changed" in out and "interleave" in out


def test_fail_on_change_exits_1_when_runs_separate_a_change(tmp_path: Path) -> None:
    a = _side(tmp_path / "a", naive=15.0, improved=0.5, seed=1)
    same = _side(tmp_path / "s", naive=15.0, improved=0.5, seed=2)
    slower = _side(tmp_path / "b", naive=15.0, improved=1.0, seed=3)
    assert main(["compare", *a, "--vs", *slower, "--fail-on-change"]) == 1
    assert main(["compare", *a, "--vs", *same, "--fail-on-change"]) == 0


def test_more_than_two_runs_without_vs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _side(tmp_path, naive=1.0, improved=1.0, runs=3)
    assert main(["compare", *a]) == 2
    assert "--vs" in capsys.readouterr().err


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


def _param_runs(tmp_path: Path) -> tuple[results.Run, results.Run]:
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
    return a, b


def test_runs_with_different_parameters_are_refused_naming_the_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _param_runs(tmp_path)
    assert main(["compare", str(a.path), str(b.path)]) == 2
    err = capsys.readouterr().err
    assert "quick: True -> False" in err and "--allow-different" in err
    assert "out_dir" not in err  # paths are bookkeeping, not parameters


def test_allow_different_compares_and_lists_the_differences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _param_runs(tmp_path)
    assert main(["compare", str(a.path), str(b.path), "--allow-different"]) == 0
    assert "note: compared although different" in capsys.readouterr().out


def test_runs_of_different_labs_are_refused(tmp_path: Path) -> None:
    frame = headline_frame([Headline(metric="m", variant="naive", value=1.0, unit="s")])
    a = results.save(frames={"headline": frame}, experiment="retry", out_dir=tmp_path)
    b = results.save(frames={"headline": frame}, experiment="pool", out_dir=tmp_path)
    with pytest.raises(ConfigError, match="is of 'pool', not 'retry'"):
        compare.compare_paths(a.path, b.path)


REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference" / "report"


def test_committed_reference_run_holds_every_labs_headlines() -> None:
    table = compare.compare_paths(REFERENCE, REFERENCE, threshold=0.1)
    labs = {metric.split(":")[0] for metric in table["metric"]}
    assert labs == {lab.name for lab in registry.LABS}
    assert (table["ratio"] == 1.0).all()


def test_committed_reference_run_is_a_full_report_with_samples_by_run() -> None:
    run = compare.resolve_run(REFERENCE)
    assert run.metadata["params"]["quick"] is False
    samples = summary.samples_of(run)
    assert {"run", "experiment"} <= set(samples.columns)
    assert set(samples["experiment"]) == {lab.name for lab in registry.LABS}


def test_a_quick_report_is_refused_against_the_full_reference(tmp_path: Path) -> None:
    quick = results.save(
        frames={"headline": results.load(compare.resolve_run(REFERENCE).path).frames["headline"]},
        experiment=summary.REPORT_EXPERIMENT,
        params={**compare.resolve_run(REFERENCE).metadata["params"], "quick": True},
        out_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match="quick: False -> True"):
        compare.compare_paths(REFERENCE, quick.path)


# The rules, on per-run values with known distributions.


def _runs(rng: np.random.Generator, median: float, runs: int, spread: float) -> np.ndarray:
    """Per-run values: each run shifted as a whole by machine load (lognormal spread)."""
    return median * rng.lognormal(0.0, spread, runs)


def test_ratio_and_interval_come_from_the_runs() -> None:
    row = compare.compare_units({"m": [1.0, 1.1, 0.9, 1.0]}, {"m": [2.0, 2.2, 1.8, 2.0]}).iloc[0]
    assert row["ratio"] == pytest.approx(2.0)
    assert row["ratio_low"] < 2.0 < row["ratio_high"]
    assert (row["n_a"], row["n_b"], row["verdict"], row["flag"]) == (4, 4, "changed", "+")


def test_three_runs_per_side_cannot_support_a_95_percent_interval() -> None:
    row = compare.compare_units({"m": [1.0, 1.01, 0.99]}, {"m": [3.0, 3.01, 2.99]}).iloc[0]
    assert row["verdict"] == "not enough runs" and row["flag"] == ""
    assert math.isnan(row["ratio_low"]) and row["ratio"] == pytest.approx(3.0)


def test_an_interval_within_the_threshold_is_unchanged_and_one_across_it_cannot_tell() -> None:
    tight = compare.compare_units(
        {"m": [1.0, 1.001, 0.999, 1.0]}, {"m": [1.02, 1.021, 1.019, 1.02]}
    )
    loose = compare.compare_units({"m": [1.0, 1.3, 0.8, 1.1]}, {"m": [1.1, 1.4, 0.9, 1.2]})
    assert tight["verdict"].tolist() == ["unchanged"]
    assert loose["verdict"].tolist() == ["cannot tell"]


def test_values_around_zero_are_compared_as_a_shift_of_the_baseline() -> None:
    row = compare.compare_units({"m": [0.0, 1.0, 2.0, 1.0]}, {"m": [4.0, 5.0, 6.0, 5.0]}).iloc[0]
    assert row["ratio"] == pytest.approx(5.0) and row["verdict"] == "changed"


def test_only_metrics_present_on_both_sides_are_compared() -> None:
    table = compare.compare_units({"a": [1.0], "b": [2.0]}, {"b": [2.0], "c": [1.0]})
    assert table["metric"].tolist() == ["b"]


def test_negative_threshold_is_rejected() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        compare.compare_units({}, {}, threshold=-1)


def test_runs_that_differ_only_by_per_run_noise_are_flagged_at_most_5_percent_of_the_time() -> None:
    """The failure of the old rule: whole runs shift with machine load (here 10 % per run)."""
    rng = np.random.default_rng(7)
    trials, metrics = 100, 30
    flagged = sum(
        int(
            compare.compare_units(
                {f"m{i}": _runs(rng, 1.0, 5, 0.10) for i in range(metrics)},
                {f"m{i}": _runs(rng, 1.0, 5, 0.10) for i in range(metrics)},
                threshold=0.1,
            )["flag"]
            .ne("")
            .sum()
        )
        for _ in range(trials)
    )
    rate = flagged / (trials * metrics)
    print(f"false-flag rate {rate:.4f} over {trials * metrics} metric comparisons, 5 runs/side")
    assert rate <= 0.05


def test_a_planted_50_percent_regression_is_caught_in_nine_trials_of_ten() -> None:
    rng = np.random.default_rng(8)
    trials = 100
    flags = [
        compare.compare_units(
            {"m": _runs(rng, 1.0, 5, 0.05)}, {"m": _runs(rng, 1.5, 5, 0.05)}, threshold=0.1
        )["flag"][0]
        for _ in range(trials)
    ]
    power = flags.count("+") / trials
    print(f"power {power:.2f} for a +50 % change, 5 runs per side, 5 % run-to-run spread")
    assert power >= 0.9 and "-" not in flags


def test_the_interval_alone_has_the_size_it_claims() -> None:
    """With threshold 0 a flag means "the 95 % interval excludes 1": at most ~5 % by chance."""
    rng = np.random.default_rng(9)
    trials = 2000
    table = compare.compare_units(
        {f"m{i}": _runs(rng, 1.0, 6, 0.10) for i in range(trials)},
        {f"m{i}": _runs(rng, 1.0, 6, 0.10) for i in range(trials)},
        threshold=0.0,
    )
    rate = float(table["flag"].ne("").mean())
    print(f"size {rate:.4f} over {trials} comparisons, 6 runs per side")
    assert rate <= 0.05 + 3 * (0.05 * 0.95 / trials) ** 0.5


def test_a_noise_floor_above_the_threshold_becomes_the_metrics_limit() -> None:
    a = {"m": [1.0, 1.01, 0.99, 1.0, 1.02]}
    b = {"m": [1.15, 1.16, 1.14, 1.15, 1.17]}
    plain = compare.compare_units(a, b, threshold=0.1)
    floored = compare.compare_units(a, b, threshold=0.1, floors={"m": 0.3})
    assert plain["verdict"][0] == "changed"
    assert floored["threshold"][0] == 0.3 and floored["verdict"][0] == "unchanged"


def test_a_floor_below_the_threshold_changes_nothing() -> None:
    table = compare.compare_units({"m": [1.0] * 4}, {"m": [1.0] * 4}, floors={"m": 0.01})
    assert table["threshold"][0] == 0.1


def test_pairs_are_compared_through_their_ratios() -> None:
    load = [1.0, 1.6, 0.8, 1.3, 1.1, 0.9, 1.5]  # the machine's load moved both runs of a pair
    a = {"m": [x for x in load]}
    b = {"m": [x * 1.3 for x in load]}
    table = compare.compare_pairs(a, b, threshold=0.1)
    assert table["verdict"][0] == "changed" and table["ratio"][0] == pytest.approx(1.3)
    assert compare.compare_units(a, b, threshold=0.1)["verdict"][0] == "cannot tell"


def test_fewer_than_six_pairs_are_not_enough() -> None:
    table = compare.compare_pairs({"m": [1.0] * 5}, {"m": [2.0] * 5})
    assert table["verdict"][0] == "not enough runs"


def test_a_pair_missing_one_side_is_left_out() -> None:
    table = compare.compare_pairs({"m": [1.0, math.nan, 1.0]}, {"m": [1.0, 1.0, math.nan]})
    assert (table["n_a"][0], table["n_b"][0]) == (1, 1)


def test_paired_compare_command_lists_how_a_and_b_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def runs(side: str, value: float) -> list[str]:
        frame = headline_frame(
            [Headline(metric="connection_time", variant="naive", value=value, unit="s")]
        )
        return [
            str(
                results.save(
                    frames={"headline": frame},
                    experiment="retry",
                    params={"seed": 1 if side == "a" else 2},
                    out_dir=tmp_path / side,
                ).path
            )
            for _ in range(6)
        ]

    assert main(["compare", "--paired", *runs("a", 1.0), "--vs", *runs("b", 2.0)]) == 0
    out = capsys.readouterr().out
    assert "note: A and B differ in seed: 1 -> 2" in out
    assert "changed (+) up" in out


def test_paired_compare_names_each_unlike_run_of_a_side_once(tmp_path: Path) -> None:
    frame = headline_frame(
        [Headline(metric="connection_time", variant="naive", value=1.0, unit="s")]
    )

    def run(side: str, seed: int) -> str:
        saved = results.save(
            frames={"headline": frame},
            experiment="retry",
            params={"seed": seed},
            out_dir=tmp_path / side,
        )
        return str(saved.path)

    side_a = [run("a", 1), run("a", 1), run("a", 2)]
    side_b = [run("b", 3), run("b", 3), run("b", 3)]
    with pytest.raises(ConfigError) as refused:
        compare.compare_paths(side_a, side_b, paired=True)
    assert str(refused.value).count("seed: 1 -> 2") == 1


# What cannot be compared is listed, and what makes the runs unlike comes first.


def _metric_run(tmp_path: Path, values: dict[str, float], **params: object) -> str:
    frame = headline_frame(
        [Headline(metric=m, variant="naive", value=v, unit="s") for m, v in values.items()]
    )
    run = results.save(
        frames={"headline": frame}, experiment="retry", params=params or None, out_dir=tmp_path
    )
    return str(run.path)


def test_metrics_only_one_side_has_are_listed_under_only_in_a_and_only_in_b(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _metric_run(tmp_path, {"shared": 1.0, "dropped": 2.5})
    b = _metric_run(tmp_path, {"shared": 1.0, "added": 0.75})
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    only_a = out.split("only in A (1, not compared: no value in B's runs):\n")[1].splitlines()[0]
    only_b = out.split("only in B (1, not compared: no value in A's runs):\n")[1].splitlines()[0]
    assert only_a.split() == ["dropped/naive", "[s]", "A", "=", "2.5"]
    assert only_b.split() == ["added/naive", "[s]", "B", "=", "0.75"]
    assert "1 only in A (not compared), 1 only in B (not compared)" in out


def test_compare_units_keeps_one_sided_metrics_with_their_median() -> None:
    table = compare.compare_units({"a": [1.0, 3.0], "b": [2.0]}, {"b": [2.0], "c": [math.nan]})
    assert table.attrs["only_a"] == {"a": 2.0}
    assert table.attrs["only_b"] == {}  # c has no value in B either


def test_paired_compare_lists_a_metric_only_b_has(tmp_path: Path) -> None:
    a = [_metric_run(tmp_path / "a", {"m": 1.0}) for _ in range(6)]
    b = [_metric_run(tmp_path / "b", {"m": 1.0, "n": 2.0}) for _ in range(6)]
    table = compare.compare_paths(a, b, paired=True)
    assert table.attrs["only_b"] == {"n/naive [s]": 2.0}


def test_parameter_differences_are_printed_before_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _metric_run(tmp_path, {"m": 1.0}, quick=True)
    b = _metric_run(tmp_path, {"m": 1.0}, quick=False)
    assert main(["compare", a, b, "--allow-different"]) == 0
    lines = capsys.readouterr().out.splitlines()
    note = next(i for i, line in enumerate(lines) if "quick: True -> False" in line)
    header = next(i for i, line in enumerate(lines) if line.startswith("metric "))
    assert lines[note].startswith("note: compared although different") and note < header


def _direction_side(
    tmp_path: Path, value: float, *, better: str | None, seed: int, metric: str = "throughput"
) -> list[str]:
    """4 runs of one pgbouncer headline (2 % scatter); ``better=None``: saved without it."""
    rng = np.random.default_rng(seed)
    paths = []
    for _ in range(4):
        item = Headline(
            metric=metric,
            variant="improved",
            value=value * rng.lognormal(0, 0.02),
            unit="rps",
            better=better or "lower",
        )
        frame = headline_frame([item])
        if better is None:
            frame = frame.drop(columns="better")
        run = results.save(frames={"headline": frame}, experiment="report", out_dir=tmp_path)
        paths.append(str(run.path))
    return paths


def test_compare_calls_a_higher_throughput_better_when_higher_is_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _direction_side(tmp_path / "a", 100.0, better="higher", seed=1)
    b = _direction_side(tmp_path / "b", 150.0, better="higher", seed=2)
    assert main(["compare", *a, "--vs", *b]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "throughput" in x)
    assert line.endswith("changed (+) up: better")


def test_compare_calls_a_higher_time_worse_when_lower_is_better(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _direction_side(tmp_path / "a", 100.0, better="lower", seed=1)
    b = _direction_side(tmp_path / "b", 150.0, better="lower", seed=2)
    assert main(["compare", *a, "--vs", *b]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "throughput" in x)
    assert line.endswith("changed (+) up: worse")


def test_compare_says_only_up_or_down_for_runs_saved_without_a_better_direction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _direction_side(tmp_path / "a", 100.0, better=None, seed=1)
    b = _direction_side(tmp_path / "b", 50.0, better=None, seed=2)
    assert main(["compare", *a, "--vs", *b]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "throughput" in x)
    assert line.endswith("changed (-) down")


def test_a_variant_measured_with_another_candidate_is_another_metric(tmp_path: Path) -> None:
    def run(label: str) -> results.Run:
        item = Headline(
            metric="suite_runtime", variant="improved", value=3.0, unit="s", label=label
        )
        frame = headline_frame([item])
        return results.save(frames={"headline": frame}, experiment="report", out_dir=tmp_path)

    rollback = compare.key_metrics(run("rollback (workers=1) (interval: the range of 4)"))
    template = compare.key_metrics(run("template (workers=1)"))
    assert list(rollback.index) == ["report: suite_runtime/improved (rollback, workers=1) [s]"]
    assert list(template.index) == ["report: suite_runtime/improved (template, workers=1) [s]"]
