"""Streaming rows vs loading them all: peak memory and wall time of each way to read a result.

The same generated result (``generate_series``; an int, a 32-char text and a
float per row) is read and processed row by row with one of :data:`METHODS`:

``fetchall``
    client-side cursor, ``fetchall()`` then process the list.
``fetchmany``
    client-side cursor, ``fetchmany(batch_size)`` in a loop. Python holds one
    batch, but libpq has already received the *whole* result (C memory:
    invisible to tracemalloc, visible in RSS).
``server_cursor``
    named (server-side) cursor, iterated; psycopg fetches ``itersize =
    batch_size`` rows per round trip.
``stream``
    ``cursor.stream(sql, size=batch_size)``: libpq single-row / chunked-rows
    mode, rows arrive as they are produced.

Each measurement runs in a fresh Python subprocess (``python -m
perfkit.streaming``) so one method's RSS high-water mark cannot contaminate
another's. The child samples RSS (psutil) and, when traced, tracemalloc's
current size in a thread for memory-over-time curves, and reports the peak
RSS (``VmHWM``, so a peak between samples is not missed) and tracemalloc's
peak. The DSN goes to the child in an environment variable, never on its
command line.

The parent also samples the child's RSS from outside (``source="parent"``
in ``memory``): while libpq parses a result the child holds its GIL and its
own sampler thread (``source="child"``, which also reads tracemalloc) stalls.

Frames (see :func:`run_streaming`): ``runs`` (one row per measurement) and
``memory`` (samples over time, ``t_s`` from when the query was sent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError
from perfkit.lab import LabParams, Results, param

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from perfkit.lab import Progress
    from perfkit.postgres import PostgresServer

METHODS = ("fetchall", "fetchmany", "server_cursor", "stream")
#: The largest batch: FETCH's count and libpq's chunked-rows size are 32-bit ints.
MAX_BATCH_SIZE = 2**31 - 1
DSN_ENV = "PERFKIT_STREAM_DSN"
SQL = (
    "SELECT i AS id, md5(i::text) AS payload, (i * 0.5)::float8 AS x "
    "FROM generate_series(1, %s::bigint) AS i"
)

RUN_COLUMNS = (
    "method",
    "rows",
    "batch_size",
    "traced",
    "repeat",
    "wall_s",
    "rows_read",
    "checksum",
    "py_peak_bytes",
    "rss_baseline_bytes",
    "rss_peak_bytes",
    "rss_growth_bytes",
    "samples",
)
MEMORY_COLUMNS = (
    "method",
    "traced",
    "repeat",
    "source",
    "t_s",
    "rss_bytes",
    "rss_growth_bytes",
    "py_bytes",
)


@dataclass(frozen=True, kw_only=True)
class StreamSettings:
    """How big a result to read and how: ``rows`` rows, ``batch_size`` rows per batch.

    ``sample_interval`` is the memory sampling period (s); ``timeout`` bounds
    one child process (s).
    """

    rows: int = 1_000_000
    batch_size: int = 5_000
    sample_interval: float = 0.01
    timeout: float = 600.0

    def __post_init__(self) -> None:
        for name in ("rows", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"StreamSettings.{name} must be an int >= 1, got {value!r}")
        if self.batch_size > MAX_BATCH_SIZE:
            raise ConfigError(
                f"StreamSettings.batch_size must be <= {MAX_BATCH_SIZE} (FETCH and libpq "
                f"take a 32-bit count), got {self.batch_size!r}"
            )
        for name in ("sample_interval", "timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ConfigError(f"StreamSettings.{name} must be > 0 seconds, got {value!r}")


def check_methods(methods: Iterable[str]) -> tuple[str, ...]:
    """The methods as a tuple; ConfigError naming any unknown one."""
    out = tuple(methods)
    unknown = [m for m in out if m not in METHODS]
    if unknown or not out:
        raise ConfigError(f"methods {unknown or out!r} unknown; choose from {', '.join(METHODS)}")
    return out


# -- reading (runs in the child) ------------------------------------------------


def read_rows(conn: Any, method: str, rows: int, batch_size: int) -> Iterator[tuple[Any, ...]]:
    """Yield the generated result's rows using ``method`` (``conn`` is a psycopg Connection)."""
    if method == "fetchall":
        cur = conn.cursor()
        cur.execute(SQL, (rows,))
        yield from cur.fetchall()
    elif method == "fetchmany":
        cur = conn.cursor()
        cur.execute(SQL, (rows,))
        while batch := cur.fetchmany(batch_size):
            yield from batch
    elif method == "server_cursor":
        with conn.transaction(), conn.cursor(name="perfkit_stream") as cur:
            cur.itersize = batch_size
            cur.execute(SQL, (rows,))
            yield from cur
    elif method == "stream":
        import psycopg

        # Chunked rows (size > 1) need libpq 17+; older libpq streams row by row.
        size = batch_size if psycopg.pq.version() >= 170000 else 1
        cur = conn.cursor()
        yield from cur.stream(SQL, (rows,), size=size)
    else:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def consume(rows: Iterable[tuple[Any, ...]]) -> tuple[int, int]:
    """Process rows one at a time, keeping nothing: (row count, checksum)."""
    n = 0
    checksum = 0
    for row in rows:
        n += 1
        checksum = (checksum + row[0] + len(row[1])) % (1 << 61)
    return n, checksum


def expected_checksum(rows: int) -> int:
    """What :func:`consume` returns as checksum for ``rows`` generated rows (md5 hex is 32)."""
    return (rows * (rows + 1) // 2 + 32 * rows) % (1 << 61)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss_bytes() -> int:
    """This process's RSS high-water mark (``VmHWM``; 0 where /proc is missing).

    Not ``ru_maxrss``: on Linux that survives fork+exec, so a child would report
    its parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Sampler(threading.Thread):
    def __init__(self, interval: float, traced: bool) -> None:
        super().__init__(name="perfkit-mem-sampler", daemon=True)
        self.interval = interval
        self.traced = traced
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, int, int | None]] = []

    def sample(self) -> None:
        py = tracemalloc.get_traced_memory()[0] if self.traced else None
        self.samples.append((time.perf_counter() - self.t0, _rss(), py))

    def run(self) -> None:
        self.sample()
        while not self.stop.wait(self.interval):
            self.sample()
        self.sample()


def measure_here(
    dsn: str, method: str, settings: StreamSettings, *, traced: bool
) -> dict[str, Any]:
    """Measure one method in this process (the child calls this; tests may too)."""
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10, application_name="perfkit-stream") as conn:
        conn.execute("SELECT 1").fetchall()
        conn.commit()
        rss_baseline = _rss()
        if traced:
            tracemalloc.start()
        sampler = _Sampler(settings.sample_interval, traced)
        t0_epoch = time.time()
        sampler.start()
        t0 = time.perf_counter()
        try:
            n, checksum = consume(read_rows(conn, method, settings.rows, settings.batch_size))
            wall = time.perf_counter() - t0
        finally:
            sampler.stop.set()
            sampler.join()
        py_peak = tracemalloc.get_traced_memory()[1] if traced else None
        if traced:
            tracemalloc.stop()
        conn.rollback()
    rss_peak = max(_peak_rss_bytes(), max(s[1] for s in sampler.samples))
    return {
        "method": method,
        "rows": settings.rows,
        "batch_size": settings.batch_size,
        "traced": traced,
        "wall_s": wall,
        "rows_read": n,
        "checksum": checksum,
        "py_peak_bytes": py_peak,
        "rss_baseline_bytes": rss_baseline,
        "rss_peak_bytes": rss_peak,
        "rss_growth_bytes": rss_peak - rss_baseline,
        "series": sampler.samples,
        "t0_epoch": t0_epoch,
    }


# -- orchestration (runs in the parent) -------------------------------------------


def measure_in_subprocess(
    dsn: str, method: str, settings: StreamSettings, *, traced: bool
) -> dict[str, Any]:
    """Run :func:`measure_here` in a fresh Python process and return its record."""
    check_methods([method])
    cmd = [
        sys.executable,
        "-m",
        "perfkit.streaming",
        "--method",
        method,
        "--settings",
        json.dumps(dataclasses.asdict(settings)),
    ]
    if traced:
        cmd.append("--traced")
    env = dict(os.environ, **{DSN_ENV: dsn})
    external: list[tuple[float, int]] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        try:
            _watch_rss(proc, settings, external)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise PerfkitError(
            f"streaming measurement {method!r} failed (exit {proc.returncode}): "
            f"{mask(stderr.strip()[-2000:])}"
        )
    record = dict(json.loads(stdout.strip().splitlines()[-1]))
    t0 = record.pop("t0_epoch")
    end = float(record["wall_s"]) + 2 * settings.sample_interval  # then the child exits
    record["external"] = [(t - t0, rss) for t, rss in external if 0 <= t - t0 <= end]
    return record


def _watch_rss(
    proc: subprocess.Popen[str], settings: StreamSettings, out: list[tuple[float, int]]
) -> None:
    """Sample the child's RSS from outside (a child busy in C code holding its GIL cannot
    sample itself) until it exits; PerfkitError after ``settings.timeout``."""
    import psutil

    deadline = time.monotonic() + settings.timeout
    try:
        watched = psutil.Process(proc.pid)
    except psutil.Error:
        return
    while proc.poll() is None:
        try:
            out.append((time.time(), int(watched.memory_info().rss)))
        except psutil.Error:
            return
        if time.monotonic() > deadline:
            raise PerfkitError(f"streaming measurement did not finish in {settings.timeout:g} s")
        time.sleep(settings.sample_interval)


def run_streaming(
    dsn: str,
    settings: StreamSettings,
    *,
    methods: Sequence[str] = METHODS,
    traced: Sequence[bool] = (True, False),
    repeats: int = 1,
    measure: Callable[..., dict[str, Any]] = measure_in_subprocess,
    progress: Callable[[str, bool, int], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Measure each method (traced for Python memory, untraced for time) ``repeats`` times.

    Returns ``{"runs": ..., "memory": ...}`` (columns :data:`RUN_COLUMNS`,
    :data:`MEMORY_COLUMNS`). Raises PerfkitError if a method read the wrong
    number of rows or the wrong checksum.
    """
    import pandas as pd

    methods = check_methods(methods)
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    runs: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    expected = expected_checksum(settings.rows)
    for repeat in range(repeats):
        for tr in traced:
            for method in methods:
                if progress is not None:
                    progress(method, tr, repeat)
                rec = measure(dsn, method, settings, traced=tr)
                if rec["rows_read"] != settings.rows or rec["checksum"] != expected:
                    raise PerfkitError(
                        f"{method} read {rec['rows_read']} rows (checksum {rec['checksum']}), "
                        f"expected {settings.rows} ({expected})"
                    )
                series = rec.pop("series")
                external = rec.pop("external", [])
                rec["repeat"] = repeat
                rec["samples"] = len(series)
                runs.append({k: rec.get(k) for k in RUN_COLUMNS})
                base = rec["rss_baseline_bytes"]
                points = [("child", t, rss, py) for t, rss, py in series]
                points += [("parent", t, rss, None) for t, rss in external]
                for source, t, rss, py in points:
                    memory.append(
                        {
                            "method": method,
                            "traced": tr,
                            "repeat": repeat,
                            "source": source,
                            "t_s": t,
                            "rss_bytes": rss,
                            "rss_growth_bytes": rss - base,
                            "py_bytes": math.nan if py is None else py,
                        }
                    )
    runs_df = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
    runs_df["py_peak_bytes"] = runs_df["py_peak_bytes"].astype(float)
    return {"runs": runs_df, "memory": pd.DataFrame(memory, columns=list(MEMORY_COLUMNS))}


def compare(runs: pd.DataFrame, baseline: str = "fetchall") -> pd.DataFrame:
    """Per method: median peak Python memory (traced runs), RSS growth and wall time (untraced
    runs when present), and how many times lower than ``baseline`` the memory figures are."""
    import pandas as pd

    traced = runs[runs["traced"]]
    timed = runs[~runs["traced"]] if (~runs["traced"]).any() else runs
    out = pd.DataFrame(
        {
            "py_peak_bytes": traced.groupby("method")["py_peak_bytes"].median(),
            "rss_growth_bytes": timed.groupby("method")["rss_growth_bytes"].median(),
            "wall_s": timed.groupby("method")["wall_s"].median(),
        }
    )
    for col in ("py_peak_bytes", "rss_growth_bytes"):
        if baseline in out.index:
            out[f"{col.removesuffix('_bytes')}_x_lower"] = out.loc[baseline, col] / out[col].clip(
                lower=1
            )
    order = [m for m in METHODS if m in out.index]
    return out.loc[order].reset_index().rename(columns={"index": "method"})


#: Parameter spec of notebooks/04_streaming.ipynb (for perfkit.params.validate_globals).
FULL_ROWS = 1_000_000
QUICK_ROWS = 50_000


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The streaming notebook's parameters: the only place their defaults and help live."""

    quick: bool = param(False, "CI: 50k rows instead of 1M")
    seed: int = param(1, "recorded only: the data is deterministic")
    rows: int | None = param(None, "rows in the result", full=FULL_ROWS, quick=QUICK_ROWS)
    batch_size: int = param(5_000, "rows per fetchmany / FETCH / chunk")
    methods: tuple[str, ...] | None = param(None, "ways to read the result", full=METHODS)
    repeats: int = param(1, "measurements per method")

    def check(self) -> None:
        self.settings()
        check_methods(self.methods)
        if self.repeats < 1:
            raise ConfigError(f"parameter 'repeats' must be an int >= 1, got {self.repeats!r}")

    def settings(self) -> StreamSettings:
        return StreamSettings(rows=self.rows, batch_size=self.batch_size)


def conclusions(summary: pd.DataFrame, rows: int, baseline: str = "fetchall") -> dict[str, Any]:
    """Headline figures from :func:`compare`'s table: peaks in MiB and x-lower ratios."""
    out: dict[str, Any] = {"rows": rows}
    by = summary.set_index("method")
    for method in by.index:
        out[f"{method}_py_peak_mib"] = float(by.loc[method, "py_peak_bytes"]) / 2**20
        out[f"{method}_rss_growth_mib"] = float(by.loc[method, "rss_growth_bytes"]) / 2**20
        out[f"{method}_wall_s"] = float(by.loc[method, "wall_s"])
    streaming = [m for m in ("server_cursor", "stream") if m in by.index]
    if baseline in by.index and streaming:
        worst_py = min(float(by.loc[m, "py_peak_x_lower"]) for m in streaming)
        worst_rss = min(float(by.loc[m, "rss_growth_x_lower"]) for m in streaming)
        out["streaming_min_py_x_lower"] = worst_py
        out["streaming_min_rss_x_lower"] = worst_rss
        out["goal_10x_met"] = bool(worst_py >= 10 and worst_rss >= 10)
    return out


def conclusion_text(c: Mapping[str, Any], methods: Sequence[str], batch_size: int) -> str:
    """The closing paragraph, worded from :func:`conclusions`' numbers."""
    lines = [f"{int(c['rows']):,} rows, batches of {batch_size}:"]
    for m in methods:
        lines.append(
            f"  {m:>13}: Python peak {c[m + '_py_peak_mib']:8.1f} MiB, "
            f"RSS growth {c[m + '_rss_growth_mib']:8.1f} MiB, wall {c[m + '_wall_s']:.2f} s"
        )
    if "goal_10x_met" in c:
        lines.append(
            f"Streaming (server cursor / stream) vs fetchall: at least "
            f"{c['streaming_min_py_x_lower']:,.0f}x lower Python peak and "
            f"{c['streaming_min_rss_x_lower']:,.0f}x lower RSS growth; goal (>= 10x) met: "
            f"{c['goal_10x_met']}"
            + (
                "."
                if int(c["rows"]) >= FULL_ROWS
                else f" (the goal is stated for {FULL_ROWS:,} rows, not {int(c['rows']):,})."
            )
        )
    if "fetchmany" in methods:
        lines.append(
            "Client-side fetchmany keeps Python memory low but not RSS: libpq has already "
            "received the whole result before the first batch is returned."
        )
    return "\n".join(lines)


def plot_memory(memory: pd.DataFrame) -> Any:
    """Memory over time per method: RSS growth (untraced runs) and Python heap (traced)."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    first = memory[memory["repeat"] == 0]
    for i, method in enumerate(m for m in METHODS if m in set(first["method"])):
        g = first[first["method"] == method]
        untraced = g[~g["traced"]]
        traced = g[g["traced"] & (g["source"] == "child")]
        rss = untraced if not untraced.empty else g[g["traced"]]
        if (rss["source"] == "parent").any():
            rss = rss[rss["source"] == "parent"]
        ax1.plot(rss["t_s"], rss["rss_growth_bytes"] / 2**20, color=f"C{i}", label=method)
        if not traced.empty:
            ax2.plot(traced["t_s"], traced["py_bytes"] / 2**20, color=f"C{i}", label=method)
    ax1.set_title("process RSS above baseline")
    ax2.set_title("Python heap (tracemalloc)")
    for ax in (ax1, ax2):
        ax.set_xlabel("seconds since the query was sent")
        ax.set_ylabel("MiB")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Reading one large result: memory over time")
    fig.tight_layout()
    return fig


def plot_peaks(summary: pd.DataFrame) -> Any:
    """Peak Python memory, RSS growth (log scale) and wall time per method."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    s = summary.set_index("method")
    (s[["py_peak_bytes", "rss_growth_bytes"]] / 2**20).rename(
        columns={"py_peak_bytes": "Python peak", "rss_growth_bytes": "RSS growth"}
    ).plot.bar(ax=ax1, logy=True)
    ax1.set_ylabel("MiB (log)")
    ax1.set_title("peak memory")
    s["wall_s"].plot.bar(ax=ax2, color="C2")
    ax2.set_ylabel("seconds")
    ax2.set_title("wall time (untraced)")
    for ax in (ax1, ax2):
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=0)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# -- the lab contract -------------------------------------------------------------------


class StreamingLab:
    """Streaming rows vs loading them all: peak memory and wall time per method."""

    name = "streaming"
    title = "Streaming large results"
    notebook = "04_streaming.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> Any:
        from perfkit.postgres import ServerSettings

        return ServerSettings(backend=params.backend)

    def run(self, params: Params, server: PostgresServer | None, progress: Progress) -> Results:
        import pandas as pd

        assert server is not None  # server_settings() asks for one
        settings, methods = params.settings(), tuple(params.methods)
        frames = run_streaming(
            server.dsn,
            settings,
            methods=methods,
            repeats=params.repeats,
            progress=lambda m, traced, r: progress(f"{m} traced={traced} repeat={r}"),
        )
        frames["summary"] = compare(frames["runs"])
        frames["samples"] = headline_samples(frames["runs"], frames["summary"])
        c = conclusions(frames["summary"], settings.rows)
        c["batch_size"] = settings.batch_size
        frames["conclusions"] = pd.DataFrame([c])
        return Results(frames=frames, server=server.describe())

    def headlines(self, results: Results) -> pd.DataFrame:
        from perfkit.headlines import from_samples

        samples, rows = results.samples, int(results["conclusions"]["rows"].iloc[0])
        what = {"streaming_rss_growth": "RSS growth", "streaming_python_peak": "Python peak"}
        labels = {
            (m, v): f"{g['method'].iloc[0]}: {what[m]} reading {rows:,} rows"
            for (m, v), g in samples.groupby(["metric", "variant"])
        }
        return from_samples(samples, labels=labels)

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        yield "Memory over time", plot_memory(results["memory"])
        yield "Peak memory by method", plot_peaks(results["summary"])

    def conclusions(self, results: Results) -> str:
        c = results["conclusions"].iloc[0].to_dict()
        methods = list(results["summary"]["method"])
        return conclusion_text(c, methods, int(c.get("batch_size", 0)))


def headline_samples(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The measurements behind the headlines: fetchall (naive) vs the streaming method with
    the lowest median (improved), for RSS growth (untimed runs) and Python peak (traced)."""
    import pandas as pd

    by = summary.set_index("method")
    streaming = [m for m in ("stream", "server_cursor") if m in by.index]
    if "fetchall" not in by.index or not streaming:
        return pd.DataFrame(columns=["metric", "variant", "unit", "value", "method"])
    traced = runs[runs["traced"]]
    timed = runs[~runs["traced"]] if (~runs["traced"]).any() else runs
    rows = []
    for metric, column, source in (
        ("streaming_rss_growth", "rss_growth_bytes", timed),
        ("streaming_python_peak", "py_peak_bytes", traced),
    ):
        best = min(streaming, key=lambda m: float(by.loc[m, column]))
        for variant, method in (("naive", "fetchall"), ("improved", best)):
            for value in source.loc[source["method"] == method, column]:
                rows.append(
                    {"metric": metric, "variant": variant, "unit": "B", "value": float(value)}
                    | {"method": method}
                )
    return pd.DataFrame(rows, columns=["metric", "variant", "unit", "value", "method"])


LAB = StreamingLab()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one streaming measurement (internal)")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--settings", required=True)
    parser.add_argument("--traced", action="store_true")
    args = parser.parse_args(argv)
    dsn = os.environ.get(DSN_ENV)
    if not dsn:
        print(f"{DSN_ENV} is not set", file=sys.stderr)
        return 2
    settings = StreamSettings(**json.loads(args.settings))
    record = measure_here(dsn, args.method, settings, traced=args.traced)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
