"""Every notebook in notebooks/ is committed clean, with a parameters cell papermill can fill."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_the_labs_and_the_report_notebook_are_all_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_connection_retry.ipynb",
        "02_pool_settings.ipynb",
        "03_container_lifecycle.ipynb",
        "04_streaming.ipynb",
        "05_pgbouncer.ipynb",
        "99_report.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_no_outputs(path: Path) -> None:
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_parameters_cell_then_their_validation(path: Path) -> None:
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "from_notebook(globals())" in code[1].source or "validate_globals" in code[1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_python3_kernel(path: Path) -> None:
    assert nbformat.read(path, as_version=4).metadata["kernelspec"] == {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
