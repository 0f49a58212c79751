"""Bad input files and out-of-range integers: one error line naming the file, exit 2.

Exit 1 is ``compare --fail-on-change``'s "a metric changed", so an unreadable
input must never exit 1 (nor print a traceback). Nothing here starts a kernel
or a server: every case is refused while the inputs are read and checked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from perfkit import cli, registry
from perfkit.cli import main
from perfkit.errors import ConfigError
from perfkit.validate import INT64_MAX

REPO = Path(__file__).resolve().parent.parent
LABS_DIR = REPO / "perfkit" / "labs"
STREAMING_NB = LABS_DIR / "04_streaming.ipynb"
REFERENCE_RUN = next((REPO / "data" / "reference" / "report").iterdir())
PERFKIT = Path(sys.executable).parent / "perfkit"


@pytest.fixture(autouse=True)
def _no_leak_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """`perfkit run` first removes servers of dead runs; these tests leave other runs alone."""
    monkeypatch.setattr(cli, "_sweep_dead_owners", lambda: None)


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; assert exit 2 and one error line without a traceback; return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfkit: error: "), err
    return lines[0]


def _no_runs(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


# -- perfkit run: parameters files --------------------------------------------


def test_run_with_non_utf8_params_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "latin1.yaml"
    params.write_bytes("rows: 5 # café\n".encode("latin-1"))
    out = tmp_path / "runs"
    line = _refused(["run", str(STREAMING_NB), "-f", str(params), "--output-dir", str(out)], capsys)
    assert str(params) in line and "not UTF-8" in line
    assert _no_runs(out)


def test_run_with_params_file_whose_tagged_value_is_wrong_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "bad.yaml"
    params.write_text('rows: !!int "many"\n')  # PyYAML raises ValueError, not YAMLError
    out = tmp_path / "runs"
    line = _refused(["run", str(STREAMING_NB), "-f", str(params), "--output-dir", str(out)], capsys)
    assert str(params) in line and "not valid YAML" in line
    assert _no_runs(out)


def test_run_with_yaml_syntax_error_reports_it_on_one_line_with_its_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "broken.yaml"
    params.write_text("rows: 5\nmethods: [fetchall,\n")
    argv = ["run", str(STREAMING_NB), "-f", str(params)]
    line = _refused([*argv, "--output-dir", str(tmp_path / "runs")], capsys)
    assert f"{params} is not valid YAML at line 3" in line


# -- perfkit run: the notebook ------------------------------------------------


def test_run_on_a_notebook_that_is_not_json_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = tmp_path / "notes.ipynb"
    notebook.write_text("print('a script, not a notebook')\n")
    out = tmp_path / "runs"
    line = _refused(["run", str(notebook), "--output-dir", str(out)], capsys)
    assert str(notebook) in line and "not JSON" in line
    assert _no_runs(out)


def test_run_on_a_notebook_that_is_not_utf8_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = tmp_path / "latin1.ipynb"
    notebook.write_bytes('{"cells": [], "x": "café"}'.encode("latin-1"))
    line = _refused(["run", str(notebook), "-p", "x", "1", "--output-dir", str(tmp_path)], capsys)
    assert str(notebook) in line and "not UTF-8" in line


def test_run_on_json_that_is_not_a_notebook_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notebook = tmp_path / "list.ipynb"
    notebook.write_text("[1, 2, 3]\n")
    line = _refused(["run", str(notebook), "--output-dir", str(tmp_path / "runs")], capsys)
    assert str(notebook) in line and "not a valid Jupyter notebook" in line


def test_console_script_prints_no_traceback_for_a_notebook_that_is_not_json(
    tmp_path: Path,
) -> None:
    notebook = tmp_path / "notes.ipynb"
    notebook.write_text("not json\n")
    done = subprocess.run(
        [str(PERFKIT), "run", str(notebook), "--output-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"notebook {notebook} is not JSON" in done.stderr


# -- perfkit run: integer parameters --------------------------------------------


def test_run_refuses_an_int_parameter_beyond_64_bits_before_any_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    argv = ["run", str(STREAMING_NB), "-p", "rows", "99999999999999999999999"]
    line = _refused([*argv, "--output-dir", str(out)], capsys)
    assert "04_streaming.ipynb: parameter 'rows' must fit in a signed 64-bit integer" in line
    assert _no_runs(out)  # refused before a run directory, a kernel or a server


def test_run_refuses_an_int_beyond_64_bits_inside_a_list_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(LABS_DIR / "02_pool_settings.ipynb"), "-p", "pool_sizes", f"[2, {2**64}]"]
    line = _refused([*argv, "--output-dir", str(tmp_path / "runs")], capsys)
    assert "parameter 'pool_sizes' must fit in a signed 64-bit integer" in line


def test_run_refuses_an_int_too_large_for_a_float_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(LABS_DIR / "01_connection_retry.ipynb"), "-p", "deadline", "9" * 400]
    line = _refused([*argv, "--output-dir", str(tmp_path / "runs")], capsys)
    assert "parameter 'deadline' is too large for a float" in line


def _int_parameters(lab: typing.Any) -> list[tuple[str, object]]:
    """(name, a value just past int64) for each int or list-of-int parameter of a lab."""
    out: list[tuple[str, object]] = []
    hints = typing.get_type_hints(lab.Params)
    for name, p in lab.Params.parameters().items():
        if int in p.accepted and float not in p.accepted:
            out.append((name, INT64_MAX + 1))
        elif "tuple[int," in str(hints[name]):
            out.append((name, [INT64_MAX + 1]))
    return out


@pytest.mark.parametrize("lab", registry.LABS, ids=lambda lab: lab.name)
def test_every_int_parameter_of_every_lab_is_refused_beyond_64_bits(lab: typing.Any) -> None:
    cases = _int_parameters(lab)
    assert cases, "every lab has int parameters (seed at least)"
    for name, value in cases:
        with pytest.raises(ConfigError, match=f"parameter '{name}' must fit in a signed 64-bit"):
            lab.Params.from_mapping({name: value})


def test_streaming_batch_size_is_refused_beyond_a_32_bit_fetch_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(STREAMING_NB), "-p", "batch_size", str(2**31)]
    line = _refused([*argv, "--output-dir", str(tmp_path / "runs")], capsys)
    assert "batch_size must be <= 2147483647" in line


def test_pgbouncer_max_connections_is_refused_beyond_postgres_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(LABS_DIR / "05_pgbouncer.ipynb"), "-p", "max_connections", "300000"]
    line = _refused([*argv, "--output-dir", str(tmp_path / "runs")], capsys)
    assert "parameter 'max_connections' must be <= 262143" in line


# -- perfkit compare: corrupt runs ---------------------------------------------


@pytest.fixture
def run_copy(tmp_path: Path) -> Path:
    """A copy of the reference report run, to damage."""
    return Path(shutil.copytree(REFERENCE_RUN, tmp_path / REFERENCE_RUN.name))


def _compare_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    return _refused(["compare", str(REFERENCE_RUN), str(run), "--fail-on-change"], capsys)


def test_compare_with_corrupt_metadata_exits_2_not_1_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "metadata.json").write_text('{"run_id": ')
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy / 'metadata.json'} is not valid JSON" in line


def test_compare_with_metadata_that_is_not_an_object_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "metadata.json").write_text("[1, 2]\n")
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy / 'metadata.json'} must hold a JSON object" in line


def test_compare_with_metadata_whose_frames_are_malformed_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "metadata.json").write_text('{"experiment": "report", "frames": {"x": 1}}\n')
    line = _compare_refused(run_copy, capsys)
    assert str(run_copy / "metadata.json") in line and '"frames" must map' in line


def test_compare_with_unparsable_csv_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "headline.csv").write_text('metric,variant,value\n"never closed\n')
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy / 'headline.csv'} is not a readable CSV file" in line


def test_compare_with_non_utf8_csv_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "headline.csv").write_bytes(b"\xff\xfe\x00metric")
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy / 'headline.csv'} is not UTF-8" in line


def test_compare_with_unreadable_csv_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "headline.csv").unlink()
    (run_copy / "headline.csv").mkdir()  # unreadable as a file, also for root
    line = _compare_refused(run_copy, capsys)
    assert f"cannot read {run_copy / 'headline.csv'}" in line


def test_compare_with_missing_csv_exits_2_naming_the_file(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "headline.csv").unlink()
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy / 'headline.csv'} is missing" in line


def test_compare_with_csv_lacking_the_headline_columns_exits_2_naming_the_run(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_copy / "headline.csv").write_text("garbage\nxx\n")
    line = _compare_refused(run_copy, capsys)
    assert f"{run_copy}: its frames do not hold the headlines of 'report'" in line


def test_compare_refuses_a_frame_file_outside_the_run_directory(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """metadata.json names each frame's CSV; a path such as ../x.csv would read elsewhere."""
    meta = json.loads((run_copy / "metadata.json").read_text())
    meta["frames"][next(iter(meta["frames"]))]["file"] = "../outside.csv"
    (run_copy / "metadata.json").write_text(json.dumps(meta))
    line = _compare_refused(run_copy, capsys)
    assert "inside the run directory" in line
