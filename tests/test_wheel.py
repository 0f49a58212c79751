"""A wheel install with the lab extra runs the report: built, installed into a fresh venv, run
in an empty folder.

Behind the ``wheel`` marker (a few minutes: pip resolves every dependency into
the new venv); ``.ci/run`` runs it after the main suite.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from wheelbuild import Installed, build_wheel, install

pytestmark = [pytest.mark.wheel, pytest.mark.docker]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding the built wheel with the lab extra."""
    root = tmp_path_factory.mktemp("wheel")
    return install(build_wheel(root), root / "venv", extras="lab").bindir


def test_the_wheel_ships_the_lab_notebooks(installed: Path) -> None:
    code = "import perfkit.report as r; print(list(r.default_notebooks_dir().glob('*')))"
    out = subprocess.run(
        [installed / "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "99_report.ipynb" in out and "03_container_lifecycle.ipynb" in out


def test_report_quick_runs_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    env = Installed(installed, 0.0).env()
    done = subprocess.run(
        [installed / "perfkit", "report", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert list((tmp_path / "runs").glob("*/report.html"))
    assert (tmp_path / "data" / "report").is_dir()
