"""One streaming measurement in this process: read the result one way, sample memory.

The parent (:mod:`perfkit.streaming.measure`) runs this module as ``python -m
perfkit.streaming.child --method M --settings JSON [--traced]`` in a fresh
process, the DSN in the environment variable :data:`~perfkit.streaming.settings.DSN_ENV`;
it prints one JSON record on stdout. So that the process holds only what it
measures, this module imports psycopg, psutil and the standard library, and
from perfkit only :mod:`perfkit.errors` and :mod:`perfkit.streaming.settings`
(no pandas, no matplotlib; ``tests/test_streaming.py`` checks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psutil
import psycopg

from perfkit.errors import ConfigError
from perfkit.streaming.settings import DSN_ENV, METHODS, SQL, StreamSettings


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
