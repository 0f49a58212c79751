"""Machine noise is recorded with each run, marks loaded runs, and compare warns on a mismatch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from perfkit import compare, labrun, noise, results
from perfkit.headlines import Headline, headline_frame
from perfkit.lab import LabParams, Results

BUSY_S = 0.6


def test_cpu_of_a_child_process_counts_as_the_runs_own() -> None:
    start = noise.snapshot()
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BUSY_S}: pass",
        ],
        check=True,
    )
    record = noise.record(start)
    assert record["own_cpu_s"] >= BUSY_S * 0.8
    assert record["busy_cpu_s"] >= record["own_cpu_s"] * 0.9  # the machine saw that work too


def test_record_holds_the_documented_fields() -> None:
    start = noise.snapshot()
    time.sleep(0.05)
    record = noise.record(start)
    expected = {"cores", "wall_s", "load_1m_before", "load_1m_after", "busy_cpu_s", "own_cpu_s"}
    assert expected | {
        "other_cpu_s",
        "other_cpu_share",
        "steal_s",
        "cpu_freq_mhz",
        "loaded",
    } <= set(record)
    assert record["cores"] >= 1 and record["wall_s"] >= 0.05


@pytest.mark.parametrize(
    ("record", "loaded"),
    [
        ({"cores": 2, "load_1m_before": 0.2, "other_cpu_share": 0.05}, False),
        ({"cores": 2, "load_1m_before": 1.8, "other_cpu_share": 0.05}, False),
        ({"cores": 2, "load_1m_before": 0.2, "other_cpu_share": 0.5}, True),
        ({"cores": 2, "load_1m_before": 1.5}, True),
    ],
    ids=["quiet", "our own previous run before it", "busy during the run", "only load known"],
)
def test_a_run_is_loaded_when_other_work_took_half_a_core(
    record: dict[str, float], loaded: bool
) -> None:
    assert noise.is_loaded(record) is loaded


def test_differences_warn_when_only_one_side_ran_under_load() -> None:
    quiet = {"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.0}
    busy = {"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.5}
    assert noise.differences([quiet, quiet], [quiet, quiet]) == []
    (warning,) = noise.differences([quiet, quiet], [quiet, busy])
    assert "1 of 2 on side B" in warning and "interleave" in warning


def test_runs_from_before_noise_was_recorded_are_named() -> None:
    (warning,) = noise.differences([None], [{"cores": 2}])
    assert "not recorded for 1 run(s) of A" in warning


def test_a_report_run_combines_its_labs_records_worst_first() -> None:
    combined = noise.combine(
        [{"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.7}, None, {"cores": 2}]
    )
    assert combined is not None and combined["loaded"] and combined["runs"] == 2


class _Params(LabParams):
    pass


class _TinyLab:
    """The least a lab is: no server, one headline."""

    name = "retry"

    def server_settings(self, params: LabParams) -> None:
        return None

    def run(self, params: LabParams, server: object, progress: object) -> Results:
        frame = headline_frame([Headline(metric="m", variant="naive", value=1.0, unit="s")])
        return Results(frames={"headline": frame})


def test_every_saved_lab_run_carries_its_noise_record(tmp_path: Path) -> None:
    outcome = labrun.run_and_save(_TinyLab(), _Params(), progress=lambda _: None, out_dir=tmp_path)  # type: ignore[arg-type]
    run = results.load(tmp_path / "retry" / outcome.run_id)
    record = noise.of_run(run.metadata)
    assert record is not None and "loaded" in record


def test_compare_prints_the_noise_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = headline_frame([Headline(metric="m", variant="naive", value=1.0, unit="s")])
    quiet = {"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.0}
    busy = {"cores": 2, "load_1m_before": 0.1, "other_cpu_share": 0.5}
    a = results.save(
        frames={"headline": frame}, experiment="retry", out_dir=tmp_path, extra={"noise": quiet}
    )
    b = results.save(
        frames={"headline": frame}, experiment="retry", out_dir=tmp_path, extra={"noise": busy}
    )
    table = compare.compare_paths(a.path, b.path)
    assert "warning: runs made under load" in compare.format_table(table, threshold=0.1)
    assert isinstance(table, pd.DataFrame)
