"""pgbench as an independent reference for the pool lab's throughput numbers.

PostgreSQL's own load generator is written in C and runs outside this Python
process, so its throughput at N connections is a ceiling the pool lab's
Python workers can be compared with. :func:`run_pgbench` runs it once against
a perfkit server (or a DSN): the pool lab's query mix as weighted custom
scripts (one ``-f file@weight`` per :class:`~perfkit.pool.settings.Query`: the
very script file a query came from, :mod:`perfkit.workload`), or
a builtin script such as ``select-only`` on ``pgbench -i`` tables; with
``connect=True`` every transaction opens its own connection (``-C``, like the
lab's no-pool baseline). :func:`pgbench_sweep` repeats it over connection
counts into a frame shaped like the lab's ``runs`` (``workers``,
``throughput_rps``, ``pool``, ``pooled``).

Every number comes with n and a 95 % interval, from pgbench's per-transaction
log (``-l``): throughput from ``bin_s`` wide bins (n = bins, bootstrap interval
of the mean), latency from each transaction (n = transactions; mean: normal
approximation, quantiles: order-statistic interval). The connection's password
reaches pgbench only through ``PGPASSWORD`` in its environment; scripts and
logs live in a private temporary directory removed afterwards.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psycopg.conninfo import conninfo_to_dict

from perfkit import validate
from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError
from perfkit.pool.settings import DEFAULT_MIX, Query
from perfkit.postgres.base import PostgresServer
from perfkit.postgres.binaries import find_tool
from perfkit.postgres.cpu import measure_cpu
from perfkit.stats import Estimate, mean_interval, rank_quantile_interval

INSTALL_HINT = "apt-get install postgresql-client, or postgresql for the server and its tools"
#: pgbench's builtin scripts; they run on the tables ``pgbench -i`` makes.
BUILTINS = ("select-only", "simple-update", "tpcb-like")
#: ``application_name`` of pgbench's connections (to find them in pg_stat_activity).
APPLICATION_NAME = "perfkit-pgbench"
TEMPDIR_PREFIX = "perfkit-pgbench-"
#: Connection parameters and the libpq environment variables that carry them.
CONNINFO_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


class PgbenchFailed(PerfkitError):
    """pgbench exited with an error (the message has its output's tail, no password)."""


def find_pgbench(bindir: str | None = None) -> Path:
    """The pgbench executable (searched like initdb), or BackendUnavailable with a hint."""
    return find_tool("pgbench", bindir, install_hint=INSTALL_HINT)


def pgbench_env(server: PostgresServer | str) -> dict[str, str]:
    """The environment pgbench connects with: libpq variables only, password included.

    Inherited ``PG*`` variables are dropped so nothing but ``server`` decides
    where pgbench connects.
    """
    dsn = server if isinstance(server, str) else server.dsn
    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:
        raise ConfigError(f"invalid DSN {mask(dsn)!r}: {mask(str(exc))}") from None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGAPPNAME"] = APPLICATION_NAME
    for key, value in params.items():
        if value is None:
            continue
        if key not in CONNINFO_ENV:
            raise ConfigError(f"DSN parameter {key!r} cannot be passed to pgbench")
        env[CONNINFO_ENV[key]] = str(value)
    return env


def integer_weights(weights: Sequence[float]) -> list[int]:
    """Smallest integers in the same ratio as ``weights`` (to 1/1000), for ``-f file@weight``."""
    fractions = [Fraction(w).limit_denominator(1000) for w in weights]
    denominator = reduce(math.lcm, (f.denominator for f in fractions), 1)
    ints = [max(int(f * denominator), 1) for f in fractions]
    common = reduce(math.gcd, ints)
    return [i // common for i in ints]


def script_files(mix: Sequence[Query], directory: Path) -> list[tuple[Path, int]]:
    """One pgbench script per query of ``mix``, with its integer weight.

    A query that came from a script file (:mod:`perfkit.workload`) is that very
    file; the others are written to ``directory``.
    """
    out = []
    for i, (query, weight) in enumerate(
        zip(mix, integer_weights([q.weight for q in mix]), strict=True)
    ):
        if query.script is not None and query.script.path is not None:
            out.append((Path(query.script.path), weight))
            continue
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", query.name)
        path = directory / f"{i + 1:02d}-{slug}.sql"
        sql = query.sql.strip()
        path.write_text(sql if sql.endswith(";") else sql + ";")
        out.append((path, weight))
    return out


# -- results ------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptStats:
    """One script's share of a run: pgbench's own numbers and the log's estimates."""

    name: str
    weight: int
    transactions: int
    failed: int
    tps: float
    latency_avg_ms: float
    latency_stddev_ms: float
    tps_est: Estimate
    latency_est: Estimate


@dataclass(frozen=True)
class PgbenchResult:
    """One pgbench run: what it ran, pgbench's summary and interval estimates from its log.

    ``tps``, ``latency_avg_ms`` and ``latency_stddev_ms`` are pgbench's own
    figures; ``tps_est`` (mean over ``bin_s`` bins), ``latency_est`` (mean),
    ``latency_p50`` and ``latency_p99`` come from the per-transaction log with
    n and a 95 % interval. CPU figures are % of one core over the run
    (``client_cpu_pct`` is pgbench's, ``server_cpu_pct`` the server's).
    """

    script: str
    clients: int
    threads: int
    duration_s: int
    connect: bool
    tps: float
    transactions: int
    failed: int
    latency_avg_ms: float
    latency_stddev_ms: float
    initial_connection_ms: float
    connection_avg_ms: float
    tps_est: Estimate
    latency_est: Estimate
    latency_p50: Estimate
    latency_p99: Estimate
    bin_s: float
    scripts: tuple[ScriptStats, ...]
    client_cpu_pct: float
    server_cpu_pct: float
    cores: int
    wall_s: float
    version: str

    def row(self) -> dict[str, Any]:
        """One flat row, with the pool lab's column names where they mean the same."""
        row: dict[str, Any] = {
            "experiment": "pgbench",
            "pool": "pgbench -C" if self.connect else "pgbench",
            "pooled": not self.connect,
            "script": self.script,
            "workers": self.clients,
            "connections": self.clients,
            "threads": self.threads,
            "duration_s": self.duration_s,
            "connect": self.connect,
            "throughput_rps": self.tps,
            "transactions": self.transactions,
            "failed": self.failed,
            "latency_avg_ms": self.latency_avg_ms,
            "latency_stddev_ms": self.latency_stddev_ms,
            "initial_connection_ms": self.initial_connection_ms,
            "connection_avg_ms": self.connection_avg_ms,
        }
        for name, est in (
            ("tps", self.tps_est),
            ("latency_mean_ms", self.latency_est),
            ("latency_p50_ms", self.latency_p50),
            ("latency_p99_ms", self.latency_p99),
        ):
            row |= {
                name: est.value,
                f"{name}_low": est.low,
                f"{name}_high": est.high,
                f"{name}_n": est.n,
            }
        row |= {
            "bin_s": self.bin_s,
            "client_cpu_pct": self.client_cpu_pct,
            "server_cpu_pct": self.server_cpu_pct,
            "cores": self.cores,
            "wall_s": self.wall_s,
            "pgbench_version": self.version,
        }
        return row

    def frame(self) -> pd.DataFrame:
        """:meth:`row` as a one-row frame."""
        return pd.DataFrame([self.row()])

    def scripts_frame(self) -> pd.DataFrame:
        """One row per script of the mix (pgbench's figures and the log's estimates)."""
        rows = []
        for s in self.scripts:
            rows.append(
                {
                    "script": s.name,
                    "weight": s.weight,
                    "transactions": s.transactions,
                    "failed": s.failed,
                    "tps": s.tps,
                    "latency_avg_ms": s.latency_avg_ms,
                    "latency_stddev_ms": s.latency_stddev_ms,
                    "tps_est": s.tps_est.value,
                    "tps_low": s.tps_est.low,
                    "tps_high": s.tps_est.high,
                    "tps_n": s.tps_est.n,
                    "latency_mean_ms": s.latency_est.value,
                    "latency_mean_ms_low": s.latency_est.low,
                    "latency_mean_ms_high": s.latency_est.high,
                    "latency_n": s.latency_est.n,
                }
            )
        return pd.DataFrame(rows)


# -- parsing ------------------------------------------------------------------

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _find(pattern: str, text: str, default: float = math.nan) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else default


def parse_summary(text: str) -> dict[str, float]:
    """The run-wide figures of pgbench's report (``stdout``); NaN where a line is absent."""
    head = text.split("\nSQL script ", 1)[0]
    return {
        "transactions": _find(rf"^number of transactions actually processed: {_NUM}", head),
        "failed": _find(rf"^number of failed transactions: {_NUM}", head, 0.0),
        "latency_avg_ms": _find(rf"^latency average = {_NUM} ms", head),
        "latency_stddev_ms": _find(rf"^latency stddev = {_NUM} ms", head),
        "initial_connection_ms": _find(rf"^initial connection time = {_NUM} ms", head),
        "connection_avg_ms": _find(rf"^average connection time = {_NUM} ms", head),
        "tps": _find(rf"^tps = {_NUM}", head),
    }


def parse_scripts(text: str) -> list[dict[str, float]]:
    """Per-script figures (pgbench prints them when it runs more than one script)."""
    out = []
    for block in text.split("\nSQL script ")[1:]:
        out.append(
            {
                "weight": _find(rf"^ - weight: {_NUM}", block),
                "transactions": _find(rf"^ - {_NUM} transactions", block),
                "tps": _find(rf"tps = {_NUM}\)", block),
                "failed": _find(rf"^ - number of failed transactions: {_NUM}", block, 0.0),
                "latency_avg_ms": _find(rf"^ - latency average = {_NUM} ms", block),
                "latency_stddev_ms": _find(rf"^ - latency stddev = {_NUM} ms", block),
            }
        )
    return out


def log_lines(paths: Sequence[Path]) -> Iterator[list[str]]:
    """The fields of each line of pgbench's per-transaction logs, read one line at a time
    (lines too short to be ``client transaction time script epoch us`` are skipped)."""
    for path in paths:
        with open(path) as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 6:
                    yield fields


def read_transaction_logs(paths: Sequence[Path]) -> pd.DataFrame:
    """pgbench's per-transaction logs as a frame: ``script``, ``latency_ms``, ``end_s``, ``ok``.

    Log lines are ``client_id transaction_no time script_no time_epoch time_us
    ...``; ``time`` is the latency in µs, or a word (``failed``, ``skipped``)
    for a transaction that did not complete.
    """
    scripts: list[int] = []
    latency: list[float] = []
    end: list[float] = []
    for fields in log_lines(paths):
        scripts.append(int(fields[3]))
        latency.append(float(fields[2]) / 1000.0 if fields[2].isdigit() else math.nan)
        end.append(int(fields[4]) + int(fields[5]) / 1e6)
    df = pd.DataFrame({"script": scripts, "latency_ms": latency, "end_s": end})
    df["ok"] = df["latency_ms"].notna()
    return df


def _tps_estimate(
    end_s: np.ndarray, start: float, duration_s: float, bin_s: float, seed: int
) -> Estimate:
    n_bins = max(round(duration_s / bin_s), 1)
    idx = np.clip(np.floor((end_s - start) / bin_s), 0, n_bins - 1).astype(int)
    counts = np.bincount(idx, minlength=n_bins)
    return mean_interval(counts / bin_s, seed=seed)


# -- running ------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    return validate.integer(f"pgbench {name}", value, minimum=minimum)


def _check_script(mix: Sequence[Query], builtin: str | None) -> None:
    if builtin is not None and builtin not in BUILTINS:
        raise ConfigError(f"unknown pgbench builtin {builtin!r}; use one of {BUILTINS}")
    if builtin is None and (not mix or not all(isinstance(q, Query) for q in mix)):
        raise ConfigError(f"pgbench mix must be a non-empty sequence of Query, got {mix!r}")


def run_command(args: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    """Run one pgbench command line: its stdout, or PgbenchFailed with the masked error tail."""
    try:
        result = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise PgbenchFailed(f"{what} did not finish within {timeout:g} s") from None
    if result.returncode != 0:
        lines = [
            line
            for line in (result.stderr or result.stdout).strip().splitlines()
            if not line.startswith("progress: ")
        ]
        tail = "\n  ".join(lines[-12:])
        raise PgbenchFailed(f"{what} exited with code {result.returncode}:\n  {mask(tail)}")
    return result.stdout


def _version(pgbench: Path) -> str:
    out = subprocess.run(
        [str(pgbench), "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    return match.group(1) if match else out.strip()


def init_tables(server: PostgresServer | str, *, scale: int = 1, bindir: str | None = None) -> None:
    """Create and fill pgbench's tables (``pgbench -i -s scale``) in the server's database."""
    pgbench = find_pgbench(bindir)
    _check_int("scale", scale, 1)
    run_command(
        [str(pgbench), "-i", "-q", "-s", str(scale), "-I", "dtgvp"],
        pgbench_env(server),
        600.0,
        "pgbench -i",
    )


def drop_tables(server: PostgresServer | str, *, bindir: str | None = None) -> None:
    """Drop pgbench's tables (``pgbench -i -I d``)."""
    run_command(
        [str(find_pgbench(bindir)), "-i", "-I", "d"],
        pgbench_env(server),
        120.0,
        "pgbench -i -I d",
    )


@contextmanager
def pgbench_tables(
    server: PostgresServer | str, *, scale: int = 1, bindir: str | None = None
) -> Iterator[None]:
    """pgbench's tables for the ``with`` block, dropped afterwards."""
    init_tables(server, scale=scale, bindir=bindir)
    try:
        yield
    finally:
        drop_tables(server, bindir=bindir)


def _checked_threads(clients: int, threads: int | None) -> int:
    """pgbench's ``--jobs``: ``threads``, or ``min(clients, cores)``; checked against clients."""
    _check_int("clients", clients, 1)
    threads = min(clients, os.cpu_count() or 1) if threads is None else threads
    _check_int("threads", threads, 1)
    if threads > clients:
        raise ConfigError(f"pgbench threads ({threads}) must not exceed clients ({clients})")
    return threads


def load_args(pgbench: Path, clients: int, threads: int, duration_s: int) -> list[str]:
    """The start every pgbench load run shares: no vacuum, clients, jobs and run time."""
    return [
        str(pgbench),
        "--no-vacuum",
        "--client",
        str(clients),
        "--jobs",
        str(threads),
        "--time",
        str(duration_s),
    ]


def _base_args(
    pgbench: Path, clients: int, threads: int, duration_s: int, seed: int, log_prefix: Path
) -> list[str]:
    """pgbench's command line but the script: clients, time, progress and transaction log."""
    return [
        *load_args(pgbench, clients, threads, duration_s),
        "--progress",
        "1",  # makes pgbench report the latency stddev
        "--log",
        "--log-prefix",
        str(log_prefix),
        "--random-seed",
        str(seed),
    ]


def define_args(variables: Sequence[tuple[str, int | float]]) -> list[str]:
    """``--define name=value`` for each variable the scripts get from outside (``scale``...)."""
    args = []
    for name, value in variables:
        args += ["--define", f"{name}={value!r}"]
    return args


def _script_args(
    mix: Sequence[Query],
    builtin: str | None,
    workdir: Path,
    variables: Sequence[tuple[str, int | float]] = (),
) -> tuple[list[str], list[str], list[int]]:
    """The script arguments (a builtin, or one weighted file per query of ``mix``, written
    to ``workdir``), with the scripts' names and weights."""
    if builtin is not None:
        return ["--builtin", builtin], [builtin], [1]
    files = script_files(mix, workdir)
    args = define_args(variables)
    for path, weight in files:
        args += ["--file", f"{path}@{weight}"]
    return args, [q.name for q in mix], [w for _, w in files]


def run_pgbench(
    server: PostgresServer | str,
    *,
    clients: int = 1,
    threads: int | None = None,
    duration_s: int = 2,
    mix: Sequence[Query] = DEFAULT_MIX,
    builtin: str | None = None,
    connect: bool = False,
    init: bool = True,
    scale: int = 1,
    bin_s: float = 0.2,
    seed: int = 0,
    bindir: str | None = None,
    variables: Sequence[tuple[str, int | float]] = (),
) -> PgbenchResult:
    """Run pgbench once for ``duration_s`` seconds with ``clients`` connections.

    ``mix`` (the pool lab's queries, weights kept) is the workload unless
    ``builtin`` names one of :data:`BUILTINS`; a builtin needs pgbench's tables,
    made (and dropped afterwards) here when ``init`` is true. ``connect`` opens
    a connection per transaction (``-C``). ``threads`` defaults to
    ``min(clients, cores)``. ``variables`` reach the scripts as ``--define``.
    Checks every argument and finds pgbench before
    anything starts (ConfigError, BackendUnavailable).
    """
    threads = _checked_threads(clients, threads)
    _check_int("duration_s", duration_s, 1)
    validate.number("pgbench bin_s", bin_s, strict=True)
    _check_script(mix, builtin)
    pgbench = find_pgbench(bindir)
    env = pgbench_env(server)
    if builtin is not None and init:
        with pgbench_tables(server, scale=scale, bindir=bindir):
            return run_pgbench(
                server,
                clients=clients,
                threads=threads,
                duration_s=duration_s,
                builtin=builtin,
                connect=connect,
                init=False,
                bin_s=bin_s,
                seed=seed,
                bindir=bindir,
            )
    workdir = Path(tempfile.mkdtemp(prefix=TEMPDIR_PREFIX))  # 0700: private
    try:
        args = _base_args(pgbench, clients, threads, duration_s, seed, workdir / "tx")
        if connect:
            args.append("--connect")
        script, names, weights = _script_args(mix, builtin, workdir, variables)
        args += script
        with measure_cpu(None if isinstance(server, str) else server) as cpu:
            out = run_command(args, env, duration_s + 120.0, "pgbench")
        log = read_transaction_logs(sorted(workdir.glob("tx.*")))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _result(
        out,
        log,
        script=builtin or "mix",
        names=names,
        weights=weights,
        clients=clients,
        threads=threads,
        duration_s=duration_s,
        connect=connect,
        bin_s=bin_s,
        seed=seed,
        cpu=cpu.usage,
        version=_version(pgbench),
    )


def _result(
    out: str,
    log: pd.DataFrame,
    *,
    script: str,
    names: list[str],
    weights: list[int],
    clients: int,
    threads: int,
    duration_s: int,
    connect: bool,
    bin_s: float,
    seed: int,
    cpu: Any,
    version: str,
) -> PgbenchResult:
    summary = parse_summary(out)
    if math.isnan(summary["tps"]) or math.isnan(summary["transactions"]):
        raise PgbenchFailed(f"could not read pgbench's report:\n{mask(out[-2000:])}")
    ok = log[log["ok"]]
    start = float((ok["end_s"] - ok["latency_ms"] / 1000.0).min()) if len(ok) else 0.0

    def tps(rows: pd.DataFrame, i: int) -> Estimate:
        return _tps_estimate(rows["end_s"].to_numpy(), start, duration_s, bin_s, seed + i)

    lat = ok["latency_ms"].to_numpy()
    per_script = parse_scripts(out) if len(names) > 1 else []
    scripts = []
    for i, (name, weight) in enumerate(zip(names, weights, strict=True)):
        reported = per_script[i] if i < len(per_script) else summary
        rows = ok[ok["script"] == i]
        scripts.append(
            ScriptStats(
                name=name,
                weight=weight,
                transactions=int(reported["transactions"]),
                failed=int(reported["failed"]),
                tps=float(reported["tps"]),
                latency_avg_ms=float(reported["latency_avg_ms"]),
                latency_stddev_ms=float(reported["latency_stddev_ms"]),
                tps_est=tps(rows, i + 1),
                latency_est=mean_interval(rows["latency_ms"].to_numpy(), seed=seed + i + 1),
            )
        )
    return PgbenchResult(
        script=script,
        clients=clients,
        threads=threads,
        duration_s=duration_s,
        connect=connect,
        tps=summary["tps"],
        transactions=int(summary["transactions"]),
        failed=int(summary["failed"]),
        latency_avg_ms=summary["latency_avg_ms"],
        latency_stddev_ms=summary["latency_stddev_ms"],
        initial_connection_ms=summary["initial_connection_ms"],
        connection_avg_ms=summary["connection_avg_ms"],
        tps_est=tps(ok, 0),
        latency_est=mean_interval(lat, seed=seed),
        latency_p50=rank_quantile_interval(lat, 0.5),
        latency_p99=rank_quantile_interval(lat, 0.99),
        bin_s=bin_s,
        scripts=tuple(scripts),
        client_cpu_pct=cpu.children_cpu_pct if cpu else math.nan,
        server_cpu_pct=cpu.server_cpu_pct if cpu else math.nan,
        cores=cpu.cores if cpu else os.cpu_count() or 1,
        wall_s=cpu.wall_s if cpu else math.nan,
        version=version,
    )


def pgbench_sweep(
    server: PostgresServer | str,
    connection_counts: Sequence[int],
    mix: Sequence[Query] = DEFAULT_MIX,
    duration_s: int = 2,
    *,
    builtin: str | None = None,
    connect: bool = False,
    repeats: int = 1,
    threads: int | None = None,
    scale: int = 1,
    bin_s: float = 0.2,
    seed: int = 0,
    bindir: str | None = None,
    progress: Callable[[str], None] | None = None,
    variables: Sequence[tuple[str, int | float]] = (),
) -> pd.DataFrame:
    """pgbench at each connection count (``repeats`` times over the whole list).

    One row per run (:meth:`PgbenchResult.row` plus ``repeat``): ``workers`` =
    ``connections`` = clients and ``throughput_rps`` with ``tps_low`` /
    ``tps_high`` / ``tps_n``, to plot next to the pool lab's throughput curve.
    pgbench's tables (for a builtin) are made once and dropped at the end.
    """
    counts = validate.numbers("pgbench connection_counts", list(connection_counts), integers=True)
    if min(counts) < 1:
        raise ConfigError(f"pgbench connection_counts must be >= 1, got {counts!r}")
    _check_int("repeats", repeats, 1)
    _check_script(mix, builtin)
    find_pgbench(bindir)  # before any table is made

    def sweep() -> pd.DataFrame:
        rows = []
        for r in range(repeats):
            for c in counts:
                if progress is not None:
                    progress(f"pgbench {c} connections{' -C' if connect else ''}, repeat {r}")
                result = run_pgbench(
                    server,
                    clients=int(c),
                    threads=None if threads is None else min(threads, int(c)),
                    duration_s=duration_s,
                    mix=mix,
                    builtin=builtin,
                    connect=connect,
                    init=False,
                    bin_s=bin_s,
                    seed=seed + r,
                    bindir=bindir,
                    variables=variables,
                )
                rows.append(result.row() | {"repeat": r})
        return pd.DataFrame(rows)

    if builtin is None:
        return sweep()
    with pgbench_tables(server, scale=scale, bindir=bindir):
        return sweep()
