"""CPU accounting over an interval: this (client) process, the PostgreSQL server, the machine.

A throughput number means little without knowing who ran out of CPU. Wrap the
measured code in :func:`measure_cpu`::

    with measure_cpu(server) as cpu:
        run_workload(...)
    cpu.usage.client_cpu_pct, cpu.usage.server_cpu_pct, cpu.usage.client_bound

Percentages are of one core (100 = one core busy for the whole interval; the
ceiling is ``cores * 100``). Where the numbers come from:

- client: ``psutil.Process().cpu_times()`` of this process, all threads;
  ``children_cpu_pct`` is child processes that ended (were waited for) inside
  the interval, e.g. a pgbench run.
- local server: the postmaster's own CPU, its reaped children's (backends
  that exited during the interval) and every live child's, via psutil.
- docker server: the container's cgroup CPU counter (cgroup v1
  ``cpuacct.usage`` or v2 ``cpu.stat usage_usec``, found through the
  container's init pid), else the daemon's ``container.stats`` counter.
- anything else (an external DSN): ``server_cpu_pct`` is NaN.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

#: ``client_bound`` threshold, in % of one core. A Python client runs its bytecode
#: under the GIL, so it tops out near 100 % of one core however many threads it
#: has (psycopg's C parts release the GIL, which lets it go slightly past). At 80 %
#: it is close enough to that ceiling to be the likely bottleneck, leaving room
#: for the scheduler noise of a shared machine.
CLIENT_BOUND_PCT = 80.0

CGROUP_ROOT = Path("/sys/fs/cgroup")

#: A reading of cumulative CPU seconds.
Counter = Callable[[], float]


@dataclass(frozen=True)
class CpuUsage:
    """CPU used during one interval, in % of one core (``cores * 100`` is the machine)."""

    wall_s: float
    client_cpu_pct: float
    children_cpu_pct: float
    server_cpu_pct: float
    cores: int
    server_source: str
    client_bound: bool

    def row(self) -> dict[str, Any]:
        """A plain dict for a result frame."""
        return asdict(self)


def _own_cpu() -> tuple[float, float]:
    """(this process incl. threads, its waited-for children) in CPU seconds."""
    t = psutil.Process().cpu_times()
    return t.user + t.system, t.children_user + t.children_system


def process_tree_counter(pid: int) -> Counter:
    """Cumulative CPU seconds of process ``pid``, its reaped and its live descendants.

    A PostgreSQL backend that exits is waited for by the postmaster, so its time
    moves into the postmaster's ``children_*`` times: nothing is lost when
    connections come and go (``--connect``, no pool) during the interval.
    """

    def read() -> float:
        root = psutil.Process(pid)
        total = 0.0
        for child in root.children(recursive=True):
            try:
                t = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        t = root.cpu_times()
        return total + t.user + t.system + t.children_user + t.children_system

    return read


def _cgroup_paths(pid: int) -> list[Path]:
    """CPU accounting files of the cgroup(s) ``pid`` belongs to (v1 cpuacct, v2 unified)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        names = controllers.split(",")
        if "cpuacct" in names:
            for mount in (controllers, "cpuacct", "cpu,cpuacct"):
                found.append(CGROUP_ROOT / mount / rel / "cpuacct.usage")
        elif controllers == "":
            found.append(CGROUP_ROOT / rel / "cpu.stat")
            found.append(CGROUP_ROOT / "unified" / rel / "cpu.stat")
    return list(dict.fromkeys(found))


def cgroup_counter(path: Path) -> Counter:
    """Cumulative CPU seconds of a cgroup from ``cpuacct.usage`` (ns) or ``cpu.stat`` (µs)."""

    def read() -> float:
        text = path.read_text()
        if path.name == "cpuacct.usage":
            return int(text.strip()) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise OSError(f"no usage_usec in {path}")

    return read


def container_counter(container: Any) -> tuple[str, Counter]:
    """The best CPU counter of a docker container: its cgroup file, else ``stats``."""
    container.reload()
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    for path in _cgroup_paths(pid) if pid > 0 else []:
        read = cgroup_counter(path)
        try:
            read()
        except (OSError, ValueError):
            continue
        version = "v1 cpuacct" if path.name == "cpuacct.usage" else "v2 cpu.stat"
        return f"cgroup {version}", read
    return "docker stats", docker_stats_counter(container)


def docker_stats_counter(container: Any) -> Counter:
    """Cumulative CPU seconds from the daemon (``docker stats``'s ``total_usage``, ns).

    Slower than the cgroup file (an API round trip); for daemons whose cgroups
    this process cannot read.
    """

    def read() -> float:
        stats = container.stats(stream=False, one_shot=True)
        return int(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9

    return read


def server_counter(server: Any) -> tuple[str, Counter | None]:
    """Where a server's CPU can be read: ``(source, counter)``; counter None if nowhere."""
    if server is None:
        return "none", None
    postmaster = getattr(server, "postmaster_pid", None)
    if callable(postmaster):
        pid = postmaster()
        if pid is not None:
            return "process tree", process_tree_counter(pid)
    if getattr(server, "backend", None) == "docker":
        return container_counter(server.container)
    return "unavailable", None


class CpuMeter:
    """Measures CPU between :meth:`start` and :meth:`stop` (or as a context manager)."""

    def __init__(self, server: Any = None) -> None:
        # Resolved up front: finding the cgroup must not be part of the interval.
        self.server_source, self._server = server_counter(server)
        self.usage: CpuUsage | None = None
        self._t0 = 0.0
        self._own0 = (0.0, 0.0)
        self._server0 = math.nan

    def _server_now(self) -> float:
        if self._server is None:
            return math.nan
        try:
            return self._server()
        except (psutil.Error, OSError):
            return math.nan

    def start(self) -> None:
        self._server0 = self._server_now()
        self._own0 = _own_cpu()
        self._t0 = time.perf_counter()

    def stop(self) -> CpuUsage:
        wall = time.perf_counter() - self._t0
        own, children = _own_cpu()
        server = self._server_now()
        wall_pct = 100.0 / wall if wall > 0 else math.nan
        client_pct = (own - self._own0[0]) * wall_pct
        self.usage = CpuUsage(
            wall_s=wall,
            client_cpu_pct=client_pct,
            children_cpu_pct=(children - self._own0[1]) * wall_pct,
            server_cpu_pct=(server - self._server0) * wall_pct,
            cores=os.cpu_count() or 1,
            server_source=self.server_source,
            client_bound=client_pct >= CLIENT_BOUND_PCT,
        )
        return self.usage


@contextmanager
def measure_cpu(server: Any = None) -> Iterator[CpuMeter]:
    """Measure CPU over the ``with`` block; the result is the meter's ``usage``."""
    meter = CpuMeter(server)
    meter.start()
    try:
        yield meter
    finally:
        meter.stop()
