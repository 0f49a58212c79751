"""perfkit calibrate: this machine's run-to-run spread per metric, and compare's use of it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from perfkit import calibrate, results
from perfkit.cli import main
from perfkit.errors import ConfigError
from perfkit.headlines import Headline, headline_frame


def _run(out: Path, value: float, seed: int = 1) -> str:
    frame = headline_frame([Headline(metric="wait", variant="naive", value=value, unit="s")])
    saved = results.save(
        frames={"headline": frame}, experiment="retry", params={"seed": seed}, out_dir=out
    )
    return str(saved.path)


def test_spread_is_the_relative_standard_deviation_of_a_run() -> None:
    assert calibrate.spread([1.0, 1.0, 1.0]) == 0.0
    assert calibrate.spread([1.0, 1.1, 0.9, 1.05]) == pytest.approx(0.085, abs=0.01)


def test_fewer_than_three_runs_have_no_spread() -> None:
    assert math.isnan(calibrate.spread([1.0, 2.0]))


def test_values_around_zero_spread_relative_to_their_median() -> None:
    assert calibrate.spread([-1.0, 1.0, 2.0]) == pytest.approx(1.528, abs=0.01)


def test_calibrate_needs_three_alike_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 3 runs"):
        calibrate.calibrate([_run(tmp_path, 1.0), _run(tmp_path, 1.1)], out_dir=tmp_path)
    unlike = [_run(tmp_path, 1.0), _run(tmp_path, 1.0), _run(tmp_path, 1.0, seed=2)]
    with pytest.raises(ConfigError, match="made alike"):
        calibrate.calibrate(unlike, out_dir=tmp_path)


def test_a_calibration_is_saved_and_read_back(tmp_path: Path) -> None:
    made = calibrate.calibrate([_run(tmp_path, v) for v in (1.0, 1.2, 0.8)], out_dir=tmp_path)
    floors = calibrate.floors_of(results.load(made.path))
    assert set(floors) == {"wait/naive [s]"} and 0.1 < floors["wait/naive [s]"] < 0.3


def test_compare_judges_a_metric_by_the_floor_of_a_matching_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    calibrate.calibrate([_run(tmp_path / "c", v) for v in (1.0, 1.3, 0.75, 1.1)], out_dir=data)
    a = [_run(tmp_path / "a", v) for v in (1.0, 1.01, 0.99, 1.0)]
    b = [_run(tmp_path / "b", v) for v in (1.2, 1.21, 1.19, 1.2)]
    assert main(["compare", *a, "--vs", *b, "--data-dir", str(data), "--fail-on-change"]) == 0
    out = capsys.readouterr().out
    assert "noise floors from calibration" in out and "unchanged" in out
    assert main(["compare", *a, "--vs", *b, "--calibration", "none", "--fail-on-change"]) == 1


def test_a_calibration_of_other_parameters_is_not_applied(tmp_path: Path) -> None:
    data = tmp_path / "data"
    calibrate.calibrate([_run(tmp_path / "c", v, seed=9) for v in (1.0, 1.5, 0.6)], out_dir=data)
    like = results.load(_run(tmp_path / "a", 1.0))
    assert calibrate.matching(like, data) is None


def test_calibrate_command_prints_each_metrics_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = [_run(tmp_path, v) for v in (1.0, 1.2, 0.8)]
    assert main(["calibrate", *runs, "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "wait/naive [s]" in out and "%" in out and "saved" in out
