"""What one connection costs, measured on an idle server: the contention model's constants.

:func:`measure_setup_costs` makes short, sequential measurements on the server a
herd will run against (never on the herd itself, so the model checked against
a herd is not fitted to it):

- ``server_cpu_per_connect_s``: server CPU per connect + close (fork, auth,
  backend start and exit). Local backend: the postmaster's CPU, its live
  children's and its reaped children's (an exited backend's time moves into
  the postmaster's ``children_user``/``children_system``), via psutil; these
  tick at 10 ms, so they are read around blocks of connects, never one.
  Docker backend: the container's cgroup CPU counter (µs), else the daemon's
  ``container.stats``. Docker's userland port proxy runs outside the
  container; its CPU is not included. After each block the reading waits
  until the block's last backend has exited, so its exit is counted.
- ``postmaster_cpu_per_connect_s``: the postmaster's own part of it (accept,
  fork, reaping the backend), from its own CPU times (psutil, both backends:
  a container's processes are host processes here); NaN where it cannot be
  read. The contention model's postmaster accepts serially at this cost.
- ``client_cpu_per_attempt_s``: this process's CPU (``time.process_time``:
  all threads, psycopg's resolver thread included) per async connect + close
  in an asyncio loop, the way the herd's clients connect.
- ``connect_s``: wall time of one async connect to the idle server (median).
- ``refused_s``: wall time of one async attempt at a closed loopback port
  (median), as :func:`perfkit.retry.herd.calibrate` measures it.
- ``cores``: CPUs the server may use: the postmaster's CPU affinity (local), the
  container's ``NanoCpus`` or ``CpusetCpus`` (docker), else this process's affinity.

The n connects run in blocks; the CPU costs are means over blocks with a seeded
bootstrap interval (the blocks are the unit: ``n_blocks``), the times medians
over single attempts with a bootstrap interval (n = attempts).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import psycopg

from perfkit import validate
from perfkit.asyncrun import run_coroutine
from perfkit.errors import ConfigError, ServerStartError
from perfkit.postgres import PostgresServer
from perfkit.postgres.cpu import server_counter
from perfkit.stats import Estimate, mean_interval, quantile_interval

#: Connects per CPU block: at ~1-3 ms of server CPU each, a block is tens of
#: milliseconds, several of psutil's 10 ms ticks.
BLOCK = 20
#: Connects made before measuring (the first backends read the relation caches).
WARMUP = 5
#: How long a block waits for its last backend to exit before the CPU is read.
SETTLE_TIMEOUT_S = 2.0
MEASURED = (
    "server_cpu_per_connect_s",
    "postmaster_cpu_per_connect_s",
    "client_cpu_per_attempt_s",
    "connect_s",
    "refused_s",
)
#: The keys every ``to_dict`` has (``postmaster_cpu_per_connect_s`` only when measured).
COST_KEYS = ("cores", "server_cpu_per_connect_s", "client_cpu_per_attempt_s", "connect_s",
             "refused_s")  # fmt: skip


def model_costs(measured: Mapping[str, Any]) -> dict[str, float]:
    """The ``costs`` mapping from measured values (a :class:`SetupCosts` or a saved
    ``setup_costs`` row): :data:`COST_KEYS`, plus ``postmaster_cpu_per_connect_s`` when it was
    measured (at most the server's whole cost per connect, which includes it)."""
    out = {k: float(measured[k]) for k in COST_KEYS}
    postmaster = measured.get("postmaster_cpu_per_connect_s")
    if postmaster is not None and math.isfinite(float(postmaster)):
        out["postmaster_cpu_per_connect_s"] = min(
            float(postmaster), out["server_cpu_per_connect_s"]
        )
    return out


@dataclass(frozen=True, kw_only=True)
class SetupCosts:
    """Measured costs of one connection (see the module docstring); seconds, 95 % intervals."""

    backend: str
    cores: float
    cores_source: str
    server_cpu_per_connect_s: float
    server_cpu_per_connect_s_low: float
    server_cpu_per_connect_s_high: float
    server_cpu_source: str
    postmaster_cpu_per_connect_s: float
    postmaster_cpu_per_connect_s_low: float
    postmaster_cpu_per_connect_s_high: float
    client_cpu_per_attempt_s: float
    client_cpu_per_attempt_s_low: float
    client_cpu_per_attempt_s_high: float
    connect_s: float
    connect_s_low: float
    connect_s_high: float
    refused_s: float
    refused_s_low: float
    refused_s_high: float
    #: Connects measured (and refused attempts made); the CPU costs come in ``n_blocks`` blocks.
    n: int
    n_blocks: int

    def to_dict(self) -> dict[str, float]:
        """The ``costs`` mapping :meth:`ContentionSettings.from_costs` reads.

        ``postmaster_cpu_per_connect_s`` is included when it was measured (at most
        the server's whole cost per connect, which includes it).
        """
        return model_costs(self.row())

    def estimate(self, name: str) -> Estimate:
        """One measured cost with its interval and n (blocks for CPU, attempts for times)."""
        if name not in MEASURED:
            raise ConfigError(f"unknown cost {name!r}; measured: {', '.join(MEASURED)}")
        n = self.n_blocks if "cpu" in name else self.n
        low, high = getattr(self, f"{name}_low"), getattr(self, f"{name}_high")
        return Estimate(getattr(self, name), low, high, n)

    def row(self) -> dict[str, Any]:
        """Every field, for a results frame."""
        return asdict(self)

    def summary(self) -> str:
        """A few lines for people: each cost in ms with its interval and n."""
        lines = [
            f"connection costs on the {self.backend} server ({self.cores:g} cores: "
            f"{self.cores_source}; server CPU from {self.server_cpu_source}):"
        ]
        for name in MEASURED:
            est = self.estimate(name)
            unit = "blocks" if "cpu" in name else "attempts"
            lines.append(f"  {name}: {est.format(scale=1000, unit=' ms', digits=3)} {unit}")
        return "\n".join(lines)


def server_cores(server: PostgresServer) -> tuple[float, str]:
    """CPUs ``server`` may run on, and where that number came from."""
    if server.backend == "docker":
        attrs = server.container.attrs.get("HostConfig", {})  # type: ignore[attr-defined]
        nano = attrs.get("NanoCpus") or 0
        if nano:
            return nano / 1e9, "container NanoCpus"
        cpuset = attrs.get("CpusetCpus") or ""
        if cpuset:
            return float(_cpuset_size(cpuset)), "container CpusetCpus"
        return float(len(os.sched_getaffinity(0))), "no container limit: this host's affinity"
    pid = getattr(server, "postmaster_pid", lambda: None)()
    if pid is not None:
        return float(len(os.sched_getaffinity(pid))), "postmaster's CPU affinity"
    return float(len(os.sched_getaffinity(0))), "this process's CPU affinity"


def _cpuset_size(cpuset: str) -> int:
    """How many CPUs a cpuset list such as ``0-2,4`` names."""
    count = 0
    for part in cpuset.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


def _backend_pids(server: PostgresServer) -> set[int]:
    """The server's processes now (empty where the backend cannot list them)."""
    try:
        return set(server.server_pids())
    except (psutil.Error, OSError, ServerStartError):
        return set()


def _settle(server: PostgresServer, baseline: set[int]) -> None:
    """Wait until the server runs no process that was not there at ``baseline``."""
    until = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < until and _backend_pids(server) - baseline:
        time.sleep(0.005)


def _postmaster_counter(server: PostgresServer) -> Callable[[], float] | None:
    """The postmaster's own CPU seconds (not its children's), or None where unreadable."""
    try:
        for pid in server.server_pids():
            proc = psutil.Process(pid)
            if proc.name() in ("postgres", "postmaster"):  # the first is the postmaster

                def read(proc: psutil.Process = proc) -> float:
                    t = proc.cpu_times()
                    return t.user + t.system

                read()
                return read
    except (psutil.Error, OSError, ServerStartError):
        return None
    return None


@dataclass(frozen=True)
class _Block:
    server_cpu_s: float
    postmaster_cpu_s: float
    client_cpu_s: float
    connects: int
    connect_times: list[float]


async def _connect_block(dsn: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=10)
        times.append(time.perf_counter() - t)
        await conn.close()
    return times


async def _refused(count: int) -> list[float]:
    from perfkit.postgres.local import free_port  # a port nothing listens on

    port = free_port()
    times = []
    for _ in range(count):
        t = time.perf_counter()
        try:
            conn = await psycopg.AsyncConnection.connect(
                host="127.0.0.1", port=port, user="x", dbname="x", connect_timeout=2
            )
        except psycopg.OperationalError:
            times.append(time.perf_counter() - t)
        else:  # something took the port meanwhile: not a refused attempt
            await conn.close()
    return times


def _measure_blocks(server: PostgresServer, n: int) -> tuple[str, list[_Block], list[float]]:
    """``n`` connects in blocks of :data:`BLOCK`, and ``n`` refused attempts, in one loop."""
    source, read_server = server_counter(server)
    if read_server is None:
        raise ConfigError(
            f"the {server.backend} backend's server CPU cannot be read here; "
            "measure setup costs on a local or docker server"
        )
    count, extra = divmod(n, n // BLOCK)  # blocks of BLOCK to 2 * BLOCK - 1 connects, even
    sizes = [count + (i < extra) for i in range(n // BLOCK)]
    dsn = server.dsn
    read_postmaster = _postmaster_counter(server) or (lambda: math.nan)

    async def main() -> tuple[list[_Block], list[float]]:
        await _connect_block(dsn, WARMUP)
        baseline = _backend_pids(server)
        _settle(server, baseline)
        blocks = []
        for size in sizes:
            s0, p0 = read_server(), read_postmaster()
            c0 = time.process_time()
            times = await _connect_block(dsn, size)
            c1 = time.process_time()
            _settle(server, baseline)
            s1, p1 = read_server(), read_postmaster()
            blocks.append(_Block(s1 - s0, p1 - p0, c1 - c0, size, times))
        return blocks, await _refused(n)

    blocks, refused = run_coroutine(main, fresh_thread=True)
    return source, blocks, refused


def _fields(prefix: str, est: Estimate) -> dict[str, float]:
    return {prefix: est.value, f"{prefix}_low": est.low, f"{prefix}_high": est.high}


def measure_setup_costs(server: PostgresServer, *, n: int = 200, seed: int = 0) -> SetupCosts:
    """Measure the contention model's constants on a running ``server`` (module docstring).

    ``n`` connects (at least 2 * :data:`BLOCK`, so there are two CPU blocks) and ``n``
    refused attempts, one at a time; ``seed`` seeds the bootstrap intervals. Takes
    about ``n`` x (connect + 5 ms). Every connection is closed before it returns.
    """
    n = validate.integer("n", n, minimum=2 * BLOCK)
    validate.integer("seed", seed, minimum=0)
    if not server.is_ready():
        raise ServerStartError(
            f"the {server.backend} server at {server.host}:{server.port} does not answer; "
            "start it (server.start()) before measuring its setup costs"
        )
    cores, cores_source = server_cores(server)
    source, blocks, refused = _measure_blocks(server, n)
    server_per = [b.server_cpu_s / b.connects for b in blocks]
    postmaster_per = [b.postmaster_cpu_s / b.connects for b in blocks]
    postmaster = (
        mean_interval(postmaster_per, seed=seed + 4)
        if all(math.isfinite(v) for v in postmaster_per)
        else Estimate(math.nan, math.nan, math.nan, 0)
    )
    client_per = [b.client_cpu_s / b.connects for b in blocks]
    connects = [t for b in blocks for t in b.connect_times]
    if len(refused) < n // 2:
        raise ConfigError(
            f"only {len(refused)} of {n} attempts at a free loopback port were refused "
            "(something else listens there); measure again"
        )
    return SetupCosts(
        backend=server.backend,
        cores=cores,
        cores_source=cores_source,
        server_cpu_source=source,
        n=len(connects),
        n_blocks=len(blocks),
        **_fields("server_cpu_per_connect_s", mean_interval(server_per, seed=seed)),
        **_fields("postmaster_cpu_per_connect_s", postmaster),
        **_fields("client_cpu_per_attempt_s", mean_interval(client_per, seed=seed + 1)),
        **_fields("connect_s", quantile_interval(connects, 0.5, seed=seed + 2)),
        **_fields("refused_s", quantile_interval(refused, 0.5, seed=seed + 3)),
    )
