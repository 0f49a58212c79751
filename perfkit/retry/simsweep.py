"""Simulation grids: strategies x fleet sizes x seeds, here or on a dask.distributed cluster.

:func:`simulate_grid` runs one simulated herd per cell (strategy, N, seed) and
returns one ``SimResult.summary()`` row per cell, plus ``seed`` and the cell's
``cell_wall_s``. ``settings_for(n)`` gives a cell's settings: a
:class:`~perfkit.retry.contention.ContentionSettings` runs the contention model
(``simulate_contended``), a plain :class:`~perfkit.retry.simulate.SimSettings`
the first-come-first-served one (``simulate``). Settings are made here, before
anything is submitted, so a bad size or strategy fails at once; each cell is one
task (``pure=False``), its result a small dict (a 1,000,000-client herd's
attempts never leave the worker). Results do not depend on where a cell ran:
the same seeds give the same rows locally and on a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.retry.simulate import SimResult, SimSettings, simulate
from perfkit.retry.strategies import Strategy, get_strategy

#: Largest fleet a cell may simulate (the issue's ceiling).
MAX_CLIENTS = 1_000_000

SettingsFor = Callable[[int], SimSettings]


def _simulator(settings: SimSettings) -> Callable[..., SimResult]:
    if type(settings) is SimSettings:
        return simulate
    from perfkit.retry.contention import ContentionSettings, simulate_contended

    if isinstance(settings, ContentionSettings):
        return simulate_contended
    raise ConfigError(
        f"settings_for must return SimSettings or ContentionSettings, got {settings!r}"
    )


def run_cell(name: str, strategy: Strategy, settings: SimSettings, seed: int) -> dict[str, Any]:
    """One cell: simulate, and keep only the summary row (what a worker sends back)."""
    started = time.perf_counter()
    result = _simulator(settings)(strategy, settings, seed=seed, name=name)
    return {**result.summary(), "seed": seed, "cell_wall_s": time.perf_counter() - started}


def _strategies(strategies: Sequence[str] | Mapping[str, Strategy]) -> dict[str, Strategy]:
    if isinstance(strategies, Mapping):
        named = dict(strategies)
        bad = [k for k, v in named.items() if not isinstance(v, Strategy)]
        if bad:
            raise ConfigError(f"strategies {bad} are not Strategy objects")
    elif isinstance(strategies, str):
        raise ConfigError("strategies must be a list of names (or name -> Strategy), not a str")
    else:
        named = {s: get_strategy(s) for s in strategies}
    if not named:
        raise ConfigError("simulate_grid needs at least one strategy")
    return named


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(validate.integer("seeds", seeds, minimum=1)))
    out = [validate.integer("seed", s, minimum=0) for s in seeds]
    if not out:
        raise ConfigError("simulate_grid needs at least one seed")
    return out


def grid_cells(
    strategies: Sequence[str] | Mapping[str, Strategy],
    sizes: Sequence[int],
    seeds: int | Sequence[int],
    settings_for: SettingsFor,
) -> list[tuple[str, Strategy, SimSettings, int]]:
    """Every cell's arguments for :func:`run_cell`, checked; strategies vary fastest."""
    named = _strategies(strategies)
    seed_list = _seeds(seeds)
    if isinstance(sizes, int) or not sizes:
        raise ConfigError("sizes must be a non-empty list of client counts")
    cells = []
    for n in sizes:
        validate.integer("size", n, minimum=1, maximum=MAX_CLIENTS)
        settings = settings_for(n)
        if not isinstance(settings, SimSettings) or settings.n_clients != n:
            raise ConfigError(f"settings_for({n}) must return settings with n_clients={n}")
        _simulator(settings)
        for seed in seed_list:
            cells.extend((name, strat, settings, seed) for name, strat in named.items())
    return cells


def simulate_grid(
    strategies: Sequence[str] | Mapping[str, Strategy],
    sizes: Sequence[int],
    seeds: int | Sequence[int],
    settings_for: SettingsFor,
    *,
    client: Any = None,
) -> pd.DataFrame:
    """One summary row per (strategy, N, seed); see the module docstring.

    ``seeds`` is a count (seeds 0..seeds-1) or a list. ``client`` is a
    ``distributed.Client`` or a scheduler address (a client is opened and
    closed here); None runs the cells here, one after another.
    """
    cells = grid_cells(strategies, sizes, seeds, settings_for)
    rows = [run_cell(*cell) for cell in cells] if client is None else _on_dask(client, cells)
    return pd.DataFrame(rows)


def _on_dask(client: Any, cells: list[tuple[str, Strategy, SimSettings, int]]) -> list[Any]:
    from distributed import Client

    own = isinstance(client, str)
    dask = Client(client) if own else client
    try:
        futures = [dask.submit(run_cell, *cell, pure=False) for cell in cells]
        return list(dask.gather(futures))
    finally:
        if own:
            dask.close()
