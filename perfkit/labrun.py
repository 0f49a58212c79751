"""Run a lab through its contract and save what it returns: the notebooks' one call.

:func:`run_and_save` starts the server the lab asks for (or none), calls
``lab.run(params, server, progress)``, and saves the results under
``<params.out_dir>/<lab.name>/<run_id>/`` with how busy the machine was
(:mod:`perfkit.noise`); the server is removed on success,
failure and Ctrl-C (``create_server`` is a context manager). ``stages=`` runs
only some of the lab's stages (``Params.STAGES``; an unknown name is refused
before anything starts). :func:`latest_or_run` loads the newest saved run with
the same parameters instead of measuring, and measures when there is none.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfkit import noise, results
from perfkit.errors import PerfkitError
from perfkit.lab import Lab, LabParams, Progress, Results
from perfkit.postgres import create_server


def _with_stages(params: LabParams, stages: Sequence[str] | None) -> LabParams:
    """``params`` limited to ``stages`` (checked: ConfigError listing the lab's stages)."""
    return params if stages is None else params.replace(stages=tuple(stages))


def run(
    lab: Lab,
    params: LabParams,
    *,
    progress: Progress = print,
    stages: Sequence[str] | None = None,
) -> Results:
    """``lab.run`` with the server its ``server_settings`` asks for, started and removed here."""
    params = _with_stages(params, stages)
    settings = lab.server_settings(params)
    if settings is None:
        outcome = lab.run(params, None, progress)
    else:
        with create_server(settings) as server:
            progress(f"server: {server.masked_dsn}")
            outcome = lab.run(params, server, progress)
    return dataclasses.replace(outcome, stages=params.stages)


def run_and_save(
    lab: Lab,
    params: LabParams,
    *,
    progress: Progress = print,
    out_dir: str | os.PathLike[str] | None = None,
    stages: Sequence[str] | None = None,
) -> Results:
    """Run the lab (or some of its ``stages``) and save its frames; returns the results with
    their ``run_id``."""
    params = _with_stages(params, stages)
    start = noise.snapshot()
    outcome = run(lab, params, progress=progress)
    saved = results.save(
        frames=dict(outcome.frames),
        experiment=lab.name,
        params=params.as_dict(),
        server=outcome if outcome.server is not None else None,
        seed=params.seed,
        out_dir=out_dir if out_dir is not None else params.out_dir,
        extra={"noise": noise.record(start)},
    )
    progress(f"saved {saved.path}")
    return dataclasses.replace(outcome, run_id=saved.run_id)


def differences(params: LabParams, saved: dict[str, Any]) -> list[str]:
    """How a saved run's parameters differ from ``params`` (``name: saved -> now``).

    Parameters that do not change what is measured (``OUTPUT_PARAMETERS``) are
    ignored, and a saved run that measured every stage, or more stages than
    asked for, covers ``stages``.
    """
    now = params.as_dict()
    out = []
    for name in sorted(set(now) | set(saved)):
        if name in params.OUTPUT_PARAMETERS:
            continue
        mine, theirs = now.get(name), saved.get(name)
        if name == "stages" and (theirs is None or (mine is not None and set(mine) <= set(theirs))):
            continue
        if mine != theirs:
            out.append(f"{name}: {theirs!r} -> {mine!r}")
    return out


def find_saved(
    lab: Lab, params: LabParams, data_dir: str | os.PathLike[str] | None = None
) -> tuple[results.Run | None, list[str]]:
    """The newest saved run of ``lab`` under ``data_dir`` whose parameters match ``params``.

    Returns ``(run, [])``, or ``(None, differences of the newest run)`` when none
    matches (no differences when there is no saved run at all).
    """
    folder = Path(data_dir if data_dir is not None else params.out_dir)
    newest: list[str] | None = None
    for path in reversed(results.run_dirs(lab.name, folder)):
        try:  # the parameters first: loading a run's frames can take a while
            meta = json.loads((path / results.METADATA_FILE).read_text(encoding="utf-8"))
            diff = differences(params, meta.get("params") or {})
            run = results.load(path) if not diff else None
        except (OSError, ValueError, AttributeError, PerfkitError):
            continue  # a corrupt run is never the answer; an older one may be
        if run is not None:
            return run, []
        if newest is None:
            newest = [f"{path.name}: {d}" for d in diff]
    return None, newest or []


def latest_or_run(
    lab: Lab,
    params: LabParams,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    progress: Progress = print,
) -> Results:
    """The newest saved run of ``lab`` with these parameters, else a new run (saved).

    For a notebook opened to explore: loading a saved run takes a second where
    measuring takes minutes. ``data_dir`` defaults to ``params.out_dir``. When
    no saved run matches, ``progress`` is told which parameters of the newest
    saved run differ, and the lab runs as :func:`run_and_save` would.
    """
    folder = Path(data_dir if data_dir is not None else params.out_dir)
    run, diff = find_saved(lab, params, folder)
    if run is not None:
        progress(f"loaded saved run {run.path} (same parameters; nothing measured)")
        return Results.of_run(run)
    if diff:
        progress(
            f"no saved {lab.name} run under {folder} has these parameters; the newest "
            f"differs in: {'; '.join(diff)}. Measuring ..."
        )
    else:
        progress(f"no saved {lab.name} run under {folder}. Measuring ...")
    return run_and_save(lab, params, progress=progress, out_dir=folder)
