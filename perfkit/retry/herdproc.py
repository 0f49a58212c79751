"""The big herd's clients, on one event loop or spread over several client processes.

A :class:`ClientShare` is one event loop's part of the herd: clients
``first .. first + count - 1`` each open a connection (the quiet phase), then
wait for it to break (the socket turns readable: the backend's FATAL, then
EOF) and reconnect with the strategy (:func:`async_connect_with_retry`, each
client's RNG stream fixed by its index in the whole herd, so a client's
schedule is the same however the herd is split). It also measures its event
loop's CPU over the reconnect phase: the loop thread's CPU time
(``time.thread_time``) from the first client noticing the loss to the last
client finishing, read every 100 ms, and how late those readings came (loop
lag). One loop runs on one core at most, so CPU / wall near 1 over some
stretch means the loop, not the server, set the pace then. The whole phase's
average hides that (its clients sleep between attempts most of it), so the
peak over 0.5 s stretches is what decides "saturated".

Two ways to run the shares, with the same synchronous interface (``start``:
everyone connected; ``results``: every share's traces; ``close``):

- :class:`InProcessClients`: one share on an event loop on a helper thread of
  this process (the single-loop herd the kit always ran);
- :class:`ClientProcesses`: P shares, each in a child process of its own
  (``python -m perfkit.retry.herdproc``: a fresh interpreter, no fork of a
  parent whose threads hold connections, and, unlike multiprocessing's
  ``spawn``, no re-import of the parent's ``__main__``, so a script without a
  ``__main__`` guard or a notebook works), driven over a socket pair with
  multiprocessing's framed ``Connection``. The job (DSN included) travels
  pickled over it, never on a command line or in the environment. Each child answers
  ``ready`` once its share is connected, sends its result once its clients
  are done, and closes its connections when told (or when the parent's end of
  the pipe closes: it cannot outlive its parent). ``close`` tells the
  children, joins them, and terminates (then kills) any that do not exit.

Scheduling: PostgreSQL puts every backend in a session of its own
(``setsid``), and with the kernel's autogroups (``kernel.sched_autogroup_enabled
= 1``, the default of desktop and many server kernels) the fair scheduler
shares the CPU first among sessions, then within each. Children started in the
parent's session would form one autogroup together (with the parent's
threads): P client loops would get one backend's share between them, however
many there are. Each child is therefore started in a session of its own
(``start_new_session``), so that every client loop, like every backend, is one
equal-weight entity of the scheduler: the contention model's assumption 1.
(``own_sessions=False`` keeps them in the parent's session. At 1,000 clients
that showed no clearly larger loop lag on this machine, 2 herds each; the
sessions make the setting match the model rather than fix a measured
starvation.)
With autogroups, a thread's niceness (``nice``) only weighs it against the
threads of its own session, not against the backends. A child still cannot
outlive the parent (the pipe), and Ctrl-C reaches it through the parent's
``close``.

With a retry budget (``ShareJob.budget``), each loop's clients share one
token bucket, that loop's part of the fleet's (:func:`share_budget`).

Times are ``time.monotonic`` readings; on Linux that is ``CLOCK_MONOTONIC``,
one clock for the whole system, so the children's traces line up with the
parent's restart time (``tests/test_herdproc.py`` checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Self

import psycopg

from perfkit.dsn import mask
from perfkit.errors import ConfigError, PerfkitError, RetryError
from perfkit.retry.connect import async_connect_with_retry
from perfkit.retry.experiments import client_rng
from perfkit.retry.strategies import Strategy
from perfkit.retry.token_bucket import RetryTokenBucket
from perfkit.retry.trace import Trace

#: Clients of the whole herd that open their first connection at the same time (the quiet phase).
SETUP_CONCURRENCY = 64
#: How long a child may take to start and connect its share.
SETUP_TIMEOUT_S = 120.0
#: How long a child may take to exit once told to close, before it is terminated.
JOIN_TIMEOUT_S = 10.0
#: Open files a client process needs beyond one socket per client.
FD_MARGIN = 256
#: A client loop above this share of one core during the reconnect phase counts as saturated.
SATURATED_UTIL = 0.9
#: How often a client loop reads its own CPU clock during the reconnect phase.
CPU_SAMPLE_S = 0.1
#: The window over which a loop's peak CPU use is taken (a storm's first seconds, not the
#: whole phase, most of which the clients spend asleep between attempts).
PEAK_WINDOW_S = 0.5


class ProcessFailed(PerfkitError):
    """A client process of the herd failed or did not answer (the message says which and why)."""


@dataclass(frozen=True, kw_only=True)
class ShareJob:
    """One event loop's clients: ``first .. first + count - 1`` of a herd of ``n_clients``."""

    dsn: str
    strategy: Strategy | str  # a named strategy or a Strategy object (pickled to the child)
    first: int
    count: int
    n_clients: int
    seed: int
    connect_timeout: float | None
    deadline: float | None
    setup_concurrency: int = SETUP_CONCURRENCY
    nice: int | None = None  # the loop thread's niceness (None: as inherited)
    #: The label of the strategy in traces and RNG streams (default: its name, or its kind).
    label: str | None = None
    #: This share's part of a fleet-wide retry budget: ``(capacity, refill_per_s)``, each the
    #: fleet's divided by the number of shares (:func:`share_budget`); None: no budget.
    budget: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        """The strategy's label."""
        if self.label is not None:
            return self.label
        return self.strategy if isinstance(self.strategy, str) else self.strategy.kind

    def token_bucket(self) -> RetryTokenBucket | None:
        """This share's token bucket (waiting when empty), shared by its clients."""
        if self.budget is None:
            return None
        capacity, refill = self.budget
        return RetryTokenBucket(capacity=capacity, refill_per_s=refill, on_empty="wait")


def share_budget(capacity: float, refill_per_s: float, shares: int) -> tuple[float, float]:
    """A fleet-wide retry budget split over ``shares`` client loops: capacity / P, refill / P.

    The loops cannot share one bucket without a round trip per retry, so each
    gets an equal part: the fleet's retries still start at most ``capacity`` at
    once plus ``refill_per_s`` per second in total; what is lost is lending (a
    loop whose clients have all connected does not pass its tokens on), so a
    split budget is at most as permissive as the shared one. A loop's burst is
    never below one token.
    """
    return max(1.0, capacity / shares), refill_per_s / shares


@dataclass(kw_only=True)
class ShareResult:
    """What one share hands back: its clients' traces (in client order) and its loop's CPU.

    ``cpu_samples``: ``(monotonic, loop thread CPU)`` every :data:`CPU_SAMPLE_S`
    from the first client noticing the loss to the last client finishing;
    ``max_lag_s``: the most a sample came late (the loop was busy elsewhere).
    """

    first: int
    traces: list[Trace]
    setup_s: float
    cpu_s: float
    wall_s: float
    pid: int
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)
    max_lag_s: float = 0.0
    nice: int = 0  # the loop thread's niceness during the run

    @property
    def cpu_util(self) -> float:
        """CPU / wall over the whole reconnect phase."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def peak_cpu_util(self) -> float:
        """The busiest :data:`PEAK_WINDOW_S` of the reconnect phase (:func:`peak_util`)."""
        return peak_util(self.cpu_samples)


def peak_util(samples: Sequence[tuple[float, float]], window_s: float = PEAK_WINDOW_S) -> float:
    """Most CPU per wall second over any stretch of at least ``window_s`` between samples.

    ``samples`` are ``(wall, cpu)`` readings in time order; NaN with fewer than two.
    A phase shorter than the window counts as one stretch.
    """
    if len(samples) < 2:
        return math.nan
    best, j = -math.inf, 0
    for i in range(len(samples)):
        t, cpu = samples[i]
        j = max(j, i + 1)
        while j < len(samples) and samples[j][0] - t < window_s:
            j += 1
        if j >= len(samples):
            break
        best = max(best, (samples[j][1] - cpu) / (samples[j][0] - t))
    if best == -math.inf:  # shorter than the window
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else math.nan
    return best


def fd_limit_error(n_clients: int, processes: int, hard: int, *, margin: int = FD_MARGIN) -> str:
    """The message for a hard open-files limit below what each process's share needs."""
    need = math.ceil(n_clients / processes) + margin
    where = "the process" if processes == 1 else f"each of {processes} client processes"
    text = (
        f"{n_clients} clients need {need} open files in {where} but the hard limit is {hard}: "
        f"raise it as root with `ulimit -Hn {need} && ulimit -n {need}` in the shell that "
        f"runs the herd (or a line `*  hard  nofile  {need}` in /etc/security/limits.conf, "
        "then log in again)"
    )
    if hard > margin:
        spread = math.ceil(n_clients / (hard - margin))
        text += f", or spread the clients over client_processes={spread}"
    return text


def ensure_fd_limit(
    n_clients: int, *, margin: int = FD_MARGIN, processes: int = 1
) -> dict[str, Any]:
    """Raise the soft open-files limit to what one process's share needs, if it is lower.

    A share is ``ceil(n_clients / processes)`` sockets plus ``margin``; the
    children inherit the raised soft limit. Returns the limits before and
    after; ConfigError (with the command that raises it) when the hard limit is
    too low.
    """
    need = math.ceil(n_clients / processes) + margin
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info: dict[str, Any] = {"needed": need, "soft_before": soft, "hard": hard, "raised": False}
    if soft == resource.RLIM_INFINITY or soft >= need:
        info["soft"] = soft
        return info
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(fd_limit_error(n_clients, processes, hard, margin=margin))
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    info.update(soft=need, raised=True)
    return info


def check_nice(nice: int | None) -> None:
    """ConfigError (before anything starts) when this process may not take niceness ``nice``.

    Lowering it below the current one (a higher priority) needs root or
    CAP_SYS_NICE (or a ``nice`` resource limit, ``ulimit -e``, that allows it).
    """
    if nice is None:
        return
    if isinstance(nice, bool) or not isinstance(nice, int) or not -20 <= nice <= 19:
        raise ConfigError(f"client niceness must be an int in -20..19 or None, got {nice!r}")
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice >= current or os.geteuid() == 0:
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if soft == resource.RLIM_INFINITY or 20 - nice <= soft:
        return
    raise ConfigError(
        f"client niceness {nice} is below this process's ({current}): that needs root or "
        f"CAP_SYS_NICE, or `ulimit -e {20 - nice}` (a nice limit in "
        "/etc/security/limits.conf for the hard one); or leave client_nice at None"
    )


def split(n_clients: int, processes: int) -> list[tuple[int, int]]:
    """``(first, count)`` of ``processes`` contiguous shares; their sizes differ by 1 at most."""
    base, extra = divmod(n_clients, processes)
    shares, first = [], 0
    for p in range(processes):
        count = base + (p < extra)
        shares.append((first, count))
        first += count
    return shares


async def connect_share(job: ShareJob) -> list[psycopg.AsyncConnection[Any]]:
    """The quiet phase: every client of the share opens its connection (a few at a time)."""
    gate = asyncio.Semaphore(max(1, job.setup_concurrency))

    async def one() -> psycopg.AsyncConnection[Any]:
        async with gate:
            conn, _ = await async_connect_with_retry(
                job.dsn, "exponential", connect_timeout=10.0, deadline=60.0, autocommit=True
            )
            return conn

    results = await asyncio.gather(*(one() for _ in range(job.count)), return_exceptions=True)
    conns = [r for r in results if isinstance(r, psycopg.AsyncConnection)]
    failed = [r for r in results if not isinstance(r, psycopg.AsyncConnection)]
    if failed:
        for conn in conns:
            await conn.close()
        raise PerfkitError(
            f"{len(failed)} of {job.count} clients could not make their first connection: "
            f"{mask(str(failed[0]))}"
        )
    return conns


class ClientShare:
    """One event loop's clients: connect, notice the loss, reconnect, close (see the module)."""

    def __init__(self, job: ShareJob) -> None:
        self.job = job
        self.conns: list[psycopg.AsyncConnection[Any]] = []
        self.new_conns: list[psycopg.AsyncConnection[Any] | None] = [None] * job.count
        self.lost: list[asyncio.Event] = []
        self.fds: list[int] = []
        self.tasks: list[asyncio.Task[Trace]] = []
        self.setup_s = math.nan
        self._first_notice: tuple[float, float] | None = None  # (monotonic, thread CPU)
        self._samples: list[tuple[float, float]] = []
        self._max_lag = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self.bucket = job.token_bucket()

    async def connect(self) -> None:
        """Connect every client and start them waiting for the loss."""
        if self.job.nice is not None:  # this thread only (Linux: niceness is per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.job.nice)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self.conns = await connect_share(self.job)
        self.setup_s = time.monotonic() - started
        self.lost = [asyncio.Event() for _ in self.conns]
        self.fds = [conn.pgconn.socket for conn in self.conns]
        for i, fd in enumerate(self.fds):
            loop.add_reader(fd, self._noticed, i)
        self.tasks = [asyncio.create_task(self._client(i)) for i in range(self.job.count)]

    def _noticed(self, i: int) -> None:
        if self._first_notice is None:
            self._first_notice = (time.monotonic(), time.thread_time())
            self._samples.append(self._first_notice)
            self._sampler = asyncio.get_running_loop().create_task(self._sample())
        self.lost[i].set()

    async def _sample(self) -> None:
        """Read the loop thread's CPU clock every CPU_SAMPLE_S, and how late each reading is."""
        while True:
            due = time.monotonic() + CPU_SAMPLE_S
            await asyncio.sleep(CPU_SAMPLE_S)
            now = time.monotonic()
            self._max_lag = max(self._max_lag, now - due)
            self._samples.append((now, time.thread_time()))

    async def _client(self, i: int) -> Trace:
        job = self.job
        await self.lost[i].wait()
        asyncio.get_running_loop().remove_reader(self.fds[i])
        await self.conns[i].close()
        index = job.first + i
        try:
            conn, trace = await async_connect_with_retry(
                job.dsn,
                job.strategy,
                connect_timeout=job.connect_timeout,
                deadline=job.deadline,
                rng=client_rng(job.seed, "bigherd", job.name, job.n_clients, index),
                token_bucket=self.bucket,
                autocommit=True,
            )
        except RetryError as exc:
            return exc.trace
        self.new_conns[i] = conn
        return trace

    async def reconnect(self) -> ShareResult:
        """Wait until every client has reconnected (or given up); the traces and the CPU."""
        traces = list(await asyncio.gather(*self.tasks))
        end, cpu_end = time.monotonic(), time.thread_time()
        if self._sampler is not None:
            self._sampler.cancel()
        self._samples.append((end, cpu_end))
        t0, cpu0 = self._first_notice or (end, cpu_end)
        return ShareResult(
            first=self.job.first,
            traces=traces,
            setup_s=self.setup_s,
            cpu_s=cpu_end - cpu0,
            wall_s=end - t0,
            pid=os.getpid(),
            cpu_samples=self._samples,
            max_lag_s=self._max_lag,
            nice=os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
        )

    async def close(self) -> None:
        """Cancel what still runs and close every connection, old and new."""
        if self._sampler is not None:
            self._sampler.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for i, fd in enumerate(self.fds):
            if not self.lost[i].is_set():
                loop.remove_reader(fd)
        for conn in [*self.conns, *self.new_conns]:
            if conn is not None and not conn.closed:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()


class InProcessClients:
    """One share on an event loop on a helper thread of this process (the single-loop herd)."""

    def __init__(self, job: ShareJob) -> None:
        self.share = ClientShare(job)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="perfkit-bigherd-loop", daemon=True
        )
        self._reconnect: Any = None

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Any, timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = SETUP_TIMEOUT_S) -> None:
        self._run(self.share.connect(), timeout)
        self._reconnect = asyncio.run_coroutine_threadsafe(self.share.reconnect(), self._loop)

    def results(self, timeout: float) -> list[ShareResult]:
        try:
            return [self._reconnect.result(timeout)]
        except TimeoutError:
            raise ProcessFailed(f"the clients did not finish within {timeout:g} s") from None

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._run(self.share.close(), JOIN_TIMEOUT_S)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(JOIN_TIMEOUT_S)
            if not self._thread.is_alive():
                self._loop.close()


def child_environment() -> dict[str, str]:
    """The children's environment: ours, with this perfkit first on the import path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class ClientProcesses:
    """One share per child process (``python -m perfkit.retry.herdproc``), over socket pairs."""

    def __init__(self, jobs: Sequence[ShareJob], *, own_sessions: bool = True) -> None:
        self.jobs = list(jobs)
        self.own_sessions = own_sessions
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pipes: list[Connection] = []

    def __enter__(self) -> Self:
        env = child_environment()
        try:
            for job in self.jobs:
                ours, theirs = socket.socketpair()
                with ours, theirs:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "perfkit.retry.herdproc", str(theirs.fileno())],
                        pass_fds=[theirs.fileno()],
                        stdin=subprocess.DEVNULL,
                        env=env,
                        # A session (so a scheduler autogroup) of its own, as every backend
                        # has: see "Scheduling" in the module docstring.
                        start_new_session=self.own_sessions,
                    )
                    self.procs.append(proc)
                    self.pipes.append(Connection(ours.detach()))
                self.pipes[-1].send(job)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _gather(self, kind: str, timeout: float) -> list[Any]:
        """Each child's next message (``kind``), or ProcessFailed naming the child that failed.

        A child that dies closes its end of the socket pair: EOF, not a hang.
        """
        pending, got = set(range(len(self.procs))), {}
        until = time.monotonic() + timeout
        while pending:
            left = until - time.monotonic()
            if left <= 0:
                raise ProcessFailed(
                    f"client processes {sorted(pending)} sent no {kind} within {timeout:g} s"
                )
            for conn in wait([self.pipes[i] for i in pending], left):
                i = self.pipes.index(conn)  # type: ignore[arg-type]
                try:
                    tag, payload = self.pipes[i].recv()
                except EOFError:
                    tag, payload = "exit", None
                if tag != kind:
                    raise ProcessFailed(self._failure(i, kind, tag, payload))
                got[i] = payload
                pending.discard(i)
        return [got[i] for i in range(len(self.procs))]

    def _failure(self, i: int, kind: str, tag: str, payload: Any) -> str:
        if tag == "error":
            return f"client process {i} failed before its {kind}: {payload}"
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.procs[i].wait(1.0)
        code = self.procs[i].returncode
        return f"client process {i} exited (code {code}) before sending its {kind}"

    def start(self, timeout: float = SETUP_TIMEOUT_S) -> None:
        self._gather("ready", timeout)

    def results(self, timeout: float) -> list[ShareResult]:
        return self._gather("result", timeout)

    def close(self) -> None:
        """Tell every child to close its connections; wait, then terminate, then kill."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("close", None))
            pipe.close()
        until = time.monotonic() + JOIN_TIMEOUT_S
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(until - time.monotonic(), 0.1))
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(2.0)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs, self.pipes = [], []


# -- the child ----------------------------------------------------------------------------


def child_main(fd: int) -> None:
    """A client process: read the job, connect the share, say ready, reconnect, send the
    result, close when told (or when the parent's end closes)."""
    pipe = Connection(fd)
    try:
        job: ShareJob = pipe.recv()
        asyncio.run(_child(job, pipe))
    except BaseException as exc:
        with contextlib.suppress(OSError, ValueError):
            pipe.send(("error", mask("".join(traceback.format_exception_only(exc)).strip())))
        raise SystemExit(1) from None
    finally:
        pipe.close()


async def _child(job: ShareJob, pipe: Connection) -> None:
    ensure_fd_limit(job.count)  # inherited from the parent, which checked it; raise the soft one
    loop = asyncio.get_running_loop()
    told = asyncio.Event()  # the parent wrote (close) or went away (EOF)
    loop.add_reader(pipe.fileno(), told.set)
    share = ClientShare(job)
    try:
        await share.connect()
        pipe.send(("ready", time.monotonic()))
        done = asyncio.create_task(share.reconnect())
        heard = asyncio.create_task(told.wait())
        await asyncio.wait({done, heard}, return_when=asyncio.FIRST_COMPLETED)
        heard.cancel()
        if done.done():
            pipe.send(("result", done.result()))
            await told.wait()
        else:
            done.cancel()
    finally:
        loop.remove_reader(pipe.fileno())
        await share.close()


if __name__ == "__main__":
    # Run the package's module, not this ``__main__`` copy, so the results pickle by its name.
    from perfkit.retry import herdproc

    herdproc.child_main(int(sys.argv[1]))
