"""The lifecycle lab's measurements: the leak check, the micro-benchmarks and the suite runs.

Everything here starts servers or pytest subprocesses (through :mod:`leakcheck`,
:mod:`micro` and :mod:`bench`, the libraries it calls) and returns raw frames;
:mod:`perfkit.lifecycle.analysis` turns them into numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd

from perfkit.errors import SuiteFailed
from perfkit.lifecycle import bench, leakcheck, micro
from perfkit.lifecycle.registry import NAMES, VARIANT_SETTINGS, base_strategy
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings

if TYPE_CHECKING:
    from perfkit.lifecycle.lab import Params

SuiteProgress = Callable[[bench.SuiteSettings, bench.SuiteResult], None]
#: Characters of a failed suite run's output quoted in the error.
FAILED_OUTPUT_CHARS = 3000


def leak_check(settings: IsolationSettings, variants: Sequence[str] = ()) -> pd.DataFrame:
    """Two tests under every strategy, then under each of ``variants`` (a session of its own
    with the variant's settings, its row under its own name): what leaked into the second."""
    with IsolationSession(settings, extra_sql=leakcheck.PROBE_SQL) as session:
        rows = [r.as_row() for r in leakcheck.check_all(session, NAMES)]
    for name in variants:
        strategy = base_strategy(name)
        varied = replace(settings, isolation=strategy, **VARIANT_SETTINGS[name])  # type: ignore[arg-type]
        with IsolationSession(varied, extra_sql=leakcheck.PROBE_SQL) as session:
            rows.append({**leakcheck.check(session, strategy).as_row(), "strategy": name})
    return pd.DataFrame(rows)


def micro_benchmarks(settings: IsolationSettings, params: Params) -> pd.DataFrame:
    """Each strategy's cost per test next to the raw SQL underneath (``case, i, seconds``)."""
    return micro.run_all(settings, params.iterations, think_s=params.pool_think_ms / 1000)


def suite_progress(say: Callable[[str], None]) -> SuiteProgress:
    """A progress callback for suite runs: one line per run."""

    def on_run(s: bench.SuiteSettings, r: bench.SuiteResult) -> None:
        say(
            f"suite {s.strategy:<19} workers={s.workers} {r.run['wall_s']:7.2f} s "
            f"exit={r.run['exit_code']} tests={r.run['tests']} servers={r.run['servers_started']}"
        )

    return on_run


def suite_matrix(params: Params, backend: str, on_run: SuiteProgress) -> bench.MatrixResult:
    """The suite under every strategy x worker count x repetition, in a seeded shuffled order."""
    return bench.run_matrix(
        params.strategies,
        params.worker_counts,
        repetitions=params.repetitions,
        backend=backend,
        seed=params.seed,
        progress=on_run,
        **params.suite_kwargs(),
    )


def raise_on_failure(runs: pd.DataFrame, outputs: dict[str, str]) -> None:
    """:class:`SuiteFailed` with the first failed run's output tail, if any run failed."""
    failed = runs[runs["exit_code"] != 0]
    if not failed.empty:
        first = failed.iloc[0]
        tail = outputs[first["run_id"]][-FAILED_OUTPUT_CHARS:]
        raise SuiteFailed(f"suite run failed under {first['strategy']}:\n{tail}")
