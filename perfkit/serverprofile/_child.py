"""The sampler's child process: ``python -m perfkit.serverprofile._child``.

Reads its settings (a JSON line: dsn, interval_s, reconnect_s) and then commands
(``pause``, ``resume``, ``reset``, ``profile``, ``stop``), one a line, from stdin;
answers ``ready`` once connected (or not) and a JSON snapshot for ``profile`` and
``stop``, one a line, on stdout. It exits when stdin closes: it cannot outlive
its parent. A separate interpreter started by ``subprocess`` rather than
multiprocessing, so it never re-imports the parent's ``__main__``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import time
from collections import Counter
from typing import Any

import psycopg

from perfkit.serverprofile.sampler import APPLICATION_NAME, QUERY, Key


class Loop:
    """A fixed grid of samples, commands read between them."""

    def __init__(self, dsn: str, interval_s: float, reconnect_s: float) -> None:
        self.dsn, self.interval_s, self.reconnect_s = dsn, interval_s, reconnect_s
        self.counts: Counter[Key] = Counter()
        self.samples = self.missed = 0
        self.query_s = self.cpu0 = 0.0
        self.error: str | None = None
        self.paused = False
        self.conn: psycopg.Connection[Any] | None = None
        self.cur: psycopg.Cursor[Any] | None = None
        self._buffer = b""

    def snapshot(self) -> str:
        return json.dumps(
            {
                "counts": [[*k, n] for k, n in self.counts.items()],
                "samples": self.samples,
                "missed": self.missed,
                "query_s": self.query_s,
                "cpu_s": time.process_time() - self.cpu0,
                "error": self.error,
            }
        )

    def reset(self) -> None:
        self.counts.clear()
        self.samples = self.missed = 0
        self.query_s = 0.0
        self.cpu0 = time.process_time()

    def sample(self) -> None:
        try:
            if self.conn is None or self.cur is None:
                self.conn = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=2, application_name=APPLICATION_NAME
                )
                self.cur = self.conn.cursor()
            t0 = time.perf_counter()
            self.cur.execute(QUERY, prepare=True)  # one prepared statement, one cursor
            rows = self.cur.fetchall()
            self.query_s += time.perf_counter() - t0
        except psycopg.Error as exc:
            self.error = f"{type(exc).__name__}: {exc}".strip()
            self.close()
            self.missed += 1
            raise
        for wtype, event, state, btype, n in rows:
            self.counts[(wtype, event, state, btype)] += int(n)
        self.samples += 1

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn, self.cur = None, None

    def lines(self, timeout: float) -> list[str] | None:
        """Command lines that arrived within ``timeout`` (None: stdin closed)."""
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(0, 4096)
        if not chunk:
            return None
        self._buffer += chunk
        *done, self._buffer = self._buffer.split(b"\n")
        return [line.decode().strip() for line in done]

    def command(self, cmd: str) -> bool:
        """Handle one command; False to stop."""
        if cmd == "pause":
            self.paused = True
        elif cmd == "resume":
            self.paused = False
        elif cmd == "reset":
            self.reset()
            self.paused = False
        elif cmd in ("profile", "stop"):
            if cmd == "stop":
                self.close()
            print(self.snapshot(), flush=True)
            return cmd != "stop"
        return True

    def run(self) -> None:
        next_at = time.monotonic()
        while True:
            lines = self.lines(max(0.0, next_at - time.monotonic()))
            if lines is None or not all(self.command(c) for c in lines):
                return
            if lines or time.monotonic() < next_at:
                continue
            if self.paused:  # connection kept, no query: costs nothing
                next_at = time.monotonic() + self.interval_s
                continue
            try:
                self.sample()
            except psycopg.Error:
                next_at = time.monotonic() + self.reconnect_s
                continue
            next_at += self.interval_s  # a fixed grid: the rate stays 1 / interval
            behind = time.monotonic() - next_at
            if behind > 0:  # fell behind: skip the missed ticks
                self.missed += int(behind // self.interval_s)
                next_at = time.monotonic()


def main() -> None:
    settings = json.loads(sys.stdin.buffer.readline() or b"{}")
    loop = Loop(settings["dsn"], float(settings["interval_s"]), float(settings["reconnect_s"]))
    with contextlib.suppress(psycopg.Error):
        loop.sample()  # connected (or not) before the parent goes on
    loop.reset()
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError, OSError):
        loop.run()
    loop.close()


if __name__ == "__main__":
    main()
