"""Load from several interpreters: P processes, each with its own pool of S and W threads.

One Python process runs its bytecode under one GIL, so a single client tops
out near one core however many threads it has. :func:`run_processes` starts P
child processes (``python -m perfkit.pool.multiproc``), each running
:func:`perfkit.pool.runner.run_workload` with its own ``ConnectionPool``, the
way a web server's worker processes each hold a pool. The children start
their workers together (a ready/go handshake over their pipes) and send back
their request records, which the parent merges:

- bookkeeping: every request is a success or an error, across processes
  (``requests_add_up``), and no connection of any child is left on the
  server afterwards (``leaked``, from ``pg_stat_activity``);
- ``total_connections`` = P x S next to the server's ``max_connections``: above
  it (a common production mistake) :class:`~perfkit.errors.ConnectionBudgetWarning`
  is warned and ``over_max_connections`` is set;
- throughput with n and a 95 % interval from per-bin samples (the processes'
  bins summed), CPU per process (each child measures its workers' window).

The DSN (password included) reaches a child only through its stdin, never its
command line or environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import psycopg

from perfkit import validate
from perfkit.dsn import mask
from perfkit.errors import ConfigError, ConnectionBudgetWarning, PerfkitError
from perfkit.pool.server_processes import (
    ADMIN_APP,
    new_application_name,
    wait_for_no_server_processes,
)
from perfkit.pool.settings import PoolSettings, Workload
from perfkit.pool.summary import throughput_bins
from perfkit.postgres.cpu import CpuMeter
from perfkit.stats import Estimate, mean_interval

#: Seconds a child may take to start (import, read its job) before the run fails.
READY_TIMEOUT_S = 120.0
#: Default width of the throughput bins (seconds).
BIN_S = 0.1


class ProcessFailed(PerfkitError):
    """A worker process of a multi-process run failed (the message has its stderr's tail)."""


@dataclass(frozen=True, kw_only=True)
class Job:
    """What one child runs (sent pickled over its stdin)."""

    dsn: str
    settings: PoolSettings
    workload: Workload
    application_name: str


@dataclass(frozen=True, kw_only=True)
class MultiProcResult:
    """The merged outcome of P processes (see the module docstring)."""

    processes: int
    threads_per_process: int
    settings: PoolSettings
    max_connections: int
    requests: pd.DataFrame  # every request of every process, with a ``process`` column
    per_process: pd.DataFrame  # one summary row per process
    bins: np.ndarray = field(repr=False)  # successful requests/s per bin, summed over processes
    bin_s: float
    leaked: int
    server_cpu_pct: float
    cores: int
    application_names: tuple[str, ...] = ()  # each process's connections' application_name

    @property
    def total_connections(self) -> int:
        return self.processes * self.settings.effective_max_size

    @property
    def over_max_connections(self) -> bool:
        return self.total_connections > self.max_connections

    @property
    def requests_add_up(self) -> bool:
        """Each process's requests are its successes plus its errors, and the merged
        records hold exactly the requests the processes reported."""
        p = self.per_process
        each = bool((p["requests"] == p["successes"] + p["errors"]).all())
        return each and len(self.requests) == int(p["requests"].sum())

    @property
    def throughput(self) -> Estimate:
        """Successful requests/s of all processes together: mean over bins, 95 % interval."""
        return mean_interval(self.bins, seed=self.processes)

    def summary(self) -> dict[str, Any]:
        """One flat row: shape, bookkeeping, throughput with its interval, CPU."""
        n = len(self.requests)
        ok = int(self.requests["ok"].sum()) if n else 0
        tp = self.throughput
        return {
            "processes": self.processes,
            "threads_per_process": self.threads_per_process,
            "pool_size": self.settings.effective_max_size,
            "total_connections": self.total_connections,
            "max_connections": self.max_connections,
            "over_max_connections": self.over_max_connections,
            "requests": n,
            "successes": ok,
            "errors": n - ok,
            "requests_add_up": self.requests_add_up,
            "throughput_rps": float(self.per_process["throughput_rps"].sum()),
            "throughput_mean_rps": tp.value,
            "throughput_low": tp.low,
            "throughput_high": tp.high,
            "throughput_n": tp.n,
            "wait_p99_ms": float(self.requests["wait_ms"].quantile(0.99)) if n else math.nan,
            "client_cpu_pct": float(self.per_process["client_cpu_pct"].sum()),
            "client_cpu_max_pct": float(self.per_process["client_cpu_pct"].max()),
            "server_cpu_pct": self.server_cpu_pct,
            "cores": self.cores,
            "elapsed_s": float(self.per_process["elapsed_s"].max()),
            "leaked": self.leaked,
        }


def max_connections(dsn: str) -> int:
    """The server's ``max_connections``."""
    with psycopg.connect(
        dsn, autocommit=True, connect_timeout=5, application_name=ADMIN_APP
    ) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None
    return int(row[0])


def check_connection_budget(processes: int, settings: PoolSettings, limit: int) -> bool:
    """Warn (:class:`ConnectionBudgetWarning`) when P x max_size exceeds ``limit``; True if so."""
    total = processes * settings.effective_max_size
    if total <= limit:
        return False
    warnings.warn(
        ConnectionBudgetWarning(
            f"{processes} processes x pool max_size {settings.effective_max_size} = {total} "
            f"connections, more than the server's max_connections ({limit}): the connections "
            "beyond it fail with 'too many clients already'. Size each process's pool so "
            "that processes x max_size stays below max_connections minus "
            "superuser_reserved_connections and every other client's connections."
        ),
        stacklevel=3,
    )
    return True


def child_environment() -> dict[str, str]:
    """The children's environment: ours, with this perfkit first on the import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _stderr_tail(fh: IO[bytes]) -> str:
    fh.seek(0)
    lines = fh.read().decode(errors="replace").strip().splitlines()
    return mask("\n  ".join(lines[-12:]))


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of a child's stdout, or b"" if it did not come within ``timeout``."""
    out: list[bytes] = []
    stdout = proc.stdout
    assert stdout is not None
    reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return out[0] if out else b""


def _collect(procs: list[subprocess.Popen[bytes]], outputs: list[bytes], timeout: float) -> None:
    """Read every child's stdout to the end (concurrently) and wait for it to exit."""

    def read(i: int) -> None:
        stdout = procs[i].stdout
        assert stdout is not None
        outputs[i] = stdout.read()

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(procs))]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    for t in readers:
        t.join(max(deadline - time.monotonic(), 0.1))
    for proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise ProcessFailed(f"a worker process did not finish within {timeout:g} s") from None


def _spawn(job: Job, env: Mapping[str, str], err: IO[bytes]) -> subprocess.Popen[bytes]:
    """A worker process, handed its job (it answers ``ready`` once its pool is open)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfkit.pool.multiproc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(job))
    proc.stdin.flush()
    return proc


def _reap(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill what still runs and close every pipe."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


def _run_jobs(jobs: Sequence[Job], meter: CpuMeter, *, timeout: float) -> list[bytes]:
    """Start one process per job, let them all go at once, and read what each returns.

    ``meter`` measures the server's and this machine's CPU from "go" to the last exit.
    Raises ProcessFailed naming the process when one does not start or fails.
    """
    env = child_environment()
    procs: list[subprocess.Popen[bytes]] = []
    errs: list[IO[bytes]] = []
    outputs: list[bytes] = [b""] * len(jobs)
    with contextlib.ExitStack() as files:
        try:
            for job in jobs:
                errs.append(files.enter_context(tempfile.TemporaryFile()))
                procs.append(_spawn(job, env, errs[-1]))
            for i, proc in enumerate(procs):
                if _readline(proc, READY_TIMEOUT_S).strip() != b"ready":
                    raise ProcessFailed(
                        f"worker process {i} did not start: {_stderr_tail(errs[i]) or 'no output'}"
                    )
            meter.start()
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                proc.stdin.close()
            _collect(procs, outputs, timeout)
            meter.stop()
            for i, proc in enumerate(procs):
                if proc.returncode != 0 or not outputs[i]:
                    raise ProcessFailed(
                        f"worker process {i} exited with code {proc.returncode}: "
                        f"{_stderr_tail(errs[i])}"
                    )
        finally:
            _reap(procs)
    return outputs


def run_processes(
    dsn: str,
    settings: PoolSettings,
    workload: Workload,
    *,
    processes: int,
    server: Any = None,
    bin_s: float = BIN_S,
    leak_timeout: float = 5.0,
) -> MultiProcResult:
    """Run ``workload`` (W = ``workload.workers`` threads) in each of ``processes`` processes.

    Each process gets its own pool from ``settings`` and its own seed. Warns
    :class:`ConnectionBudgetWarning` before anything starts when
    ``processes x settings.max_size`` exceeds the server's ``max_connections``.
    ``server`` (optional) is where the server's CPU is read.
    """
    validate.integer("processes", processes, minimum=1)
    validate.number("bin_s", bin_s, strict=True)
    if not settings.pooled:
        raise ConfigError("run_processes needs pooled settings (each process has a pool)")
    limit = max_connections(dsn)
    check_connection_budget(processes, settings, limit)
    base_app = new_application_name("perfkit-mp")
    jobs = [
        Job(
            dsn=dsn,
            settings=settings,
            workload=workload.replace(seed=workload.seed + 1000 * i),
            application_name=f"{base_app}-p{i}",
        )
        for i in range(processes)
    ]
    meter = CpuMeter(server)
    outputs = _run_jobs(jobs, meter, timeout=workload.start_delay + workload.duration + 120.0)
    leaked = sum(
        wait_for_no_server_processes(dsn, job.application_name, timeout=leak_timeout)
        for job in jobs
    )
    results = [pickle.loads(out) for out in outputs]
    merged = _merge(results, settings, workload, limit, leaked, meter, bin_s)
    return dataclasses.replace(merged, application_names=tuple(j.application_name for j in jobs))


def _merge(
    results: Sequence[dict[str, Any]],
    settings: PoolSettings,
    workload: Workload,
    limit: int,
    leaked: int,
    meter: CpuMeter,
    bin_s: float,
) -> MultiProcResult:
    frames, rows, bins = [], [], []
    for i, r in enumerate(results):
        req = r["requests"].copy()
        req.insert(0, "process", i)
        frames.append(req)
        rows.append({"process": i, **r["summary"], **r["cpu"], "child_leaked": r["leaked"]})
        bins.append(throughput_bins(r["requests"], r["elapsed_s"], bin_s))
    n_bins = min(len(b) for b in bins)
    usage = meter.usage
    return MultiProcResult(
        processes=len(results),
        threads_per_process=workload.workers,
        settings=settings,
        max_connections=limit,
        requests=pd.concat(frames, ignore_index=True),
        per_process=pd.DataFrame(rows),
        bins=np.sum([b[:n_bins] for b in bins], axis=0),
        bin_s=bin_s,
        leaked=leaked + sum(int(r["leaked"] or 0) for r in results),
        server_cpu_pct=usage.server_cpu_pct if usage is not None else math.nan,
        cores=usage.cores if usage is not None else os.cpu_count() or 1,
    )


# -- the child ----------------------------------------------------------------------------


def child_main() -> None:
    """Read a :class:`Job` from stdin, say ready, wait for go, run it, pickle the outcome."""
    from perfkit.pool.runner import run_workload

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but the protocol on the real stdout
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    job: Job = pickle.load(sys.stdin.buffer)
    out.write(b"ready\n")
    out.flush()
    if sys.stdin.buffer.readline().strip() != b"go":
        sys.exit(2)
    meter = CpuMeter(None)
    result = run_workload(
        job.dsn, job.settings, job.workload, cpu=meter, application_name=job.application_name
    )
    usage = meter.usage
    cpu = {
        "client_cpu_pct": usage.client_cpu_pct if usage is not None else math.nan,
        "client_bound": bool(usage.client_bound) if usage is not None else False,
    }
    payload = {
        "requests": result.requests,
        "elapsed_s": result.elapsed_s,
        "summary": result.summary(),
        "cpu": cpu,
        "leaked": result.leaked,
    }
    out.write(pickle.dumps(payload))
    out.flush()


if __name__ == "__main__":
    child_main()
