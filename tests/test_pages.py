"""perfkit.pages: what a reader should never see in a page, and whether it fits 1,200 px."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from perfkit import pages

CHROMIUM = pages.chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)


def _executed(*outputs: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("x = 1", outputs=list(outputs))
    return nbformat.v4.new_notebook(cells=[cell])


def test_clean_output_has_no_problems() -> None:
    nb = _executed(
        nbformat.v4.new_output("stream", name="stdout", text="saved ../data/x\n"),
        nbformat.v4.new_output("display_data", data={"text/markdown": "All good."}),
    )
    assert pages.notebook_problems(nb) == []


def test_stderr_output_is_a_problem() -> None:
    nb = _executed(nbformat.v4.new_output("stream", name="stderr", text="something odd\n"))
    assert pages.notebook_problems(nb) == ["cell 0: stderr: something odd"]


def test_error_output_is_a_problem() -> None:
    nb = _executed(nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]))
    assert pages.notebook_problems(nb) == ["cell 0: error: ValueError: bad"]


def test_warning_printed_to_stdout_is_a_problem() -> None:
    text = "x.py:3: RuntimeWarning: More than 20 figures have been opened.\n"
    nb = _executed(nbformat.v4.new_output("stream", name="stdout", text=text))
    (problem,) = pages.notebook_problems(nb)
    assert "RuntimeWarning: More than 20 figures" in problem


def test_raw_pandas_frame_is_listed() -> None:
    html = '<table border="1" class="dataframe"><tr><td>1</td></tr></table>'
    nb = _executed(nbformat.v4.new_output("execute_result", data={"text/html": html}))
    assert pages.pandas_tables(nb) == ["cell 0: x = 1"]


def test_stderr_block_in_an_html_export_is_a_problem(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<div data-mime-type="application/vnd.jupyter.stderr"><pre>'
        "micro.py:82: IsolationWarning: rollback isolation did not isolate</pre></div>"
    )
    found = pages.problems(page)
    assert "stderr output" in found
    assert any("IsolationWarning: rollback" in line for line in found)


def _page(tmp_path: Path, width_px: int) -> Path:
    page = tmp_path / f"page{width_px}.html"
    page.write_text(
        "<html><body style='margin:0'><table><tr><td>"
        f"<div style='width:{width_px}px'>x</div></td></tr></table></body></html>"
    )
    return page


@needs_chromium
def test_page_width_tells_a_page_that_fits_from_one_that_does_not(tmp_path: Path) -> None:
    narrow, _ = pages.page_width(_page(tmp_path, 800))
    wide, widest = pages.page_width(_page(tmp_path, 2000))
    assert narrow <= pages.WIDTH_PX < wide
    assert widest.startswith(("div", "td", "table", "tr", "tbody"))


@needs_chromium
def test_screenshot_writes_a_png_of_the_window_size(tmp_path: Path) -> None:
    png = pages.screenshot(_page(tmp_path, 800), tmp_path / "shot.png", height=600)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png.read_bytes()[16:20], "big")
    assert width == pages.WIDTH_PX
