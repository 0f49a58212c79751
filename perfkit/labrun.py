"""Run a lab through its contract and save what it returns: the notebooks' one call.

:func:`run_and_save` starts the server the lab asks for (or none), calls
``lab.run(params, server, progress)``, and saves the results under
``<params.out_dir>/<lab.name>/<run_id>/`` with how busy the machine was
(:mod:`perfkit.noise`); the server is removed on success,
failure and Ctrl-C (``create_server`` is a context manager).
"""

from __future__ import annotations

import dataclasses
import os

from perfkit import noise, results
from perfkit.lab import Lab, LabParams, Progress, Results
from perfkit.postgres import create_server


def run(lab: Lab, params: LabParams, *, progress: Progress = print) -> Results:
    """``lab.run`` with the server its ``server_settings`` asks for, started and removed here."""
    settings = lab.server_settings(params)
    if settings is None:
        return lab.run(params, None, progress)
    with create_server(settings) as server:
        progress(f"server: {server.masked_dsn}")
        return lab.run(params, server, progress)


def run_and_save(
    lab: Lab,
    params: LabParams,
    *,
    progress: Progress = print,
    out_dir: str | os.PathLike[str] | None = None,
) -> Results:
    """Run the lab and save its frames; returns the results with their ``run_id``."""
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
