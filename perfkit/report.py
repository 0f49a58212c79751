"""``perfkit report``: run every lab notebook, then the summary notebook, into one run directory.

The labs are :data:`perfkit.registry.LABS`, each run through its notebook and
then summarised by ``99_report.ipynb``. Each lab receives the report's
``backend``, ``quick`` and ``out_dir`` (its ``Params.REPORT_PARAMETERS``),
checked against its ``Params`` before any kernel starts. A failing lab does not
stop the report: its executed notebook is kept, the summary shows it as failed
and its metrics as "not measured", and the command exits non-zero. The report is
``<output_dir>/<run_id>/report.html``; ``report.json`` next to it records each
notebook's wall time and kernel overhead.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfkit import notebooks, registry
from perfkit.errors import ConfigError
from perfkit.results import new_run_id

SUMMARY_NOTEBOOK = "99_report.ipynb"
REPORT_FILE = "report.html"
REPORT_RECORD = "report.json"


@dataclass(frozen=True, kw_only=True)
class ReportOutcome:
    """What a report run produced."""

    run_id: str
    output_dir: Path
    html: Path | None
    labs: list[notebooks.NotebookRun] = field(default_factory=list)
    summary: notebooks.NotebookRun | None = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(lab.ok for lab in self.labs) and self.summary is not None and self.summary.ok

    def summary_lines(self) -> list[str]:
        lines = []
        for run in [*self.labs, *([self.summary] if self.summary else [])]:
            status = "ok    " if run.ok else "FAILED"
            lines.append(
                f"{status} {run.notebook.name:<32} {run.wall_s:6.1f} s "
                f"(overhead {run.overhead_s:.1f} s)"
            )
            if run.error:
                lines.append(f"       {run.error}")
        lines.append(f"report  {self.html}  ({self.wall_s:.1f} s)")
        return lines


def default_notebooks_dir() -> Path:
    """The lab notebooks shipped inside the package (``perfkit/labs``, also in a wheel)."""
    return Path(__file__).resolve().parent / "labs"


def discover(
    notebooks_dir: str | os.PathLike[str], names: Sequence[str] | None = None
) -> tuple[list[Path], Path]:
    """The notebooks of the labs named (default: every registered lab, in report order)
    and the summary notebook of a folder."""
    folder = Path(notebooks_dir)
    summary = folder / SUMMARY_NOTEBOOK
    if not summary.is_file():
        raise ConfigError(f"summary notebook {summary} not found (use --notebooks-dir)")
    chosen = registry.LABS if names is None else [registry.get(name) for name in names]
    labs = [folder / lab.notebook for lab in chosen]
    missing = [p.name for p in labs if not p.is_file()]
    if missing:
        raise ConfigError(f"lab notebooks missing from {folder}: {', '.join(missing)}")
    return labs, summary


def interleaved_orders(names: Sequence[str], runs: int) -> list[list[str]]:
    """The lab order of each of ``runs`` repetitions: rotated by one each time.

    Every lab then runs early and late, after each other lab, so machine load
    that comes and goes falls on all of them alike.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ConfigError(f"runs must be a whole number >= 1, got {runs!r}")
    names = list(names)
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(runs)] if names else []


def lab_parameters(notebook: Path, *, backend: str, quick: bool, data_dir: Path) -> dict[str, Any]:
    """The report's settings for a lab (its ``Params.REPORT_PARAMETERS``)."""
    lab = registry.for_notebook(notebook)
    if lab is None:
        raise ConfigError(f"{notebook.name} is not a registered lab notebook")
    offered = {"backend": backend, "quick": quick, "out_dir": str(data_dir)}
    return {name: offered[name] for name in lab.Params.REPORT_PARAMETERS}


def _summary_parameters(
    lab_runs: Sequence[notebooks.NotebookRun],
    *,
    data: Path,
    out: Path,
    started: dt.datetime,
    quick: bool,
    backend: str,
) -> dict[str, Any]:
    """What the summary notebook is told: where the labs' results are and how each run went."""
    return {
        "data_dir": str(data),
        "since": started.isoformat(),
        "runs_dir": str(out),
        "labs": [
            {
                "notebook": str(r.executed),
                "ok": r.ok,
                "wall_s": round(r.wall_s, 3),
                "overhead_s": round(r.overhead_s, 3),
                "error": r.error or "",
            }
            for r in lab_runs
        ],
        "quick": quick,
        "backend": backend,
    }


def build(
    *,
    quick: bool = False,
    backend: str = "auto",
    output_dir: str | os.PathLike[str] = "runs",
    data_dir: str | os.PathLike[str] = "data",
    notebooks_dir: str | os.PathLike[str] | None = None,
    labs: Sequence[str] | None = None,
    show_code: bool = False,
    progress_bar: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> ReportOutcome:
    """Run the labs (``labs``: their names; default all) and the summary; return where the
    report is and how each run went.

    ``log`` receives one line when each notebook starts and ends.
    """
    say = log or (lambda _line: None)
    if backend not in ("auto", "docker", "local"):
        raise ConfigError(f"backend must be auto, docker or local, got {backend!r}")
    lab_notebooks, summary_nb = discover(notebooks_dir or default_notebooks_dir(), labs)
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    # validate every lab's parameters before any kernel or server starts
    planned = [
        (lab, lab_parameters(lab, backend=backend, quick=quick, data_dir=data))
        for lab in lab_notebooks
    ]
    for lab, values in planned:
        notebooks.validate_parameters(lab, values)

    run_id = new_run_id()
    out = Path(output_dir).resolve() / run_id
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    run = functools.partial(
        notebooks.execute,
        output_dir=out.parent,
        run_id=run_id,
        progress_bar=progress_bar,
        show_code=show_code,
        raise_on_error=False,
    )
    lab_runs: list[notebooks.NotebookRun] = []
    for i, (lab, values) in enumerate(planned, start=1):
        say(f"[{i}/{len(planned) + 1}] {lab.name} {values}")
        lab_runs.append(run(lab, values))
        say(f"      {'ok' if lab_runs[-1].ok else 'FAILED'} in {lab_runs[-1].wall_s:.1f} s")
    summary_params = _summary_parameters(
        lab_runs, data=data, out=out, started=started, quick=quick, backend=backend
    )
    declared = notebooks.notebook_parameters(summary_nb)
    say(f"[{len(planned) + 1}/{len(planned) + 1}] {summary_nb.name}")
    summary_run = run(summary_nb, {k: v for k, v in summary_params.items() if k in declared})
    html = None
    if summary_run.html is not None and summary_run.html.is_file():
        html = out / REPORT_FILE
        shutil.copyfile(summary_run.html, html)
    outcome = ReportOutcome(
        run_id=run_id,
        output_dir=out,
        html=html,
        labs=lab_runs,
        summary=summary_run,
        wall_s=time.perf_counter() - t0,
    )
    record = {
        "run_id": run_id,
        "started_at": started.isoformat(),
        "quick": quick,
        "backend": backend,
        "data_dir": str(data),
        "ok": outcome.ok,
        "wall_s": outcome.wall_s,
        "notebooks": [r.record for r in [*lab_runs, summary_run]],
    }
    (out / REPORT_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return outcome
