"""`perfkit report`: every lab notebook, then the summary, into one HTML report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from perfkit import findings, pages, registry, report, results, summary
from perfkit.cli import main
from perfkit.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
# which lab notebook measures which experiment of the baseline table
LAB_OF_EXPERIMENT = {
    "retry": "01_connection_retry.ipynb",
    "lifecycle": "03_container_lifecycle.ipynb",
}
NUMBER = re.compile(r"^-?\d+(\.\d+)? (s|ms|MiB)( \[[^]]+\])?( \(n=\d+\))?$")


def _lab(folder: Path, name: str, parameters: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell(body),
        ],
        metadata={"kernelspec": KERNELSPEC},
    )
    path = folder / name
    nbformat.write(nb, path)
    return path


def _notebooks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / report.SUMMARY_NOTEBOOK, folder)
    return folder


def _table(html: str, table_id: str) -> dict[str, dict[str, str]]:
    table = BeautifulSoup(html, "html.parser").find("table", id=table_id)
    assert table is not None, f"no table {table_id} in the report"
    head = [th.get_text(strip=True) for th in table.find("thead").find_all("th")]
    rows = {}
    for tr in table.find("tbody").find_all("tr"):
        cells = [td.get_text(strip=True) for td in tr.find_all(["td", "th"])]
        rows[cells[0]] = dict(zip(head, cells, strict=True))
    return rows


def test_discover_lists_the_registered_labs_in_report_order(tmp_path: Path) -> None:
    labs, summary_nb = report.discover(NOTEBOOKS)
    assert [p.name for p in labs] == [lab.notebook for lab in registry.LABS]
    assert summary_nb.name == "99_report.ipynb"


def test_discover_can_pick_labs_by_name(tmp_path: Path) -> None:
    labs, _ = report.discover(NOTEBOOKS, ["streaming", "retry"])
    assert [p.name for p in labs] == ["04_streaming.ipynb", "01_connection_retry.ipynb"]


def test_missing_summary_notebook_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="summary notebook"):
        report.discover(tmp_path)


def test_missing_lab_notebook_is_a_config_error_naming_it(tmp_path: Path) -> None:
    folder = _notebooks_dir(tmp_path)
    with pytest.raises(ConfigError, match=r"01_connection_retry\.ipynb"):
        report.discover(folder, ["retry"])


def test_labs_receive_the_report_settings_their_params_declare(tmp_path: Path) -> None:
    values = report.lab_parameters(
        NOTEBOOKS / "04_streaming.ipynb", backend="local", quick=True, data_dir=tmp_path
    )
    assert values == {"backend": "local", "quick": True, "out_dir": str(tmp_path)}


def test_unknown_lab_name_fails_before_any_notebook_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "--labs", "retry", "nosuch", "--output-dir", str(tmp_path / "runs")])
    assert code == 2
    assert "unknown lab 'nosuch'; the labs are: retry, pool" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.notebook
def test_failing_lab_is_reported_and_its_rows_say_not_measured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _notebooks_dir(tmp_path)
    parameters = registry.get("retry").Params.notebook_cell()
    _lab(folder, "01_connection_retry.ipynb", parameters, "raise ValueError('lab broke')")
    code = main(
        [
            "report",
            "--labs",
            "retry",
            "--notebooks-dir",
            str(folder),
            "--output-dir",
            str(tmp_path / "runs"),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 2
    assert "FAILED 01_connection_retry.ipynb" in out and "ValueError: lab broke" in out
    (html_path,) = (tmp_path / "runs").glob("*/report.html")
    html = html_path.read_text()
    labs = _table(html, "lab-runs")
    assert labs["01_connection_retry.ipynb"]["Status"] == "failed"
    assert "ValueError: lab broke" in labs["01_connection_retry.ipynb"]["Error"]
    baseline = _table(html, "baseline")
    assert baseline["Test Suite Runtime"]["Measured naive"].startswith(
        "not measured (no results of the lifecycle lab"
    )
    soup = BeautifulSoup(html, "html.parser")
    headings = [h.get_text(strip=True).rstrip("¶") for h in soup.find_all("h2")]
    assert headings[0] == "Findings"  # the answers come first
    answers = soup.find("div", id="findings").find_all("div", class_="finding")
    assert [a["data-experiment"] for a in answers] == [q.experiment for q in findings.QUESTIONS]
    assert {a["data-status"] for a in answers} == {"not measured"}
    assert (
        html_path.parent / "01_connection_retry.ipynb"
    ).is_file()  # executed lab kept for debugging
    record = json.loads((html_path.parent / "report.json").read_text())
    assert [(Path(n["notebook"]).name, n["ok"]) for n in record["notebooks"]] == [
        ("01_connection_retry.ipynb", False),
        ("99_report.ipynb", True),
    ]
    assert all(n["overhead_s"] > 0 for n in record["notebooks"])
    saved = results.latest(summary.REPORT_EXPERIMENT, tmp_path / "data")
    assert saved.frames["baseline"]["Metric"].tolist()[0] == "Database Connection Time"


@pytest.mark.notebook
@pytest.mark.e2e
def test_report_quick_end_to_end_has_measured_table_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "report",
            "--quick",
            "--backend",
            "local",
            "--notebooks-dir",
            str(NOTEBOOKS),
            "--output-dir",
            str(tmp_path / "runs"),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (html_path,) = (tmp_path / "runs").glob("*/report.html")
    html = html_path.read_text()
    baseline = _table(html, "baseline")
    assert list(baseline) == [
        "Database Connection Time",
        "Test Suite Runtime",
        "Memory Usage",
        "Container Startup",
    ]
    present = {e for e, nb in LAB_OF_EXPERIMENT.items() if (NOTEBOOKS / nb).is_file()}
    assert present, "no lab notebook of the baseline table exists"
    rows_by_experiment = {
        "retry": ["Database Connection Time"],
        "lifecycle": ["Test Suite Runtime", "Memory Usage", "Container Startup"],
    }
    for experiment in present:
        for metric in rows_by_experiment[experiment]:
            for column in ("Measured naive", "Measured improved"):
                assert NUMBER.match(baseline[metric][column]), (metric, column, baseline[metric])
    assert baseline["Database Connection Time"]["Claimed current"] == "500ms × 30 = 15s"
    labs = _table(html, "lab-runs")
    assert set(labs) == {p.name for p in report.discover(NOTEBOOKS)[0]}
    assert {row["Status"] for row in labs.values()} == {"ok"}
    images = BeautifulSoup(html, "html.parser").find_all("img")
    assert len(images) >= 1 + len(labs)  # the baseline plot plus at least one figure per lab
    assert all(img["src"].startswith("data:image/png;base64,") for img in images)
    assert "from_notebook" not in html  # code hidden
    for page in pages.run_pages(html_path.parent):  # report.html and every lab's page
        assert pages.problems(page) == [], page.name
