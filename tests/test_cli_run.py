"""`perfkit run`: parameters validated before a kernel starts, executed notebook and HTML saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import psutil
import pytest
from papermill.exceptions import PapermillExecutionError

from perfkit import notebooks, registry, report, results
from perfkit.cli import LAB_NAMES, main, resolve_notebook
from perfkit.errors import ConfigError
from perfkit.lab import Lab
from perfkit.postgres import leaks

TINY = Path(__file__).parent / "notebooks" / "tiny.ipynb"
SERVER_NB = Path(__file__).parent / "notebooks" / "server.ipynb"
PERFKIT = Path(sys.executable).parent / "perfkit"


def _run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []


def test_unknown_parameter_exits_2_naming_it_and_starts_no_kernel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(TINY), "-p", "xx", "3", "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown parameter xx" in err and "known parameters: fail, label" in err
    assert _run_dirs(tmp_path / "runs") == []  # nothing executed, not even a run directory


def test_ill_typed_parameter_exits_2_naming_expected_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(TINY), "-p", "x", "2.5", "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "parameter 'x' expects int (default 2), got float 2.5" in err
    assert _run_dirs(tmp_path / "runs") == []


def test_ill_typed_value_from_params_file_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "p.yaml"
    params_file.write_text("fail: 'no'\n")
    code = main(["run", str(TINY), "-f", str(params_file), "--output-dir", str(tmp_path / "r")])
    assert code == 2
    assert "parameter 'fail' expects bool" in capsys.readouterr().err


def test_cli_values_are_typed_by_the_notebook_defaults() -> None:
    assert notebooks.parse_cli_parameters(
        TINY, [("x", "3"), ("scale", "2"), ("label", "42"), ("fail", "true")]
    ) == {"x": 3, "scale": 2, "label": "42", "fail": True}


def test_notebook_spec_types_none_defaults_before_the_kernel_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `limit = None` says nothing about its type; the notebook's SPEC says int | None
    code = main(["run", str(TINY), "-p", "limit", "many", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "parameter 'limit' expects int | None (default None), got str 'many'" in (
        capsys.readouterr().err
    )
    assert _run_dirs(tmp_path) == []
    assert notebooks.parse_cli_parameters(TINY, [("limit", "5")]) == {"limit": 5}


def test_notebook_without_parameters_cell_is_a_config_error(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "plain.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ConfigError, match="no code cell tagged 'parameters'"):
        notebooks.validate_parameters(path, {"x": 2})


@pytest.mark.notebook
def test_run_writes_executed_notebook_and_html_without_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, runs = tmp_path / "data", tmp_path / "runs"
    params_file = tmp_path / "p.yaml"
    params_file.write_text(f"out_dir: {data}\nscale: 2\n")
    code = main(
        ["run", str(TINY), "-p", "x", "4", "-f", str(params_file), "--output-dir", str(runs)]
    )
    assert code == 0, capsys.readouterr().err
    (run_dir,) = _run_dirs(runs)
    executed = nbformat.read(run_dir / "tiny.ipynb", as_version=4)
    assert "injected-parameters" in executed.cells[2].metadata.tags
    html = (run_dir / "tiny.html").read_text()
    assert "<img" in html and "validate_globals" not in html
    record = json.loads((run_dir / "tiny.run.json").read_text())
    assert record["ok"] and record["parameters"] == {"out_dir": str(data), "scale": 2, "x": 4}
    assert record["wall_s"] >= record["cells_s"] > 0
    saved = results.latest("tiny", data)
    assert saved.frames["values"]["value"].tolist() == [0, 2, 4, 6]


def test_kernel_is_reached_over_unix_sockets_not_tcp(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    notebooks.execute(TINY, {"out_dir": str(tmp_path)}, output_dir=tmp_path, html=False)
    assert "Kernel is running over TCP" not in capfd.readouterr().err


@pytest.mark.notebook
def test_show_code_keeps_code_in_html(tmp_path: Path) -> None:
    run = notebooks.execute(
        TINY, {"out_dir": str(tmp_path / "d")}, output_dir=tmp_path, show_code=True
    )
    assert "validate_globals" in run.html.read_text()


@pytest.mark.notebook
def test_failing_cell_saves_executed_notebook_and_error_names_the_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            str(TINY),
            "-p",
            "fail",
            "True",
            "-p",
            "out_dir",
            str(tmp_path / "d"),
            "--output-dir",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "cell 3 (In [" in err and "starting `import time`" in err
    assert "RuntimeError: asked to fail with x=2" in err
    (run_dir,) = _run_dirs(tmp_path / "runs")
    executed = nbformat.read(run_dir / "tiny.ipynb", as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.ename for e in errors] == ["RuntimeError"]
    assert "asked to fail" in (run_dir / "tiny.html").read_text()
    assert not json.loads((run_dir / "tiny.run.json").read_text())["ok"]
    assert not (tmp_path / "d").exists()  # the save cell never ran


@pytest.mark.notebook
def test_plain_papermill_with_unknown_parameter_fails_in_the_validation_cell(
    tmp_path: Path,
) -> None:
    # papermill itself only warns about unknown names; the notebook's validation cell rejects them
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(
            str(TINY),
            str(tmp_path / "out.ipynb"),
            parameters={"typo": 1},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    assert info.value.ename == "ConfigError"
    assert "unknown parameter typo" in info.value.evalue


@pytest.mark.notebook
def test_console_script_exits_130_on_interrupt(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            str(PERFKIT),
            "run",
            str(TINY),
            "-p",
            "sleep_s",
            "60",
            "-p",
            "out_dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path / "runs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/tiny.ipynb")):
            time.sleep(0.2)  # papermill writes the output notebook once the kernel is up
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err


@pytest.mark.notebook
@pytest.mark.local
def test_interrupt_while_a_notebook_holds_a_server_leaves_nothing_behind(tmp_path: Path) -> None:
    before = set(leaks.find_leftovers())
    proc = subprocess.Popen(
        [str(PERFKIT), "run", str(SERVER_NB), "--output-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    servers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not servers:
            time.sleep(0.3)
            children = psutil.Process(proc.pid).children(recursive=True)
            servers = [c for c in children if c.name() == "postgres"]
        assert servers, "the notebook never started its server"
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    _, alive = psutil.wait_procs(servers, timeout=30)
    assert alive == []
    assert set(leaks.find_leftovers()) - before == set()


@pytest.mark.notebook
@pytest.mark.parametrize(
    "backend", ["local", pytest.param("docker", marks=[pytest.mark.docker, pytest.mark.slow])]
)
def test_servers_of_a_killed_kernel_are_removed_after_the_run(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "docker":
        request.getfixturevalue("docker_or_skip")
    before = set(leaks.find_leftovers())
    with pytest.raises(Exception, match=r"(?i)kernel"):
        notebooks.execute(
            SERVER_NB,
            {"backend": backend, "kill_kernel": True},
            output_dir=tmp_path,
            progress_bar=False,
            html=False,
        )
    assert set(leaks.find_leftovers()) - before == set()


# A lab by its name: `perfkit run retry`, as `report --labs retry` takes it.


@pytest.mark.parametrize("lab", registry.LABS, ids=lambda lab: lab.name)
def test_a_lab_name_means_the_labs_shipped_notebook(lab: Lab) -> None:
    notebook = resolve_notebook(lab.name)
    assert notebook == report.default_notebooks_dir() / lab.notebook
    assert notebook.is_file()


def test_run_by_lab_name_checks_that_labs_parameters_before_a_kernel_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "retry", "-p", "stratgies", "[]", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown parameter stratgies" in err and "strategies" in err  # the retry lab's
    assert _run_dirs(tmp_path) == []


def test_unknown_lab_name_exits_2_listing_the_labs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "retyr", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown lab 'retyr'" in err
    assert all(lab.name in err for lab in registry.LABS)
    assert _run_dirs(tmp_path) == []


def test_a_notebook_path_that_does_not_exist_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.ipynb"
    assert main(["run", str(missing), "--output-dir", str(tmp_path)]) == 2
    assert f"notebook {missing} not found" in capsys.readouterr().err


def test_the_lab_names_in_help_texts_are_the_registered_labs() -> None:
    assert list(LAB_NAMES) == [lab.name for lab in registry.LABS]


@pytest.mark.notebook
@pytest.mark.slow  # the streaming notebook's quick run, as in test_notebook_streaming.py
def test_a_lab_run_by_name_saves_its_results_under_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = ["run", "streaming", "-p", "quick", "True", "-p", "backend", "local"]
    code = main([*args, "--data-dir", str(data), "--output-dir", str(runs)])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = _run_dirs(runs)
    assert (run_dir / "04_streaming.html").is_file()
    assert results.latest("streaming", data).metadata["params"]["quick"] is True
