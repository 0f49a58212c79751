"""A wheel install runs the report: built, installed into a fresh venv, run in an empty folder.

Behind the ``wheel`` marker (a few minutes: pip resolves every dependency into
the new venv); ``.ci/run`` runs it after the main suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.wheel, pytest.mark.docker]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv holding only the built wheel and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        cwd=root,  # build/ goes here, not into the checkout
    )
    (wheel,) = dist.glob("perfkit-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / "bin"
    subprocess.run([bindir / "python", "-m", "pip", "install", "-q", str(wheel)], check=True)
    return bindir


def test_the_wheel_ships_the_lab_notebooks(installed: Path) -> None:
    code = "import perfkit.report as r; print(list(r.default_notebooks_dir().glob('*')))"
    out = subprocess.run(
        [installed / "python", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "99_report.ipynb" in out and "03_container_lifecycle.ipynb" in out


def test_report_quick_runs_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
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
