"""Streaming rows vs loading them all: peak memory and wall time of each way to read a result.

The same generated result (``generate_series``; an int, a 32-char text and a
float per row) is read and processed row by row with one of
:data:`~perfkit.streaming.settings.METHODS`:

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
perfkit.streaming.child``) so one method's RSS high-water mark cannot contaminate
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

import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import psutil

from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError
from perfkit.streaming.child import expected_checksum
from perfkit.streaming.settings import DSN_ENV, METHODS, StreamSettings, check_methods

#: The module the parent runs, in a fresh process, for each measurement.
CHILD_MODULE = "perfkit.streaming.child"

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


def measure_in_subprocess(
    dsn: str, method: str, settings: StreamSettings, *, traced: bool
) -> dict[str, Any]:
    """Run :func:`perfkit.streaming.child.measure_here` in a fresh Python process and return
    its record (plus ``external``: the child's RSS sampled from here)."""
    check_methods([method])
    cmd = [
        sys.executable,
        "-m",
        CHILD_MODULE,
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
    methods = check_methods(methods)
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats!r}")
    runs: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for tr in traced:
            for method in methods:
                if progress is not None:
                    progress(method, tr, repeat)
                rec = measure(dsn, method, settings, traced=tr)
                _check_read(rec, method, settings.rows)
                memory += _memory_rows(rec, method, tr, repeat)
                runs.append(_run_row(rec, repeat))
    runs_df = pd.DataFrame(runs, columns=list(RUN_COLUMNS))
    runs_df["py_peak_bytes"] = runs_df["py_peak_bytes"].astype(float)
    return {"runs": runs_df, "memory": pd.DataFrame(memory, columns=list(MEMORY_COLUMNS))}


def _check_read(rec: dict[str, Any], method: str, rows: int) -> None:
    """PerfkitError unless the measurement read all ``rows`` rows with the right checksum."""
    expected = expected_checksum(rows)
    if rec["rows_read"] != rows or rec["checksum"] != expected:
        raise PerfkitError(
            f"{method} read {rec['rows_read']} rows (checksum {rec['checksum']}), "
            f"expected {rows} ({expected})"
        )


def _run_row(rec: dict[str, Any], repeat: int) -> dict[str, Any]:
    """One ``runs`` row from a measurement's record."""
    row = {k: rec.get(k) for k in RUN_COLUMNS}
    row["repeat"] = repeat
    row["samples"] = len(rec["series"])
    return row


def _memory_rows(
    rec: dict[str, Any], method: str, traced: bool, repeat: int
) -> list[dict[str, Any]]:
    """The ``memory`` rows of one measurement: the child's own samples, then the parent's."""
    base = rec["rss_baseline_bytes"]
    points = [("child", t, rss, py) for t, rss, py in rec["series"]]
    points += [("parent", t, rss, None) for t, rss in rec.get("external", [])]
    return [
        {
            "method": method,
            "traced": traced,
            "repeat": repeat,
            "source": source,
            "t_s": t,
            "rss_bytes": rss,
            "rss_growth_bytes": rss - base,
            "py_bytes": math.nan if py is None else py,
        }
        for source, t, rss, py in points
    ]
