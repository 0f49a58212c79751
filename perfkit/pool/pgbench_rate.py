"""pgbench ``--rate R --latency-limit L``: the open-loop reference for the pool's runner.

Under ``--rate`` pgbench schedules transactions as a Poisson process and
measures each latency from its *scheduled* start (schedule lag included), and
with ``--latency-limit`` it skips the transactions already later than the
limit when their client gets to them: the same definitions as
:mod:`perfkit.pool.openloop`. :func:`run_pgbench_rate` runs it once on the
pool lab's mix (one ``-f file@weight`` per query, as
:mod:`perfkit.pool.pgbench`) and reads its per-transaction log line by line
into the same :class:`~perfkit.pool.latency.LatencyHistogram`, so both
clients' quantiles come from the same estimator and resolution, and its row
has the open-loop runner's columns (``client="pgbench"``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.pool.latency import RESOLUTION, LatencyHistogram
from perfkit.pool.openloop import Tally, latency_columns
from perfkit.pool.pgbench import (
    TEMPDIR_PREFIX,
    find_pgbench,
    load_args,
    log_lines,
    pgbench_env,
    run_command,
    script_files,
)
from perfkit.pool.settings import Query
from perfkit.postgres.base import PostgresServer


def rate_args(
    pgbench: Path, *, clients: int, threads: int, duration_s: int, rate: float, limit_ms: float
) -> list[str]:
    """pgbench's command line but the scripts and the log: an open-loop run."""
    return [
        *load_args(pgbench, clients, threads, duration_s),
        "--rate",
        f"{rate:g}",
        "--latency-limit",
        f"{limit_ms:g}",
    ]


def tally_logs(paths: Sequence[Path], limit_ms: float) -> Tally:
    """Counts and latency histogram of pgbench's per-transaction logs (constant memory).

    A line is ``client transaction time script epoch us [lag]``; ``time`` is
    the latency from the scheduled start in µs, or ``skipped`` / ``failed``.
    """
    t = Tally()
    for fields in log_lines(paths):
        if fields[2] == "skipped":
            t.skipped += 1
        elif not fields[2].isdigit():
            t.errors += 1
        else:
            us = int(fields[2])
            t.latency.record(us / 1e6)
            if us > limit_ms * 1000.0:
                t.late += 1
            else:
                t.on_time += 1
    return t


def run_pgbench_rate(
    server: PostgresServer | str,
    *,
    mix: Sequence[Query],
    clients: int,
    rate: float,
    latency_limit_ms: float,
    duration_s: int,
    threads: int | None = None,
    seed: int = 0,
    bindir: str | None = None,
) -> dict[str, Any]:
    """pgbench at ``rate`` transactions/s over ``clients`` connections: one open-loop row."""
    validate.integer("pgbench clients", clients, minimum=1)
    validate.integer("pgbench duration_s", duration_s, minimum=1)
    validate.number("pgbench rate", rate, strict=True)
    validate.number("pgbench latency_limit_ms", latency_limit_ms, strict=True)
    if not mix or not all(isinstance(q, Query) for q in mix):
        raise ConfigError(f"pgbench mix must be a non-empty sequence of Query, got {mix!r}")
    threads = min(clients, os.cpu_count() or 1) if threads is None else min(threads, clients)
    pgbench = find_pgbench(bindir)
    env = pgbench_env(server)
    workdir = Path(tempfile.mkdtemp(prefix=TEMPDIR_PREFIX))  # 0700: private
    try:
        args = rate_args(
            pgbench,
            clients=clients,
            threads=threads,
            duration_s=duration_s,
            rate=rate,
            limit_ms=latency_limit_ms,
        )
        args += ["--log", "--log-prefix", str(workdir / "tx"), "--random-seed", str(seed)]
        for path, weight in script_files(mix, workdir):
            args += ["--file", f"{path}@{weight}"]
        run_command(args, env, duration_s + 120.0, "pgbench --rate")
        tally = tally_logs(sorted(workdir.glob("tx.*")), latency_limit_ms)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rate_row(tally, clients, threads, rate, latency_limit_ms, duration_s)


def rate_row(
    t: Tally, clients: int, threads: int, rate: float, limit_ms: float, duration_s: int
) -> dict[str, Any]:
    """The open-loop row of a pgbench run (columns of :meth:`OpenLoopResult.row`)."""
    completed = t.on_time + t.late
    scheduled = completed + t.skipped + t.errors
    row: dict[str, Any] = {
        "loop": "open",
        "client": "pgbench",
        "pool": "pgbench",
        "connections": clients,
        "threads": threads,
        "arrivals": "poisson",
        "offered_rps": rate,
        "duration_s": float(duration_s),
        "latency_limit_ms": limit_ms,
        "scheduled": scheduled,
        "scheduled_rps": scheduled / duration_s,
        "completed": completed,
        "on_time": t.on_time,
        "late": t.late,
        "skipped": t.skipped,
        "failed": 0,
        "errors": t.errors,
        "elapsed_s": float(duration_s),
        "achieved_rps": completed / duration_s,
        "goodput_rps": t.on_time / duration_s,
        "latency_mean_ms": t.latency.mean * 1000.0,
        "latency_max_ms": t.latency.max * 1000.0,
    }
    row |= latency_columns(t.latency)
    row |= {
        "dispatch_lag_p99_ms": math.nan,
        "dispatch_lag_max_ms": math.nan,
        "histogram_bytes": t.latency.nbytes,
        "resolution": RESOLUTION,
        "leaked": 0,
    }
    return row


__all__ = ["LatencyHistogram", "rate_row", "run_pgbench_rate", "tally_logs"]
