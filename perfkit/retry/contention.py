"""A herd model whose server contends for CPU: processor sharing, wasted work, a retry budget.

:mod:`perfkit.retry.simulate` serves attempts first come, first served at a
calibrated rate; checked against a real 1,000-client herd it reconnects far
too early, because the real server forks a backend per attempt and, with the
clients' event loops, shares a few cores among all attempts in flight. This
model keeps that model's scenario (outage, boot, hang window, refusals,
strategies, deadline, ``max_connections``, accept backlog and SYN
retransmits) and replaces its FIFO server with CPU contention.

Assumptions (each one a simplification a reader should weigh):

1. **One CPU pool.** The server's backends, the postmaster and the clients'
   event loops share ``cores`` CPUs (the same machine, as in the real herd).
   The kernel is modelled as a fair scheduler: every runnable entity gets
   ``share = min(1, cores / runnable)`` of a core, where runnable counts the
   backends setting up a connection, the postmaster while it has connections
   to accept, and the client event loops that have work. An entity is a
   scheduler *session*: Linux's fair scheduler with autogroups
   (``kernel.sched_autogroup_enabled = 1``) shares the CPU among sessions
   first, and PostgreSQL puts every backend (and the postmaster) in a session
   of its own (``setsid``). The client loops are one entity each when each
   client process has a session of its own (``client_sessions=None``, as
   :mod:`perfkit.retry.herdproc` starts them); client loops that share
   ``client_sessions`` sessions count as at most that many entities and
   share their weight (``client_sessions=1``: all client processes in the
   herd runner's session, ~1,000 backends' sessions against one for all the
   clients; a thread's niceness would not change that, it weighs only within
   its session). Measured: at 1,000 clients, 2 herds each of naive and full
   jitter with the client processes in one session showed no more loop lag
   than with a session each (0.7-1.1 s at worst), so how much the sessions
   matter on this kernel (6.18, EEVDF) is not shown. A docker
   server's processes are all in the container's cgroup, one group entity of
   the scheduler (``server_groups=1``): the group weighs as one entity but may
   use as many cores as it has runnable processes (water-filling: loops and
   groups get equal shares, none more than it can use). Checked
   against real herds of 100 to 1,000 clients (``python -m
   perfkit.retry.validation``): it held on the local backend; on the docker
   backend at 100 clients the real herds reconnected about 2x later than
   modelled (see the README).
2. **An attempt is two CPU stages in sequence**: first the client's work
   ``client_cpu_s`` (the retry loop, the driver building the connection, its
   part of the authentication, the event loop's wake-ups for it), then the
   server's ``server_cpu_s`` (fork, authentication, backend initialisation).
   Its total duration on an idle machine is ``client_cpu_s + server_cpu_s``
   plus whatever the measured single connect ``latency_s`` has beyond it
   (wake-ups, loopback round trips), added after the server's work.
   A real client does much of its work after the server answers (startup
   response, SCRAM proof, parameters): ``client_after_s`` moves that part
   behind the server's stage (a third stage in the same event loop). It is
   off (0) in the validated model: with the measured split (everything but a
   refused attempt's cost after the answer) a docker herd of 100, whose
   attempts waited ~1 s in the boot's hang window, agreed on 18 of 20 metric
   cells instead of 11, but the local herds of 1,000 then had 2.3-2.7x the
   real timeouts (every SYN of a lockstep burst reached the server at once and
   the burst collapsed), where the client-work-first model agreed. The truth
   is in between (the client's work is interleaved with the server's in
   several round trips); neither order is right for both.
3. **Client work is capped by its processes.** Each client process is one
   event-loop thread, so all client work together runs on at most
   ``client_processes`` cores: with ``n`` attempts in their client stage,
   ``min(client_processes, n)`` loops are runnable and each attempt progresses
   at ``share * min(client_processes, n) / n``. This is what makes a
   single-process herd client-bound: its event loop is one runnable process
   among ~1,000 backends. That is processor sharing among a loop's attempts
   (``client_discipline="ps"``, the default: an attempt's client work is
   several callbacks, each queued behind every other attempt's, so at the
   scale of a herd the loop round-robins among them). With
   ``client_discipline="fifo"`` each loop instead works on one attempt's
   client work at a time, in arrival order (one callback per attempt), so a
   lockstep herd leaves the loop one attempt at a time: which of the two a
   real asyncio client is closer to is for the validation against real
   herds to say.
4. **Processor sharing for backends**: each backend setting up a connection
   progresses at ``share`` (at most one core). Computed in virtual time (one
   clock per class whose rate changes only at events): jobs of one kind need
   the same work, so they finish in the order they started and sit in FIFO
   queues; only the timers (attempt starts, timeouts, SYN retransmits) need a
   heap, so each event costs O(log n) whatever the number in flight, and all
   timers due at one instant (a lockstep herd's) are handled in one batch.
5. **Timeouts abandon work.** When an attempt's connect timeout (or the
   deadline) expires before its setup finished, the client closes the socket:
   the attempt is a TIMEOUT, its job leaves the CPU pool at once and the
   server CPU it had used is counted as wasted (``wasted_server_cpu_s``). The
   client then retries per its strategy. (A real backend may run a little
   longer before it notices the closed socket; that is ignored.)
6. **The postmaster accepts serially.** It takes connections from the accept
   queue one at a time, each costing ``accept_s`` of its CPU (the postmaster's
   part of ``server_cpu_s``: accept and fork), at its fair ``share``. With
   ``accept_s = 0`` (the default: no separate measurement) it accepts at once
   and the queue never fills. The queue holds at most ``backlog`` connections;
   a SYN arriving at a full queue is dropped and retransmitted by the kernel
   1 s, 3 s, 7 s ... after the first SYN (sent when the attempt's client work
   is done) within the connect timeout, as in the FIFO model.
   A connection whose client gave up while it was queued is still accepted;
   its backend finds the socket closed and costs ``reject_cost_s`` (wasted).
7. **max_connections**: a backend counts against the limit from its fork (a
   backend takes its slot early in its start-up); when established plus
   setting-up backends reach ``max_connections`` a new one is a dead end that
   costs ``reject_cost_s`` (default a quarter of ``server_cpu_s``) and fails
   with "too many clients" (SQLSTATE 53300).
8. **While the old server shuts down** (until ``shutdown_s`` after the
   first client noticed the loss) the port still takes connections: an
   attempt made then is accepted and fails only when the old server has
   exited ("the database system is shutting down", or the socket closed), at
   ``shutdown_s``. So a herd that noticed the loss over a spread of ``s``
   seconds leaves the shutdown in lockstep: its next attempts are as
   synchronised as if all had noticed at once. (Found in the real herds'
   attempt traces: the first attempts of a 1,000-client herd whose notice was
   spread over 1 s ended within ~0.1 s of each other (10th to 90th
   percentile) at the old server's exit, and without jitter the herd then hit
   the new server as one burst, with hundreds of timeouts the model without
   this window, which kept the notice spread, did not have.) ``shutdown_s`` is
   measured in each real herd (loss to restart minus the outage).
   **Then, before the server is ready,** attempts are refused after ``refused_s``
   without contention (as in :mod:`perfkit.retry.simulate`, and vectorised as
   there unless a retry budget couples the clients), except in the last
   ``hang_s`` before ``ready_s``, when the port already takes connections and
   an attempt waits for ``ready_s`` (or its timeout) after its client stage.
   A refusal is cheap for the kernel, but not for a client's event loop:
   with ``contended_refusals=True`` a refused attempt is a client job of
   ``min(client_cpu_s, refused_s)`` (``refused_s`` was measured on an idle
   machine and bounds it) in the event loops' share, refused when it is done
   before the server listens (else its SYN goes on to the server as any
   attempt's; a timeout if its connect timeout comes first). With one
   loop a herd's refusals then take ``n * min(client_cpu_s, refused_s)``
   together (processor sharing keeps a synchronised herd synchronised: its
   retries are delayed, not spread).
9. **Retry budget** (:class:`RetryBudget`): a fleet-wide token bucket on
   retries; a client whose retry finds it empty waits for its token (GCRA, as
   :class:`~perfkit.retry.token_bucket.RetryTokenBucket` with
   ``on_empty="wait"``); tokens are reserved when an attempt fails, in the
   order the failures happen. A retry whose token comes after the deadline
   is not made.
10. **Large herds are represented.** Above ``exact_up_to`` clients the model
    simulates ``ceil(n / s)`` representative clients on a machine ``s`` times
    smaller (cores, client processes, backlog, ``max_connections`` and the
    budget divided by ``s``; the postmaster, one process, ``s`` times slower
    but weighted ``1 / s`` in the run queue), each standing for ``s``
    clients. Processor sharing is invariant under this scaling (a backend's
    share ``cores / runnable`` is unchanged), so the rates, queues and
    timeouts are those of the full herd; what is lost is resolution (the
    ``s`` clients of a representative move in lockstep, integer limits
    round, and a fraction of FIFO loops becomes ``ceil`` of it, each loop
    that much slower). Checked against exact runs of 2,000 and 4,000 clients
    (s = 4 and 10): medians and p90 within 5 % with either loop discipline,
    contended refusals or a budget, but 31 % later with a postmaster cost
    (``accept_s``: one serial process does not scale); the time until all
    connected is the coarsest.
    The result is expanded back to ``n`` clients;
    ``summary()["represented_by"]`` says by how many.

Strategies, the deadline, ``max_attempts`` and gRPC's ``anchor =
"attempt_start"`` (the next attempt starts ``backoff`` after this one
started, each attempt with its own timeout) are as in the FIFO model, and the
same seed draws the same schedules there and here.

Run it: ``python -m perfkit.retry.contention --clients 1000000 --strategy full_jitter``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.retry.simulate import (
    OK,
    REFUSED,
    SYN_RETRANSMIT_S,
    TIMEOUT,
    TOO_MANY,
    SimResult,
    SimSettings,
    _attempt_timeouts,
    _n_delays,
    _refused_phase,
)
from perfkit.retry.strategies import Strategy, get_strategy

#: Keys :meth:`ContentionSettings.from_costs` reads (``postmaster_cpu_per_connect_s`` optional).
COST_KEYS = (
    "cores",
    "server_cpu_per_connect_s",
    "client_cpu_per_attempt_s",
    "connect_s",
    "refused_s",
)
#: How an event loop divides its time among attempts (assumption 3).
CLIENT_DISCIPLINES = ("ps", "fifo")
#: Herds up to this size are simulated client by client (assumption 10 of the docstring).
EXACT_UP_TO = 100_000


@dataclass(frozen=True, kw_only=True)
class RetryBudget:
    """A fleet-wide token bucket on retries: ``capacity`` at once, ``refill_per_s`` per second.

    Every retry (an attempt after a client's first) takes a token; with none
    left the client waits for the next one (``RetryTokenBucket(on_empty="wait")``).
    """

    capacity: float
    refill_per_s: float

    def __post_init__(self) -> None:
        validate.number("RetryBudget.capacity", self.capacity, strict=True)
        validate.number("RetryBudget.refill_per_s", self.refill_per_s, strict=True)

    def scaled(self, s: int) -> RetryBudget:
        """The budget of a herd ``s`` times smaller."""
        return RetryBudget(capacity=self.capacity / s, refill_per_s=self.refill_per_s / s)


@dataclass(frozen=True, kw_only=True)
class ContentionSettings(SimSettings):
    """:class:`SimSettings` plus the CPU model (see the module docstring).

    ``capacity_per_s`` of the FIFO model is not used here.
    """

    cores: float
    server_cpu_s: float
    client_cpu_s: float
    client_processes: int = 1
    retry_budget: RetryBudget | None = None
    accept_s: float = 0.0
    exact_up_to: int = EXACT_UP_TO
    contended_refusals: bool = False
    client_discipline: str = "ps"
    #: From t = 0 until the old server has exited (assumption 8): attempts then fail then.
    shutdown_s: float = 0.0
    #: The part of ``client_cpu_s`` done after the server's setup (assumption 2).
    client_after_s: float = 0.0
    #: Scheduler sessions (autogroups) the client loops are in; None: one per loop.
    client_sessions: float | None = None
    #: Scheduler groups the server's processes are in (a container's cgroup: 1); None: each
    #: backend and the postmaster on its own (a local server: a session each).
    server_groups: float | None = None
    #: Set by the representation of large herds (assumption 10): 1 for an exact run.
    scale: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        validate.number("ContentionSettings.cores", self.cores, strict=True)
        validate.number("ContentionSettings.server_cpu_s", self.server_cpu_s)
        validate.number("ContentionSettings.client_cpu_s", self.client_cpu_s)
        validate.number("ContentionSettings.accept_s", self.accept_s)
        validate.number("ContentionSettings.shutdown_s", self.shutdown_s)
        validate.number("ContentionSettings.client_after_s", self.client_after_s)
        if self.client_after_s > self.client_cpu_s:
            raise ConfigError(
                f"ContentionSettings.client_after_s ({self.client_after_s!r}) is a part of "
                f"client_cpu_s and must not exceed it ({self.client_cpu_s!r})"
            )
        if self.shutdown_s > self.outage_s:
            raise ConfigError(
                f"ContentionSettings.shutdown_s ({self.shutdown_s!r}) must not exceed "
                f"outage_s ({self.outage_s!r}): the server restarts after it has exited"
            )
        if self.accept_s > self.server_cpu_s:
            raise ConfigError(
                f"ContentionSettings.accept_s ({self.accept_s!r}) is the postmaster's part of "
                f"server_cpu_s and must not exceed it ({self.server_cpu_s!r})"
            )
        if self.scale == 1:
            validate.integer(
                "ContentionSettings.client_processes", self.client_processes, minimum=1
            )
        else:  # a represented herd's share of the processes (assumption 10)
            validate.number(
                "ContentionSettings.client_processes", self.client_processes, strict=True
            )
        validate.integer("ContentionSettings.exact_up_to", self.exact_up_to, minimum=1)
        validate.integer("ContentionSettings.scale", self.scale, minimum=1)
        for name in ("client_sessions", "server_groups"):
            if getattr(self, name) is not None:
                validate.number(f"ContentionSettings.{name}", getattr(self, name), strict=True)
        if not isinstance(self.contended_refusals, bool):
            raise ConfigError(
                "ContentionSettings.contended_refusals must be True or False, "
                f"got {self.contended_refusals!r}"
            )
        if self.client_discipline not in CLIENT_DISCIPLINES:
            raise ConfigError(
                "ContentionSettings.client_discipline must be one of "
                f"{', '.join(CLIENT_DISCIPLINES)}, got {self.client_discipline!r}"
            )
        b = self.retry_budget
        if b is not None and not isinstance(b, RetryBudget):
            raise ConfigError(
                f"ContentionSettings.retry_budget must be a RetryBudget or None, got {b!r}"
            )

    @property
    def reject_cost_s(self) -> float:
        """Server CPU of a dead-end backend ("too many clients", or its client is gone)."""
        return self.reject_s if self.reject_s is not None else 0.25 * self.server_cpu_s

    @classmethod
    def from_costs(cls, costs: Mapping[str, float], **scenario: Any) -> ContentionSettings:
        """Settings from measured costs (``COST_KEYS``) plus the scenario's fields."""
        missing = [key for key in COST_KEYS if key not in costs]
        if missing:
            raise ConfigError(
                f"ContentionSettings.from_costs: costs lack {', '.join(missing)} "
                f"(needs {', '.join(COST_KEYS)})"
            )
        return cls(
            cores=float(costs["cores"]),
            server_cpu_s=float(costs["server_cpu_per_connect_s"]),
            client_cpu_s=float(costs["client_cpu_per_attempt_s"]),
            latency_s=float(costs["connect_s"]),
            refused_s=float(costs["refused_s"]),
            accept_s=float(costs.get("postmaster_cpu_per_connect_s", 0.0)),
            **scenario,
        )

    @classmethod
    def from_sim(
        cls, sim: SimSettings, costs: Mapping[str, float], **values: Any
    ) -> ContentionSettings:
        """A FIFO model's scenario (e.g. :func:`perfkit.retry.bigherd.sim_settings_for` of a
        real run) on the measured costs; its ``refused_s`` (measured in the run) is kept."""
        scenario = {
            f.name: getattr(sim, f.name)
            for f in fields(SimSettings)
            if f.name not in ("capacity_per_s", "latency_s", "refused_s")
        }
        return cls.from_costs({**costs, "refused_s": sim.refused_s}, **{**scenario, **values})

    def represented(self, s: int) -> ContentionSettings:
        """The same herd ``s`` times smaller (assumption 10); ``s = 1`` is itself."""
        if s == 1:
            return self
        limit = self.max_connections
        return replace(
            self,
            n_clients=math.ceil(self.n_clients / s),
            cores=self.cores / s,
            client_processes=self.client_processes / s,  # type: ignore[arg-type]
            client_sessions=None if self.client_sessions is None else self.client_sessions / s,
            server_groups=None if self.server_groups is None else self.server_groups / s,
            backlog=max(1, round(self.backlog / s)),
            max_connections=None if limit is None else max(1, round(limit / s)),
            retry_budget=None if self.retry_budget is None else self.retry_budget.scaled(s),
            reject_s=self.reject_cost_s,
            scale=s,
        )


@dataclass(kw_only=True)
class ContendedResult(SimResult):
    """A :class:`SimResult` with the CPU the herd used and wasted (CPU-seconds)."""

    server_cpu_s: float = 0.0
    wasted_server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    represented_by: int = 1

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(
            server_cpu_s=self.server_cpu_s,
            wasted_server_cpu_s=self.wasted_server_cpu_s,
            client_cpu_s=self.client_cpu_s,
            represented_by=self.represented_by,
        )
        return out


# Where a client's current attempt is (one attempt per client in flight at a time).
_IDLE, _CLIENT, _SYN, _QUEUED, _SERVER, _LOOP_WAIT, _FINISH = 0, 1, 2, 3, 4, 5, 6
# Kinds of client work in a FIFO loop's queue.
_WORK_ATTEMPT, _WORK_REFUSAL, _WORK_FINISH = 0, 1, 2
# Timer events, in the order same-time events are handled.
_EV_START, _EV_SYN, _EV_TIMEOUT = 0, 1, 2
# Backend jobs: a connection setup, a "too many clients" dead end, a client already gone.
_JOB_SETUP, _JOB_TOO_MANY, _JOB_ORPHAN = 0, 1, 2
_INF = math.inf


class _Herd:
    """The event loop: clients, the postmaster and backends sharing the CPU.

    It starts at each client's first attempt that is not refused, or at its
    first attempt when refusals need it (a retry budget, contended refusals).
    """

    def __init__(
        self,
        strat: Strategy,
        s: ContentionSettings,
        delays: np.ndarray,
        timeouts: np.ndarray,
        deadline_at: np.ndarray,
        k: int,
    ) -> None:
        n = s.n_clients
        self.s, self.k = s, k
        self.cores, self.processes = s.cores, s.client_processes
        self.sessions = _INF if s.client_sessions is None else s.client_sessions
        self.server_groups = _INF if s.server_groups is None else s.server_groups
        self.finish_work = min(s.client_after_s, s.client_cpu_s)
        self.client_work, self.refused_s = s.client_cpu_s - self.finish_work, s.refused_s
        self.refusal_work = min(s.client_cpu_s, s.refused_s) if s.contended_refusals else 0.0
        # FIFO loops: each loop works on one attempt at a time; a represented herd's
        # fraction of loops is ceil(processes) loops, each that much slower (assumption 10).
        self.fifo_loops = s.client_discipline == "fifo"
        self.loop_servers = math.ceil(s.client_processes)
        self.loop_speed = s.client_processes / self.loop_servers
        self.loop_wait: deque[tuple[int, int, bool]] = deque()
        self.anchor_start = strat.anchor == "attempt_start"
        self.delays: list[list[float]] = delays.tolist()
        self.timeouts: list[list[float]] = timeouts.tolist()
        self.deadlines: list[float] = deadline_at.tolist()
        self.ready, self.hang_from = s.ready_s, s.hang_from_s
        self.shutdown = s.shutdown_s
        self.setup_work = s.server_cpu_s - s.accept_s
        self.reject_work = s.reject_cost_s
        self.latency_extra = max(0.0, s.latency_s - s.client_cpu_s - s.server_cpu_s)
        self.limit = s.max_connections if s.max_connections is not None else math.inf
        self.pm_weight = 1.0 / s.scale  # the postmaster is one process (assumption 10)
        self.accept_work = s.accept_s * s.scale
        budget = s.retry_budget
        self.token_interval = 0.0 if budget is None else 1.0 / budget.refill_per_s
        self.token_tolerance = (
            0.0 if budget is None else (budget.capacity - 1.0) * self.token_interval
        )
        self.token_tat = -math.inf
        # Per client: the attempt in flight, where it is, its timing.
        self.state = [_IDLE] * n
        self.attempt = [0] * n
        self.t_start = [0.0] * n
        self.give_up = [0.0] * n
        self.retx = [0] * n
        self.syn_sent = [0.0] * n
        self.job_end = [0.0] * n  # virtual finish of its client or backend job
        self.job_kind = [_JOB_SETUP] * n
        self.connected_at = np.full(n, np.nan)
        self.timers: list[tuple[float, int, int, int]] = []
        # The CPU pool: virtual clocks, job heaps (lazy deletion) and counts.
        self.now = 0.0
        self.v_client = self.v_server = self.v_pm = 0.0
        # Jobs of one kind all need the same work, so they finish in the order they
        # started (in virtual time): FIFO queues, with lazy deletion of abandoned ones.
        self.client_jobs: deque[tuple[float, int, int]] = deque()
        self.refusal_jobs: deque[tuple[float, int, int]] = deque()
        self.finish_jobs: deque[tuple[float, int, int]] = deque()
        self.setup_jobs: deque[tuple[float, int, int]] = deque()
        self.reject_jobs: deque[tuple[float, int, int]] = deque()
        self.n_client = self.n_server = self.n_setting_up = 0
        self.pm_queue: deque[tuple[int, int]] = deque()
        self.pm_done_at = 0.0  # the postmaster's virtual clock when its head is accepted
        self.share = self.client_rate = self.server_rate = 1.0
        self.established = 0
        self.orphans = 0
        self.server_used = self.wasted = self.client_used = 0.0
        self.out_client: list[int] = []
        self.out_time: list[float] = []
        self.out_outcome: list[int] = []

    # -- the CPU pool ---------------------------------------------------------------------

    def _head(self, jobs: deque[tuple[float, int, int]], in_state: int) -> float:
        """Virtual finish of the first job still wanted (abandoned ones are dropped)."""
        state, attempt = self.state, self.attempt
        while jobs:
            _, c, j = jobs[0]
            if c < 0 or (state[c] == in_state and attempt[c] == j):
                return jobs[0][0]
            jobs.popleft()
        return math.inf

    # -- attempts -------------------------------------------------------------------------

    def start_client(self, c: int, j: int, t: float) -> None:
        """Push client ``c``'s attempt ``j`` (index from 0) to start at ``t``."""
        heapq.heappush(self.timers, (t, _EV_START, c, j))

    def _record(self, c: int, outcome: int, end: float) -> None:
        """Attempt over: record it, then the next one per the strategy (and the budget)."""
        self.out_client.append(c)
        self.out_time.append(self.t_start[c])
        self.out_outcome.append(outcome)
        self.state[c] = _IDLE
        if outcome == OK:
            self.connected_at[c] = end
            return
        j = self.attempt[c]
        if j >= self.k:
            return
        d = self.delays[c][j]
        nxt = max(end, self.t_start[c] + d) if self.anchor_start else end + d
        if self.token_interval:
            go = max(nxt, self.token_tat - self.token_tolerance)
            self.token_tat = max(self.token_tat, go) + self.token_interval
            nxt = go
        if nxt < self.deadlines[c]:
            heapq.heappush(self.timers, (nxt, _EV_START, c, j + 1))

    def _begin(self, c: int, j: int, t: float) -> None:
        self.attempt[c] = j
        self.t_start[c] = t
        if t < self.shutdown:  # the old server takes it and fails it when it exits
            self._record(c, REFUSED, self.shutdown)
            return
        refused = t < self.hang_from  # before the server takes connections
        if refused and not self.refusal_work:
            self._record(c, REFUSED, t + self.refused_s)
            return
        give_up = t + self.timeouts[c][j]
        deadline = self.deadlines[c]
        if give_up > deadline:
            give_up = deadline
        self.give_up[c] = give_up
        self.retx[c] = 0
        if give_up < _INF:
            heapq.heappush(self.timers, (give_up, _EV_TIMEOUT, c, j))
        if refused or self.client_work > 0:  # (refusals: assumption 8)
            self._client_work(c, j, _WORK_REFUSAL if refused else _WORK_ATTEMPT)
        else:
            self._syn(c, t)

    def _client_work(self, c: int, j: int, kind: int) -> None:
        """The attempt needs its event loop: served now, or it waits its turn (FIFO loops)."""
        if self.fifo_loops and self.n_client >= self.loop_servers:
            self.state[c] = _LOOP_WAIT  # every loop is busy: it waits its turn
            self.job_kind[c] = kind
            self.loop_wait.append((c, j, kind))
        else:
            self._serve_client(c, j, kind)

    def _serve_client(self, c: int, j: int, kind: int) -> None:
        """An event loop starts on the attempt's client work (before its SYN, a refusal's,
        or the part after the server's answer: assumption 2)."""
        if kind == _WORK_FINISH:
            work, jobs, self.state[c] = self.finish_work, self.finish_jobs, _FINISH
        elif kind == _WORK_REFUSAL:
            work, jobs, self.state[c] = self.refusal_work, self.refusal_jobs, _CLIENT
        else:
            work, jobs, self.state[c] = self.client_work, self.client_jobs, _CLIENT
        self.job_kind[c] = kind
        self.job_end[c] = end = self.v_client + work
        jobs.append((end, c, j))
        self.n_client += 1
        self.client_used += work

    def _loop_freed(self) -> None:
        """With FIFO loops: the next waiting attempts start (assumption 3)."""
        wait, state, attempt = self.loop_wait, self.state, self.attempt
        while wait and self.n_client < self.loop_servers:
            c, j, kind = wait.popleft()
            if state[c] == _LOOP_WAIT and attempt[c] == j:
                self._serve_client(c, j, kind)

    def _syn(self, c: int, t: float) -> None:
        """The attempt's SYN reaches the server (or is held until it is ready)."""
        self.state[c] = _SYN
        if t < self.ready:
            heapq.heappush(self.timers, (self.ready, _EV_SYN, c, self.attempt[c]))
            return
        if len(self.pm_queue) >= self.s.backlog:  # full: the kernel drops the SYN
            r = self.retx[c]
            if r == 0:  # retransmissions count from the first SYN, sent after the client work
                self.syn_sent[c] = t
            if r < len(SYN_RETRANSMIT_S):
                at = self.syn_sent[c] + SYN_RETRANSMIT_S[r]
                if at < self.give_up[c]:
                    self.retx[c] = r + 1
                    heapq.heappush(self.timers, (at, _EV_SYN, c, self.attempt[c]))
            return  # otherwise the timeout ends it
        if self.accept_work > 0:
            if not self.pm_queue:
                self.pm_done_at = self.v_pm + self.accept_work
            self.pm_queue.append((c, self.attempt[c]))
            self.state[c] = _QUEUED
        else:
            self._fork(c, self.attempt[c])

    def _fork(self, c: int, j: int) -> None:
        """The postmaster forks a backend for client ``c``'s attempt ``j``."""
        if (self.state[c] != _QUEUED and self.state[c] != _SYN) or self.attempt[c] != j:
            c, kind, work = -1, _JOB_ORPHAN, self.reject_work  # its client is gone
            self.orphans += 1
            self.wasted += work
        elif self.established + self.n_setting_up >= self.limit:
            kind, work = _JOB_TOO_MANY, self.reject_work
        else:
            kind, work = _JOB_SETUP, self.setup_work
            self.n_setting_up += 1
        self.server_used += work
        end = self.v_server + work
        if c >= 0:
            self.state[c] = _SERVER
            self.job_end[c] = end
            self.job_kind[c] = kind
        (self.setup_jobs if kind == _JOB_SETUP else self.reject_jobs).append((end, c, j))
        self.n_server += 1

    def _backend_done(self, c: int, kind: int) -> None:
        self.n_server -= 1
        if c < 0:
            return
        t = self.now
        if kind == _JOB_TOO_MANY:
            self._record(c, TOO_MANY, t)
            return
        self.n_setting_up -= 1
        self.established += 1
        if self.finish_work > 0:  # the client's part after the server's answer
            self._client_work(c, self.attempt[c], _WORK_FINISH)
        else:
            self._connected(c, t)

    def _connected(self, c: int, t: float) -> None:
        done = t + self.latency_extra
        if done > self.give_up[c]:
            self.established -= 1
            self.wasted += self.setup_work
            self._record(c, TIMEOUT, self.give_up[c])
            return
        self._record(c, OK, done)

    def _timeout(self, c: int) -> None:
        """Client ``c`` gives its attempt up: its job leaves the pool (assumption 5)."""
        state = self.state[c]
        if state == _FINISH or (state == _LOOP_WAIT and self.job_kind[c] == _WORK_FINISH):
            self.established -= 1  # the client closes the backend it had
            self.wasted += self.setup_work
        if state in (_CLIENT, _FINISH):
            self.n_client -= 1
            self.client_used -= self.job_end[c] - self.v_client
            if self.fifo_loops:
                self._loop_freed()
        elif state == _SERVER:
            self.n_server -= 1
            if self.job_kind[c] == _JOB_SETUP:
                self.n_setting_up -= 1
                work = self.setup_work
            else:
                work = self.reject_work
            self.wasted += work - (self.job_end[c] - self.v_server)
            self.server_used -= self.job_end[c] - self.v_server
        self._record(c, TIMEOUT, self.give_up[c])

    # -- the loop -------------------------------------------------------------------------

    def _fire_timer(self) -> None:
        t, kind, c, j = heapq.heappop(self.timers)
        if kind == _EV_START:
            self._begin(c, j, t)
        elif self.attempt[c] != j or self.state[c] == _IDLE:
            return  # stale: that attempt is over
        elif kind == _EV_SYN:
            if self.state[c] == _SYN:
                self._syn(c, t)
        else:  # a queued connection stays queued: the postmaster accepts it later anyway
            self._timeout(c)

    def _next(self) -> tuple[float, int]:
        """The next event: its time and source (0 timer, 1 client, 2 setup, 3 reject, 4 pm,
        5 refusal, 6 the client's part after the server's answer)."""
        t, source = (self.timers[0][0], 0) if self.timers else (math.inf, -1)
        if self.n_client:
            tc = (
                self.now
                + (self._head(self.client_jobs, _CLIENT) - self.v_client) / self.client_rate
            )
            if tc < t:
                t, source = tc, 1
            if self.refusal_work:
                v = self._head(self.refusal_jobs, _CLIENT)
                tc = self.now + (v - self.v_client) / self.client_rate
                if tc < t:
                    t, source = tc, 5
            if self.finish_work:
                v = self._head(self.finish_jobs, _FINISH)
                tc = self.now + (v - self.v_client) / self.client_rate
                if tc < t:
                    t, source = tc, 6
        if self.n_server:
            for src, jobs in ((2, self.setup_jobs), (3, self.reject_jobs)):
                ts = self.now + (self._head(jobs, _SERVER) - self.v_server) / self.server_rate
                if ts < t:
                    t, source = ts, src
        if self.pm_queue:
            tp = self.now + (self.pm_done_at - self.v_pm) / self.server_rate
            if tp < t:
                t, source = tp, 4
        return max(t, self.now), source

    def run(self) -> None:
        # _advance and _rates inlined: this loop runs a few times per attempt.
        timers = self.timers
        while True:
            t, source = self._next()
            if source < 0:
                return
            dt = t - self.now
            if dt > 0:
                if self.n_client:
                    self.v_client += self.client_rate * dt
                if self.n_server:
                    self.v_server += self.server_rate * dt
                if self.pm_queue:
                    self.v_pm += self.server_rate * dt
                self.now = t
            if source == 0:  # and every other timer due now (lockstep herds: thousands)
                self._fire_timer()
                while timers and timers[0][0] <= t:
                    self._fire_timer()
            elif source == 1:
                _, c, _ = self.client_jobs.popleft()
                self.n_client -= 1
                if self.fifo_loops:
                    self._loop_freed()
                self._syn(c, t)
            elif source == 5:
                _, c, _ = self.refusal_jobs.popleft()
                self.n_client -= 1
                if self.fifo_loops:
                    self._loop_freed()
                if t < self.hang_from:
                    self._record(c, REFUSED, t)
                else:  # its SYN leaves after the server listens again
                    self._syn(c, t)
            elif source == 6:
                _, c, _ = self.finish_jobs.popleft()
                self.n_client -= 1
                if self.fifo_loops:
                    self._loop_freed()
                self._connected(c, t)
            elif source == 4:
                self.v_pm = max(self.v_pm, self.pm_done_at)
                c, j = self.pm_queue.popleft()
                if self.pm_queue:
                    self.pm_done_at = self.v_pm + self.accept_work
                self._fork(c, j)
            else:
                vf, c, _ = (self.setup_jobs if source == 2 else self.reject_jobs).popleft()
                self.v_server = max(self.v_server, vf)
                self._backend_done(c, _JOB_SETUP if source == 2 else _JOB_TOO_MANY)
            n_c = self.n_client
            if self.fifo_loops:  # n_c loops busy, one attempt each
                loops = n_c * self.loop_speed
            else:
                loops = n_c if n_c < self.processes else self.processes
            if loops > self.sessions:  # loops sharing a session share its weight (assumption 1)
                loops = self.sessions
            srv = self.n_server + (self.pm_weight if self.pm_queue else 0.0)
            if srv > self.server_groups:
                share, self.server_rate = self._grouped(srv, loops)
            else:
                runnable = srv + loops
                share = self.cores / runnable if runnable > self.cores else 1.0
                self.server_rate = share
            self.share = share
            self.client_rate = share * loops / n_c if n_c else share

    def _grouped(self, srv: float, loops: float) -> tuple[float, float]:
        """Fair shares when the server's ``srv`` runnable processes are in
        ``server_groups`` scheduler groups (assumption 1): each group weighs as one
        entity but may use up to ``srv`` cores. Returns a loop's share and a backend's
        rate."""
        groups = self.server_groups
        level = self.cores / (loops + groups)
        if level <= 1.0:
            return level, groups * level / srv
        return 1.0, min(srv, self.cores - loops) / srv


def _simulate_exact(
    strat: Strategy, s: ContentionSettings, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Herd]:
    """One herd client by client; the same draws as :func:`perfkit.retry.simulate.simulate`."""
    n = s.n_clients
    rng = np.random.default_rng(seed)
    k = _n_delays(strat, s)
    delays = strat.sample(rng, n, k + 1)
    t0 = rng.random(n) * s.start_spread_s if s.start_spread_s > 0 else np.zeros(n)
    deadline_at = t0 + (s.deadline if s.deadline is not None else np.inf)
    timeouts = _attempt_timeouts(strat, s, delays, k)
    herd = _Herd(strat, s, delays, timeouts, deadline_at, k)
    pre_c = np.empty(0, dtype=np.int64)
    pre_t = np.empty(0)
    if s.retry_budget is None and not s.contended_refusals:  # no event loop needed (assumption 8)
        first = np.where(t0 < s.shutdown_s, s.shutdown_s - t0, s.refused_s)
        refused = _refused_phase(strat, s, delays, t0, deadline_at, k, first_cost=first)
        pre_c, pre_t = refused.clients, refused.times
        for c in np.nonzero(refused.first_live <= k)[0].tolist():
            j = int(refused.first_live[c])
            herd.start_client(c, j, float(refused.starts[c, j]))
    else:  # the budget couples the clients from their first retry on
        for c, t in enumerate(t0.tolist()):
            herd.start_client(c, 0, t)
    herd.run()
    clients = np.concatenate([pre_c, np.asarray(herd.out_client, dtype=np.int64)])
    times = np.concatenate([pre_t, np.asarray(herd.out_time, dtype=float)])
    outcomes = np.concatenate(
        [np.full(len(pre_c), REFUSED, dtype=np.int8), np.asarray(herd.out_outcome, dtype=np.int8)]
    )
    order = np.argsort(times, kind="stable")
    return clients[order], times[order], outcomes[order], herd


def _expand(values: np.ndarray, s: int, n: int) -> np.ndarray:
    """Per-client values of representatives, repeated for the ``s`` clients each stands for."""
    return np.repeat(values, s)[:n]


def simulate_contended(
    strategy: Strategy | str,
    settings: ContentionSettings,
    *,
    seed: int = 0,
    name: str | None = None,
) -> ContendedResult:
    """Simulate one herd on a CPU-bound server; deterministic for a given ``seed``."""
    started = time.perf_counter()
    if not isinstance(settings, ContentionSettings):
        raise ConfigError(
            f"simulate_contended needs ContentionSettings, got {type(settings).__name__}"
        )
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    label = name or (strategy if isinstance(strategy, str) else strat.kind)
    n = settings.n_clients
    s = 1 if n <= settings.exact_up_to else math.ceil(n / settings.exact_up_to)
    clients, times, outcomes, herd = _simulate_exact(strat, settings.represented(s), seed)
    connected_at = herd.connected_at
    if s > 1:
        keep = np.repeat(clients * s, s) + np.tile(np.arange(s), len(clients))
        mask = keep < n
        clients, times = keep[mask], np.repeat(times, s)[mask]
        outcomes = np.repeat(outcomes, s)[mask]
        connected_at = _expand(connected_at, s, n)
    return ContendedResult(
        settings=settings,
        strategy=label,
        attempt_client=clients,
        attempt_time=times,
        attempt_outcome=outcomes,
        connected_at=connected_at,
        elapsed_s=time.perf_counter() - started,
        server_cpu_s=herd.server_used * s,
        wasted_server_cpu_s=herd.wasted * s,
        client_cpu_s=herd.client_used * s,
        represented_by=s,
    )


# -- the script ------------------------------------------------------------------------

#: Costs of one connection on this kind of machine (2 cores, local PostgreSQL), for the script.
EXAMPLE_COSTS = {
    "cores": 2.0,
    "server_cpu_per_connect_s": 0.002,
    "client_cpu_per_attempt_s": 0.001,
    "connect_s": 0.004,
    "refused_s": 0.0003,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m perfkit.retry.contention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--strategy", default="full_jitter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outage", type=float, default=1.0)
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    for key in COST_KEYS:
        parser.add_argument(f"--{key.replace('_', '-')}", type=float, default=EXAMPLE_COSTS[key])
    parser.add_argument("--postmaster-cpu-per-connect-s", type=float, default=0.0)
    parser.add_argument("--client-processes", type=int, default=1)
    parser.add_argument(
        "--retry-budget", metavar="CAPACITY,PER_S", help="a fleet-wide retry budget, e.g. 50,200"
    )
    parser.add_argument("--contended-refusals", action="store_true")
    parser.add_argument("--client-discipline", choices=CLIENT_DISCIPLINES, default="ps")
    parser.add_argument("--exact-up-to", type=int, default=EXACT_UP_TO)
    return parser


def _budget(text: str | None) -> RetryBudget | None:
    if text is None:
        return None
    try:
        capacity, per_s = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--retry-budget takes CAPACITY,PER_S (e.g. 50,200), got {text!r}"
        ) from None
    return RetryBudget(capacity=capacity, refill_per_s=per_s)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perfkit.retry.contention``: one simulated herd, its summary and wall time."""
    parser = _parser()
    args = parser.parse_args(argv)
    costs = {key: getattr(args, key) for key in COST_KEYS}
    costs["postmaster_cpu_per_connect_s"] = args.postmaster_cpu_per_connect_s
    try:
        settings = ContentionSettings.from_costs(
            costs,
            n_clients=args.clients,
            outage_s=args.outage,
            connect_timeout=args.connect_timeout,
            deadline=args.deadline,
            client_processes=args.client_processes,
            retry_budget=_budget(args.retry_budget),
            contended_refusals=args.contended_refusals,
            client_discipline=args.client_discipline,
            exact_up_to=args.exact_up_to,
            max_connections=args.clients + 20,
            backlog=min(4096, 2 * (args.clients + 20)),  # PostgreSQL's, within somaxconn
        )
        t = time.perf_counter()
        result = simulate_contended(args.strategy, settings, seed=args.seed)
    except ConfigError as exc:
        parser.error(str(exc))
    wall = time.perf_counter() - t
    for key, value in result.summary().items():
        print(f"{key:40s} {value}")
    print(f"wall time {wall:.2f} s for {args.clients:,} clients ({args.strategy})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
