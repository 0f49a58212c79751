"""The light install: ``pip install perfkit`` without extras runs a suite with the pytest plugin.

Behind the ``wheel`` marker (pip resolves the dependencies into a fresh venv).
The venv holds psycopg, testcontainers, psutil and pytest and what they need;
no pandas, matplotlib, jupyter or dask.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
from wheelbuild import LAB_ONLY, Installed, build_wheel, install

pytestmark = [pytest.mark.wheel, pytest.mark.local]

SUITE = """
import psycopg


def test_gets_its_own_database(perfkit_dsn):
    with psycopg.connect(perfkit_dsn) as conn:
        conn.execute("CREATE TABLE t (x int)")


def test_does_not_see_the_other_tests_table(perfkit_dsn):
    with psycopg.connect(perfkit_dsn) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)
"""


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("light")
    return install(build_wheel(root), root / "venv")


def test_the_light_install_has_none_of_the_lab_packages(light: Installed) -> None:
    installed = set(light.distributions())
    assert "perfkit" in installed and "psycopg" in installed
    assert installed.isdisjoint(LAB_ONLY), sorted(installed & set(LAB_ONLY))


def test_the_plugin_runs_a_suite_from_the_light_install(light: Installed, tmp_path: Path) -> None:
    (tmp_path / "test_light.py").write_text(textwrap.dedent(SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\nperfkit_backend = local\n")
    done = subprocess.run(
        [light.bindir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=light.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_a_lab_command_on_the_light_install_says_which_extra_to_install(
    light: Installed, tmp_path: Path
) -> None:
    done = subprocess.run(
        [light.bindir / "perfkit", "report", "--quick"],
        cwd=tmp_path,
        env=light.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "perfkit report needs the lab extra" in done.stderr
    assert "pip install 'perfkit[lab]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()
