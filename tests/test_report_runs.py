"""``perfkit report --runs K``: K reports with the lab order rotated, ready for compare."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfkit import report
from perfkit.cli import main
from perfkit.errors import ConfigError


def test_each_repetition_rotates_the_lab_order_by_one() -> None:
    assert report.interleaved_orders(["retry", "pool", "lifecycle"], 4) == [
        ["retry", "pool", "lifecycle"],
        ["pool", "lifecycle", "retry"],
        ["lifecycle", "retry", "pool"],
        ["retry", "pool", "lifecycle"],
    ]


def test_every_lab_runs_in_every_position_over_as_many_repetitions_as_labs() -> None:
    orders = report.interleaved_orders(["a", "b", "c", "d"], 4)
    for lab in "abcd":
        assert sorted(order.index(lab) for order in orders) == [0, 1, 2, 3]


@pytest.mark.parametrize("runs", [0, -1, True, 1.5])
def test_runs_must_be_a_whole_number_of_at_least_one(runs: object) -> None:
    with pytest.raises(ConfigError, match="runs"):
        report.interleaved_orders(["retry"], runs)  # type: ignore[arg-type]


def test_report_with_zero_runs_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["report", "--quick", "--runs", "0", "--data-dir", str(tmp_path)]) == 2
    assert "runs must be a whole number" in capsys.readouterr().err
