"""Pool-settings lab: run workloads through psycopg_pool pools and measure what settings do.

- :mod:`perfkit.pool.settings` - :class:`PoolSettings`, :class:`Workload`, presets
  (:data:`REVIEW`, :data:`PSYCOPG_DEFAULTS`, :data:`NO_POOL`), :func:`script_mix`
  (pgbench script files as a mix, :mod:`perfkit.workload`).
- :mod:`perfkit.pool.workload_setup` - the lab's workload on its server: the run's
  schema, pgbench's tables, what an external server would be written.
- :mod:`perfkit.pool.runner` / :mod:`perfkit.pool.arunner` - run a workload with
  threads over ``ConnectionPool`` or tasks over ``AsyncConnectionPool``.
- :mod:`perfkit.pool.sweeps` - sweeps (size, spike, timeout, churn, recovery, presets).
- :mod:`perfkit.pool.openloop` - open loop: requests at an offered rate (seeded Poisson or
  fixed arrivals, :mod:`perfkit.pool.arrivals`), latency from intended start in an HDR
  histogram (:mod:`perfkit.pool.latency`); :mod:`perfkit.pool.pgbench_rate` runs
  pgbench ``--rate`` beside it and :mod:`perfkit.pool.openloop_sweep` sweeps rates.
- :mod:`perfkit.pool.checkout` - cost of the check-before-acquire.
- :mod:`perfkit.pool.summary` - pure summaries (percentiles, churn, recovery time).
- :mod:`perfkit.pool.server_processes` - the server processes behind a run's connections.
- The lab: :mod:`perfkit.pool.lab` (Params, ``run``, ``LAB``), :mod:`perfkit.pool.measure`,
  :mod:`perfkit.pool.analysis`, :mod:`perfkit.pool.conclusions`, :mod:`perfkit.pool.plots`.
"""

from perfkit._exports import lazy
from perfkit.pool.arunner import run_workload_async, run_workload_async_blocking
from perfkit.pool.result import Action, WorkloadResult
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import (
    DEFAULT_MIX,
    DEFAULT_WORKLOAD,
    NO_POOL,
    PRESETS,
    PSYCOPG_DEFAULTS,
    REVIEW,
    PoolSettings,
    Query,
    Workload,
    script_mix,
)

_HOMES = {  # loaded on first use
    "run_pgbench": "perfkit.pool.pgbench",
    "pgbench_sweep": "perfkit.pool.pgbench",
    "run_processes": "perfkit.pool.multiproc",
    "OpenLoad": "perfkit.pool.openloop",
    "run_open_loop": "perfkit.pool.openloop",
    "run_pgbench_rate": "perfkit.pool.pgbench_rate",
    "LatencyHistogram": "perfkit.pool.latency",
    "arrivals": "perfkit.pool.arrivals",
}

__all__ = [
    *_HOMES,
    "DEFAULT_MIX",
    "DEFAULT_WORKLOAD",
    "NO_POOL",
    "PRESETS",
    "PSYCOPG_DEFAULTS",
    "REVIEW",
    "Action",
    "PoolSettings",
    "Query",
    "Workload",
    "WorkloadResult",
    "run_workload",
    "run_workload_async",
    "run_workload_async_blocking",
    "script_mix",
]

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
