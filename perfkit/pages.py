"""Rendered pages as a reader sees them: warnings in the output, width in headless Chromium.

* :func:`problems` lists what a reader should never see in an executed notebook
  or its HTML export: stderr output, error outputs, tracebacks and warnings
  (``SomethingWarning: ...``) printed into an output cell.
* :func:`page_width` loads an HTML page in headless Chromium (Debian's
  ``chromium`` package) at :data:`WIDTH_PX` and returns the right edge of its
  widest element, so a test can tell whether the page fits.
* :func:`screenshot` and ``python -m perfkit.pages RUN_DIR OUT_DIR`` take
  screenshots of ``report.html`` and every lab page of a run directory.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import nbformat

from perfkit.errors import BackendUnavailable

#: The width the report and lab pages must fit.
WIDTH_PX = 1200
#: Chromium's executable names (Debian: ``chromium``).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
WARNING_TEXT = re.compile(r"\b[A-Z]\w*Warning: |Traceback \(most recent call last\)")
STDERR_HTML = "application/vnd.jupyter.stderr"
_ERROR_HTML = re.compile(r'data-mime-type="application/vnd\.jupyter\.(stderr|error)"')
_MEASURE = """
<script>
(function () {
  var right = 0;
  var widest = "html";
  document.querySelectorAll("body *").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right + window.scrollX > right) {
      right = r.right + window.scrollX;
      var cls = el.getAttribute("class");
      widest = el.tagName.toLowerCase() + (cls ? "." + cls.split(" ")[0] : "");
    }
  });
  right = Math.max(right, document.documentElement.scrollWidth);
  document.body.setAttribute("data-perfkit-width", Math.ceil(right));
  document.body.setAttribute("data-perfkit-widest", widest);
})();
</script>
"""
_WIDTH_ATTR = re.compile(r'data-perfkit-width="(\d+)"')
_WIDEST_ATTR = re.compile(r'data-perfkit-widest="([^"]*)"')


def _output_texts(output: nbformat.NotebookNode) -> Iterator[str]:
    if output.get("output_type") == "stream":
        yield str(output.get("text", ""))
    for mime, value in (output.get("data") or {}).items():
        if mime.startswith("text/"):
            yield value if isinstance(value, str) else "".join(value)


def notebook_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Stderr, errors, tracebacks and warnings in the output cells of an executed notebook."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            where = f"cell {index}"
            if kind == "stream" and output.get("name") == "stderr":
                found.append(f"{where}: stderr: {_first_line(str(output.get('text', '')))}")
            elif kind == "error":
                found.append(f"{where}: error: {output.get('ename')}: {output.get('evalue')}")
            else:
                for text in _output_texts(output):
                    match = WARNING_TEXT.search(text)
                    if match:
                        found.append(f"{where}: {kind}: {_line_of(text, match.start())}")
                        break
    return found


def pandas_tables(nb: nbformat.NotebookNode) -> list[str]:
    """Output cells that show a raw pandas frame (not one formatted by :mod:`perfkit.tables`)."""
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            html = (output.get("data") or {}).get("text/html", "")
            html = html if isinstance(html, str) else "".join(html)
            if 'class="dataframe' in html:
                found.append(f"cell {index}: {_first_line(''.join(cell.source))}")
    return found


def lab_page_problems(executed: str | Path) -> list[str]:
    """:func:`problems` of an executed lab notebook plus its raw pandas tables."""
    nb = nbformat.read(Path(executed), as_version=4)
    return notebook_problems(nb) + [f"raw pandas table in {p}" for p in pandas_tables(nb)]


def html_problems(html: str) -> list[str]:
    """The same problems in an nbconvert HTML export (stderr/error outputs, warning text)."""
    found = [f"{m.group(1)} output" for m in _ERROR_HTML.finditer(html)]
    found += [_line_of(html, m.start()) for m in WARNING_TEXT.finditer(html)]
    return found


def problems(path: str | Path) -> list[str]:
    """What a reader should never see in ``path`` (an executed .ipynb or an .html page)."""
    path = Path(path)
    if path.suffix == ".ipynb":
        return notebook_problems(nbformat.read(path, as_version=4))
    return html_problems(path.read_text(encoding="utf-8"))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _line_of(text: str, at: int) -> str:
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    return text[start : end if end >= 0 else None].strip()[:200]


# -- headless Chromium ---------------------------------------------------------------


def chromium() -> str | None:
    """The path of a Chromium executable, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_chromium() -> str:
    found = chromium()
    if found is None:
        raise BackendUnavailable(
            "headless Chromium is not installed: apt-get install chromium (Debian)"
        )
    return found


def _run_chromium(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    command = [
        _require_chromium(),
        "--headless",
        "--no-sandbox",  # root in containers and CI
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        *args,
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def page_width(
    html: str | Path, *, width: int = WIDTH_PX, timeout: float = 60.0
) -> tuple[int, str]:
    """(right edge of the widest element in px, that element) of ``html`` opened ``width`` wide."""
    source = Path(html).read_text(encoding="utf-8")
    body_end = source.rfind("</body>")
    measured = (
        source[:body_end] + _MEASURE + source[body_end:] if body_end >= 0 else source + _MEASURE
    )
    with tempfile.TemporaryDirectory(prefix="perfkit-page-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(measured, encoding="utf-8")
        done = _run_chromium(
            [f"--window-size={width},900", "--dump-dom", page.as_uri()], timeout=timeout
        )
    match = _WIDTH_ATTR.search(done.stdout)
    if match is None:
        raise RuntimeError(f"chromium did not measure {html}: {done.stderr.strip()[-500:]}")
    widest = _WIDEST_ATTR.search(done.stdout)
    return int(match.group(1)), widest.group(1) if widest else ""


def screenshot(
    html: str | Path,
    png: str | Path,
    *,
    width: int = WIDTH_PX,
    height: int = 4000,
    timeout: float = 120.0,
) -> Path:
    """A PNG of ``html`` as a ``width`` x ``height`` window shows it (taller pages are cut)."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    done = _run_chromium(
        [f"--window-size={width},{height}", f"--screenshot={png}", Path(html).resolve().as_uri()],
        timeout=timeout,
    )
    if done.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium made no screenshot of {html}: {done.stderr.strip()[-500:]}")
    return png


def run_pages(run_dir: str | Path) -> list[Path]:
    """``report.html`` first, then every lab page of a run directory."""
    run_dir = Path(run_dir)
    pages = sorted(p for p in run_dir.glob("*.html") if p.name != "report.html")
    report = run_dir / "report.html"
    return ([report] if report.is_file() else []) + pages


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m perfkit.pages",
        description="Screenshot report.html and each lab page of a run directory at 1,200 px "
        "in headless Chromium; print each page's width and any warning text in it.",
    )
    parser.add_argument("run_dir", type=Path, help="a report's or a lab's runs/<run id>/")
    parser.add_argument("out_dir", type=Path, help="where the PNGs go")
    parser.add_argument("--height", type=int, default=4000, help="window height in px")
    args = parser.parse_args(argv)
    pages = run_pages(args.run_dir)
    if not pages:
        print(f"no HTML pages in {args.run_dir}", file=sys.stderr)
        return 2
    bad = 0
    for page in pages:
        png = screenshot(page, args.out_dir / f"{page.stem}.png", height=args.height)
        px, widest = page_width(page)
        found = problems(page)
        fits = "fits" if px <= WIDTH_PX else f"TOO WIDE ({widest})"
        print(f"{png}  width {px} px {fits}; {len(found)} warning(s)")
        for line in found:
            print(f"    {line}")
        bad += int(px > WIDTH_PX or bool(found))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(_main())
