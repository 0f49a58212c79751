"""``perfkit sweep``: one papermill run per point of a parameter grid, results merged.

A grid is YAML mapping parameter names to lists of values; the points are
their Cartesian product (a scalar counts as a one-value list)::

    clients: [1, 4, 16]
    strategy: [naive, backoff]

Every point is validated against the notebook's parameters before anything
runs. Each point writes its results to its own ``out_dir``
(``<sweep>/data/point-NNN``); the frames of all points are concatenated with
the point's parameters as columns and saved as one results run
(experiment ``sweep``) under the sweep directory.

Points run one at a time by default, so their timings do not disturb each
other. With a dask.distributed scheduler address they are submitted to the
cluster instead (one task per point; give workers one thread each to keep
timings clean). Each task returns its frames, so only the executed
notebooks stay on the worker's disk.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from perfkit import notebooks, results
from perfkit.errors import ConfigError

OUT_DIR_PARAMETER = "out_dir"


def load_grid(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """Read a grid YAML file (name -> list of values)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read grid {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        where = f"{exc.reason} at byte {exc.start}"
        raise ConfigError(f"grid {path} is not UTF-8 text: {where}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"grid {path} is not valid YAML: {exc}") from exc
    return normalise_grid(data, source=str(path))


def normalise_grid(data: Any, *, source: str = "grid") -> dict[str, list[Any]]:
    """Check a grid's shape; scalars become one-value lists."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source} must map parameter names to lists of values")
    grid: dict[str, list[Any]] = {}
    for name, values in data.items():
        if not isinstance(name, str):
            raise ConfigError(f"{source}: parameter names must be strings, got {name!r}")
        values = list(values) if isinstance(values, list | tuple) else [values]
        if not values:
            raise ConfigError(f"{source}: parameter {name!r} has an empty list of values")
        grid[name] = values
    return grid


def points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, in file order (last name varies fastest)."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


@dataclass(frozen=True, kw_only=True)
class PointResult:
    """What one point produced: its parameters, run record and result frames."""

    index: int
    parameters: dict[str, Any]
    ok: bool
    error: str | None
    wall_s: float
    overhead_s: float
    executed: str
    frames: dict[str, pd.DataFrame] = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class SweepOutcome:
    """All points and the merged frames (``experiment.frame`` -> DataFrame)."""

    sweep_dir: Path
    points: list[PointResult]
    frames: dict[str, pd.DataFrame]
    merged_path: Path | None

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)


def run_point(
    notebook: str,
    index: int,
    values: dict[str, Any],
    sweep_dir: str,
) -> PointResult:
    """Execute one point and load what it saved (runs locally or on a dask worker)."""
    data_dir = Path(sweep_dir) / "data" / f"point-{index:03d}"
    run = notebooks.execute(
        notebook,
        {**values, OUT_DIR_PARAMETER: str(data_dir)},
        output_dir=Path(sweep_dir) / "runs",
        run_id=f"point-{index:03d}",
        progress_bar=False,
        raise_on_error=False,
    )
    frames: dict[str, pd.DataFrame] = {}
    if data_dir.is_dir():
        for experiment_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
            for name, frame in results.load_all(experiment_dir.name, data_dir).items():
                frames[f"{experiment_dir.name}.{name}"] = frame
    return PointResult(
        index=index,
        parameters=values,
        ok=run.ok,
        error=run.error,
        wall_s=run.wall_s,
        overhead_s=run.overhead_s,
        executed=str(run.executed),
        frames=frames,
    )


def merge(point_results: list[PointResult], grid_names: list[str]) -> dict[str, pd.DataFrame]:
    """Concatenate each frame over the points, adding ``point`` and the grid parameters."""
    merged: dict[str, list[pd.DataFrame]] = {}
    for point in sorted(point_results, key=lambda p: p.index):
        for name, frame in point.frames.items():
            extra = {"point": point.index, **{k: point.parameters[k] for k in grid_names}}
            clashes = [k for k in extra if k in frame.columns]
            columns = {(f"param_{k}" if k in clashes else k): v for k, v in extra.items()}
            merged.setdefault(name, []).append(frame.assign(**columns))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in merged.items()}


def run_sweep(
    notebook: str | os.PathLike[str],
    grid: Mapping[str, list[Any]],
    *,
    output_dir: str | os.PathLike[str] = "runs",
    scheduler: str | Any | None = None,
    fixed: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Run every grid point of ``notebook`` and merge the results (see the module docstring).

    ``scheduler`` is a dask.distributed address (or a ``Client``); None runs
    the points here, one at a time.
    """
    notebook = Path(notebook).resolve()
    grid = normalise_grid(dict(grid))
    fixed = dict(fixed or {})
    declared = notebooks.notebook_parameters(notebook)
    if OUT_DIR_PARAMETER not in declared:
        raise ConfigError(
            f"{notebook.name} declares no {OUT_DIR_PARAMETER!r} parameter, "
            "so a sweep cannot collect its results"
        )
    overlap = sorted((set(grid) | set(fixed)) & {OUT_DIR_PARAMETER})
    if overlap:
        raise ConfigError(f"the sweep sets {OUT_DIR_PARAMETER!r} itself; remove it from the grid")
    both = sorted(set(grid) & set(fixed))
    if both:
        raise ConfigError(f"parameters {', '.join(both)} are both fixed and in the grid")
    todo = [{**fixed, **point} for point in points(grid)]
    for values in todo:  # every point checked before the first one runs
        notebooks.validate_parameters(notebook, values)

    sweep_dir = Path(output_dir).resolve() / f"sweep-{results.new_run_id()}"
    sweep_dir.mkdir(parents=True)
    say = log or (lambda _line: None)
    if scheduler is None:
        done = []
        for i, values in enumerate(todo):
            say(f"[{i + 1}/{len(todo)}] {values}")
            done.append(run_point(str(notebook), i, values, str(sweep_dir)))
            say(f"      {'ok' if done[-1].ok else 'FAILED'} in {done[-1].wall_s:.1f} s")
    else:
        say(f"submitting {len(todo)} points to {scheduler}")
        done = _run_on_dask(scheduler, str(notebook), todo, str(sweep_dir))

    frames = merge(done, list(grid))
    merged_path = None
    point_table = pd.DataFrame(
        [
            {
                "point": p.index,
                **p.parameters,
                "ok": p.ok,
                "wall_s": p.wall_s,
                "overhead_s": p.overhead_s,
                "error": p.error or "",
                "executed": p.executed,
            }
            for p in done
        ]
    )
    run = results.save(
        frames={"points": point_table, **frames},
        experiment="sweep",
        params={"notebook": str(notebook), "grid": grid, "fixed": fixed},
        out_dir=sweep_dir,
    )
    merged_path = run.path
    return SweepOutcome(sweep_dir=sweep_dir, points=done, frames=frames, merged_path=merged_path)


def _run_on_dask(
    scheduler: str | Any, notebook: str, todo: list[dict[str, Any]], sweep_dir: str
) -> list[PointResult]:
    from distributed import Client

    own = isinstance(scheduler, str)
    client = Client(scheduler) if own else scheduler
    try:
        futures = [
            client.submit(
                run_point,
                notebook,
                i,
                values,
                sweep_dir,
                pure=False,
                key=f"{Path(sweep_dir).name}-point-{i:03d}",
            )
            for i, values in enumerate(todo)
        ]
        return list(client.gather(futures))
    finally:
        if own:
            client.close()
