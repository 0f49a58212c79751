"""Repeated and interleaved lab runs: ``perfkit run --runs K`` and ``perfkit ab``.

On a busy machine the run is the unit of replication, and runs made minutes
apart differ by whatever else the machine was doing. The designs that hold up:

- **repeat**: K runs of one configuration, to compare with another set or to
  calibrate this machine's noise (:mod:`perfkit.calibrate`);
- **interleave**: A and B alternately in one session, A B, B A, A B, ...
  (the order flips each pair so neither side always runs second), then
  compare pair by pair (:func:`perfkit.compare.compare_pairs`). A side is a
  set of notebook parameters and the Python that runs it, so B may be another
  checkout's virtual environment (``--b-python ../other/.venv/bin/python``).

Each lab run is a ``perfkit run`` of the lab's notebook; every run is saved
under ``<data_dir>/<lab>/<run_id>/`` like any other.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from perfkit import registry, results
from perfkit.errors import ConfigError, NotebookFailed
from perfkit.lab import Lab

Log = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Side:
    """One configuration of an A/B run: notebook parameters and the Python that runs them."""

    name: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    python: str = sys.executable


def lab_of(notebook: str | os.PathLike[str]) -> Lab:
    """The lab a notebook belongs to; ConfigError for any other notebook."""
    lab = registry.for_notebook(notebook)
    if lab is None:
        names = ", ".join(lab.notebook for lab in registry.LABS)
        raise ConfigError(f"{Path(notebook).name} is not a lab notebook ({names})")
    return lab


def check_python(python: str) -> str:
    """``python`` if it can import perfkit (another checkout's venv), else ConfigError."""
    try:
        probe = subprocess.run(
            [python, "-c", "import perfkit.cli"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ConfigError(
            f"{python} cannot run perfkit ({exc.strerror}); give a venv's bin/python"
        ) from None
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["it did not start"])[-1]
        raise ConfigError(f"{python} cannot run perfkit ({last}); give a venv's bin/python")
    return python


def _new_run(lab: Lab, data_dir: Path, before: set[Path]) -> results.Run:
    made = [p for p in results.run_dirs(lab.name, data_dir) if p not in before]
    if len(made) != 1:
        raise NotebookFailed(
            f"expected one new {lab.name} run under {data_dir}, found {len(made)}: "
            "did the notebook save its results?"
        )
    return results.load(made[0])


@contextlib.contextmanager
def _params_file(values: Mapping[str, Any]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="perfkit-ab-") as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
        yield str(path)


def run_once(
    notebook: str | os.PathLike[str],
    side: Side,
    *,
    data_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] = "runs",
) -> results.Run:
    """One ``perfkit run`` of ``notebook`` as ``side`` says; returns the lab run it saved."""
    lab = lab_of(notebook)
    data = Path(data_dir).resolve()
    before = set(results.run_dirs(lab.name, data))
    values = {**side.parameters, "out_dir": str(data)}
    with _params_file(values) as params:
        command = [side.python, "-m", "perfkit.cli", "run", str(notebook), "-f", params]
        command += ["--output-dir", str(output_dir)]
        proc = subprocess.Popen(command)
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C or SIGTERM here: the child cleans up on SIGTERM
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
            raise
    if code != 0:
        raise NotebookFailed(f"side {side.name}: perfkit run exited {code}")
    return _new_run(lab, data, before)


def pair_orders(pairs: int) -> list[tuple[int, int]]:
    """Which side runs first in each pair: (0, 1), (1, 0), (0, 1), ... (0 is A)."""
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 1:
        raise ConfigError(f"pairs must be a whole number >= 1, got {pairs!r}")
    return [(0, 1) if i % 2 == 0 else (1, 0) for i in range(pairs)]


def run_pairs(
    notebook: str | os.PathLike[str],
    sides: tuple[Side, Side],
    *,
    pairs: int,
    data_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] = "runs",
    log: Log = print,
) -> tuple[list[results.Run], list[results.Run]]:
    """``pairs`` pairs of runs, the order flipped each pair; (A's runs, B's runs), pair-aligned."""
    made: tuple[list[results.Run], list[results.Run]] = ([], [])
    for i, order in enumerate(pair_orders(pairs), start=1):
        for index in order:
            side = sides[index]
            log(f"== pair {i} of {pairs}: {side.name}")
            made[index].append(run_once(notebook, side, data_dir=data_dir, output_dir=output_dir))
    return made
