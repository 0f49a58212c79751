"""A background sampler of ``pg_stat_activity``: wait events counted, not stored.

:class:`WaitSampler` holds one dedicated connection (``application_name``
:data:`APPLICATION_NAME`) in a process of its own and every ``interval_s`` asks
the server for its backends grouped by (wait_event_type, wait_event, state,
backend_type). It keeps only a count per group and the number of samples, so
its memory is bounded by the number of distinct groups PostgreSQL can report,
whatever the run's length. Its own backend (and any other perfkit sampler's) is
left out. When the connection drops (a restart) it reconnects every
``reconnect_s`` and counts the samples it missed.

Why a process and not a thread: a thread waking 100 times a second in the
measuring process competes for the GIL with the lab's Python clients; on
``SELECT 1`` through a pool of 16 threads that cost 9-21 % of throughput here,
the same sampler in a process of its own 0.4-0.9 % (``tests/test_serverprofile_bench.py``).
The child is a fresh interpreter (:mod:`perfkit.serverprofile._child`, started by
``subprocess``: no fork of a parent running threads that hold connections, and no
re-import of the parent's ``__main__`` as multiprocessing's spawn would do), driven
over its stdin and exiting when that closes, so it cannot outlive its parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

#: The sampler's (and the profiler's snapshots') application_name: left out of every sample.
APPLICATION_NAME = "perfkit-serverprofile"
#: A comment on every profiler query, so pg_stat_statements' top lists can leave them out.
MARKER = "/* perfkit-serverprofile */"
#: The wait event profile's key: (wait_event_type, wait_event, state, backend_type).
KEY_COLUMNS = ("wait_event_type", "wait_event", "state", "backend_type")
#: The child's module (``python -m``): how a test finds the sampler's processes.
CHILD_MODULE = "perfkit.serverprofile._child"
READY_TIMEOUT_S = 30.0

QUERY = (
    f"{MARKER} SELECT coalesce(wait_event_type, ''), coalesce(wait_event, ''), "
    "coalesce(state, ''), coalesce(backend_type, ''), count(*) "
    "FROM pg_stat_activity "
    f"WHERE pid <> pg_backend_pid() AND application_name IS DISTINCT FROM '{APPLICATION_NAME}' "
    "GROUP BY 1, 2, 3, 4"
)

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Profile:
    """What a sampler saw: backend counts per key summed over ``samples`` samples."""

    counts: dict[Key, int]
    samples: int
    missed: int
    elapsed_s: float
    query_s: float  # time spent in the sampler's own queries (its cost to the server)
    cpu_s: float = 0.0  # CPU time of the sampler's process (its cost to the client machine)
    error: str | None = None  # the last connection error, if any

    def rows(self, **tags: Any) -> list[dict[str, Any]]:
        """One row per key: the tags, the key's columns, ``count`` and the run's ``samples``."""
        return [
            tags
            | dict(zip(KEY_COLUMNS, key, strict=True))
            | {
                "count": n,
                "samples": self.samples,
                "missed": self.missed,
                "elapsed_s": self.elapsed_s,
                "query_s": self.query_s,
                "cpu_s": self.cpu_s,
            }
            for key, n in sorted(self.counts.items())
        ]


class WaitSampler:
    """Sample ``pg_stat_activity`` every ``interval_s`` over one connection, in a child process."""

    def __init__(self, dsn: str, *, interval_s: float = 0.01, reconnect_s: float = 0.25) -> None:
        self._dsn = str(dsn)
        self.interval_s = interval_s
        self.reconnect_s = reconnect_s
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._started = 0.0
        self._stopped: float | None = None
        self._final: Profile | None = None

    def start(self) -> Self:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        settings = {
            "dsn": self._dsn,
            "interval_s": self.interval_s,
            "reconnect_s": self.reconnect_s,
        }
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(settings) + "\n")  # on a pipe: never in argv or logs
        self._proc.stdin.flush()
        self._readline(READY_TIMEOUT_S)  # sampling starts when start() returns
        self._started = time.monotonic()
        return self

    def _readline(self, timeout: float) -> str | None:
        out = self._proc.stdout if self._proc is not None else None
        if out is None:
            return None
        ready, _, _ = select.select([out], [], [], timeout)
        return out.readline() if ready else None

    def reset(self) -> None:
        """Start counting afresh (and sampling, if paused): one process for many blocks."""
        self._send("reset")
        self._started = time.monotonic()

    def _send(self, cmd: str, *, reply: bool = False) -> dict[str, Any] | None:
        with self._lock:
            if self._proc is None or self._proc.stdin is None or self._proc.poll() is not None:
                return None
            try:
                self._proc.stdin.write(cmd + "\n")
                self._proc.stdin.flush()
                line = self._readline(10.0) if reply else None
            except (OSError, ValueError):
                return None
        return json.loads(line) if line else None

    def pause(self) -> None:
        """Stop sampling but keep the connection (for the overhead's interleaved windows)."""
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def stop(self) -> Profile:
        """Stop the child (its connection closed first) and return what it counted."""
        if self._final is not None:
            return self._final
        state = self._send("stop", reply=True)
        self._stopped = time.monotonic()
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._final = self._profile(state)
        return self._final

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def profile(self) -> Profile:
        """The counts so far (the sampler may still be running)."""
        if self._final is not None:
            return self._final
        return self._profile(self._send("profile", reply=True))

    def _profile(self, state: dict[str, Any] | None) -> Profile:
        end = self._stopped if self._stopped is not None else time.monotonic()
        elapsed = end - self._started if self._started else 0.0
        if state is None:
            return Profile({}, 0, 0, elapsed, 0.0, error="the sampler process did not answer")
        counts = {tuple(row[:4]): int(row[4]) for row in state["counts"]}
        return Profile(
            counts,  # type: ignore[arg-type]
            int(state["samples"]),
            int(state["missed"]),
            elapsed,
            float(state["query_s"]),
            float(state["cpu_s"]),
            state["error"],
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
