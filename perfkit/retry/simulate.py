"""Many clients reconnecting after an outage: a fast model calibrated by real measurements.

The model, for ``n_clients`` clients that all lose the server at ``t = 0``
(each noticing within ``start_spread_s``) and a server that is ready again at
``ready_s = outage_s + boot_s``:

- before ``ready_s`` every attempt is refused after ``refused_s``, except in
  the last ``hang_s`` before it: then the port already takes connections (a
  container's port proxy, a postmaster not yet serving) and an attempt waits
  until ``ready_s`` (or its connect timeout) instead of being refused;
- after it, attempts queue at one FIFO server that accepts ``capacity_per_s``
  connections per second (the measured burst throughput, client and server
  sharing the machine as in the real herd) and answers an idle client after
  ``latency_s`` (the measured single connect);
- at most ``backlog`` attempts wait in the accept queue (PostgreSQL listens
  with ``2 * max_connections``, the kernel caps it at ``net.core.somaxconn``,
  4096); an attempt arriving at a full queue has its SYN dropped and retried
  by the kernel after 1 s, 3 s, 7 s ... within its connect timeout;
- an attempt still queued when its client's connect timeout expires costs the
  server only ``reject_s`` (fork, then a closed socket) and fails as a timeout;
  one that started service but finishes too late is a timeout too, with the
  server's work wasted;
- when ``max_connections`` clients are connected, further attempts are
  rejected with "too many clients" (SQLSTATE 53300) after ``reject_s``;
- between attempts a client follows its strategy (sampled with numpy), with
  its ``max_attempts`` and a hard ``deadline``, as the real driver does.

Phase one (all attempts before the server is ready) is vectorised with
numpy; phase two (attempts that reach the live server) is a discrete-event
loop over a heap, which touches only attempts after ``ready_s``. 10,000
clients take well under a second for every strategy here.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.retry.strategies import Strategy, get_strategy

OK, REFUSED, TIMEOUT, TOO_MANY = 0, 1, 2, 3
OUTCOMES = {OK: "ok", REFUSED: "refused", TIMEOUT: "timeout", TOO_MANY: "too_many_clients"}
MAX_DELAYS = 5000
#: Linux SYN retransmissions after a dropped SYN: 1 s, then 3 s, 7 s, 15 s... after the first.
SYN_RETRANSMIT_S = (1.0, 3.0, 7.0, 15.0, 31.0, 63.0)


def _check(
    owner: str, name: str, value: Any, *, minimum: float = 0.0, strict: bool = False
) -> None:
    validate.number(f"{owner}.{name}", value, minimum=minimum, strict=strict)


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    """Everything one simulated herd depends on (see the module docstring)."""

    n_clients: int
    outage_s: float = 1.0
    boot_s: float = 0.05
    hang_s: float = 0.0
    capacity_per_s: float = 300.0
    latency_s: float = 0.005
    refused_s: float = 0.0003
    reject_s: float | None = None
    max_connections: int | None = None
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0
    start_spread_s: float = 0.0
    backlog: int = 4096

    def __post_init__(self) -> None:
        n = self.n_clients
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"SimSettings.n_clients must be an int >= 1, got {n!r}")
        _check("SimSettings", "outage_s", self.outage_s)
        _check("SimSettings", "boot_s", self.boot_s)
        _check("SimSettings", "hang_s", self.hang_s)
        _check("SimSettings", "capacity_per_s", self.capacity_per_s, strict=True)
        _check("SimSettings", "latency_s", self.latency_s)
        _check("SimSettings", "refused_s", self.refused_s)
        _check("SimSettings", "start_spread_s", self.start_spread_s)
        if self.reject_s is not None:
            _check("SimSettings", "reject_s", self.reject_s)
        for name in ("connect_timeout", "deadline"):
            value = getattr(self, name)
            if value is not None:
                _check("SimSettings", name, value, strict=True)
        b = self.backlog
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"SimSettings.backlog must be an int >= 1, got {b!r}")
        m = self.max_connections
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"SimSettings.max_connections must be an int >= 1 or None, got {m!r}")

    @property
    def ready_s(self) -> float:
        return self.outage_s + self.boot_s

    @property
    def hang_from_s(self) -> float:
        """From this moment attempts wait for the server instead of being refused."""
        return max(0.0, self.ready_s - self.hang_s)

    @property
    def service_s(self) -> float:
        return 1.0 / self.capacity_per_s

    @property
    def reject_cost_s(self) -> float:
        return self.reject_s if self.reject_s is not None else 0.25 * self.service_s

    @classmethod
    def calibrated(cls, calibration: dict[str, float], **values: Any) -> SimSettings:
        """Settings from :func:`perfkit.retry.herd.calibrate` output plus the scenario."""
        return cls(
            capacity_per_s=calibration["capacity_per_s"],
            latency_s=calibration["connect_s"],
            refused_s=calibration["refused_s"],
            **values,
        )


@dataclass(kw_only=True)
class SimResult:
    """Simulated attempts (times from the outage start) and per-client outcomes."""

    settings: SimSettings
    strategy: str
    attempt_client: np.ndarray
    attempt_time: np.ndarray
    attempt_outcome: np.ndarray
    connected_at: np.ndarray  # NaN for clients that gave up
    elapsed_s: float

    def attempts_frame(self) -> pd.DataFrame:
        """One row per attempt; ``t_event_s`` is relative to the restart (``outage_s``)."""
        return pd.DataFrame(
            {
                "strategy": self.strategy,
                "n_clients": self.settings.n_clients,
                "client": self.attempt_client,
                "t_event_s": self.attempt_time - self.settings.outage_s,
                "outcome": pd.Categorical.from_codes(
                    self.attempt_outcome, categories=[OUTCOMES[i] for i in range(4)]
                ),
            }
        )

    def rate(
        self, *, bin_s: float = 0.1, after_restart: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Attempts per ``bin_s`` bin: (bin starts relative to the restart, counts)."""
        times = self.attempt_time - self.settings.outage_s
        if after_restart:
            times = times[self.attempt_time >= self.settings.outage_s]
        if len(times) == 0:
            return np.array([]), np.array([], dtype=int)
        lo = math.floor(times.min() / bin_s) * bin_s
        hi = math.ceil((times.max() + 1e-9) / bin_s) * bin_s
        counts, edges = np.histogram(times, bins=np.arange(lo, hi + bin_s / 2, bin_s))
        return edges[:-1], counts

    def summary(self) -> dict[str, Any]:
        s = self.settings
        connected = self.connected_at[~np.isnan(self.connected_at)]
        after = self.attempt_time >= s.ready_s
        _, all_counts = self.rate()
        _, live_counts = self.rate(after_restart=True)
        n_ok = len(connected)
        return {
            "strategy": self.strategy,
            "n_clients": s.n_clients,
            "outage_s": s.outage_s,
            "max_connections": s.max_connections,
            "connect_timeout_s": s.connect_timeout,
            "connected": n_ok,
            "gave_up": s.n_clients - n_ok,
            "attempts": len(self.attempt_time),
            "attempts_after_ready": int(after.sum()),
            "too_many_clients": int((self.attempt_outcome == TOO_MANY).sum()),
            "timeouts": int((self.attempt_outcome == TIMEOUT).sum()),
            "peak_rate_per_100ms": int(all_counts.max()) if len(all_counts) else 0,
            "attempts_after_restart": int((self.attempt_time >= s.outage_s).sum()),
            "peak_rate_after_restart_per_100ms": int(live_counts.max()) if len(live_counts) else 0,
            "all_connected_after_ready_s": float(connected.max() - s.ready_s)
            if n_ok == s.n_clients
            else math.nan,
            "median_connected_after_ready_s": float(np.median(connected) - s.ready_s)
            if n_ok
            else math.nan,
            "p90_connected_after_ready_s": float(np.quantile(connected, 0.9) - s.ready_s)
            if n_ok
            else math.nan,
            "sim_elapsed_s": self.elapsed_s,
        }


def _n_delays(strategy: Strategy, settings: SimSettings) -> int:
    """How many delays a client can use: max_attempts - 1, or until the deadline."""
    if strategy.max_attempts is not None:
        return min(strategy.max_attempts - 1, MAX_DELAYS)
    if settings.deadline is None:
        raise ConfigError(
            f"{type(strategy).__name__} is unbounded: give SimSettings.deadline to bound it"
        )
    total, k = 0.0, 0
    while total < settings.deadline and k < MAX_DELAYS:
        k += 1
        total += max(strategy.delay_bounds(k)[0], settings.refused_s, 1e-3)
    return k


def _attempt_timeouts(strat: Strategy, s: SimSettings, delays: np.ndarray, k: int) -> np.ndarray:
    """Attempt timeouts, (n, k + 1): the connect timeout, or gRPC's from its backoff."""
    if strat.anchor != "attempt_start":
        default_timeout = math.inf if s.connect_timeout is None else float(s.connect_timeout)
        return np.full_like(delays, default_timeout)
    timeouts = np.empty_like(delays)
    for j in range(k + 1):
        timeouts[:, j] = np.maximum(
            delays[:, j], strat.attempt_timeout(j + 1, 0.0, s.connect_timeout) or 0.0
        )
    return timeouts


@dataclass(frozen=True)
class _Refused:
    """Phase one: attempt start times if every attempt is refused, and the refused ones."""

    starts: np.ndarray  # (n, k + 1)
    first_live: np.ndarray  # per client: the first attempt not refused (k + 1 if none)
    clients: np.ndarray
    times: np.ndarray


def _refused_phase(
    strat: Strategy,
    s: SimSettings,
    delays: np.ndarray,
    t0: np.ndarray,
    deadline_at: np.ndarray,
    k: int,
    first_cost: np.ndarray | None = None,
) -> _Refused:
    """Phase one (vectorised): every attempt before the server takes connections is refused.

    ``first_cost``: how long each client's first attempt takes to fail (default
    ``refused_s``; the contention model's shutdown window makes it longer).
    """
    steps = delays[:, :k]
    at_start = strat.anchor == "attempt_start"
    first = None
    if first_cost is not None and k:
        first = np.maximum(steps[:, 0], first_cost) if at_start else steps[:, 0] + first_cost
    steps = np.maximum(steps, s.refused_s) if at_start else steps + s.refused_s
    if first is not None:
        steps[:, 0] = first
    starts = np.concatenate([t0[:, None], t0[:, None] + np.cumsum(steps, axis=1)], axis=1)
    valid = starts < deadline_at[:, None]
    before = valid & (starts < s.hang_from_s)
    live = valid & (starts >= s.hang_from_s)
    first_live = np.where(live.any(axis=1), live.argmax(axis=1), k + 1)
    pre_clients, pre_idx = np.nonzero(before)
    return _Refused(starts, first_live, pre_clients, starts[pre_clients, pre_idx])


@dataclass
class _Server:
    """Phase two's live server: one FIFO worker behind a bounded accept queue."""

    free_at: float
    service: float
    reject: float
    latency_extra: float
    limit: float
    backlog: int
    queued: deque[float] = field(default_factory=deque)  # service starts not yet reached
    established: int = 0

    @classmethod
    def of(cls, s: SimSettings) -> _Server:
        return cls(
            free_at=s.ready_s,
            service=s.service_s,
            reject=s.reject_cost_s,
            latency_extra=max(0.0, s.latency_s - s.service_s),
            limit=s.max_connections if s.max_connections is not None else math.inf,
            backlog=s.backlog,
        )

    def full(self, t: float) -> bool:
        """Whether the accept queue is full at ``t`` (a SYN arriving now is dropped)."""
        queued = self.queued
        while queued and queued[0] <= t:
            queued.popleft()
        return len(queued) >= self.backlog

    def answer(self, t: float, give_up_at: float) -> tuple[int, float]:
        """An attempt accepted at ``t``: its outcome, and when it connected or failed."""
        begin = max(t, self.free_at)
        if begin > t:
            self.queued.append(begin)
        if begin >= give_up_at:  # still queued when the client gave up: a cheap fork
            self.free_at = begin + self.reject
            return TIMEOUT, give_up_at
        if self.established >= self.limit:
            self.free_at = begin + self.reject
            if self.free_at > give_up_at:
                return TIMEOUT, give_up_at
            return TOO_MANY, self.free_at
        self.free_at = begin + self.service
        done = self.free_at + self.latency_extra
        if done > give_up_at:
            return TIMEOUT, give_up_at
        self.established += 1
        return OK, done


def _live_phase(
    strat: Strategy,
    s: SimSettings,
    refused: _Refused,
    delays: np.ndarray,
    timeouts: np.ndarray,
    deadline_at: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phase two (events): attempts that reach the server from ``ready_s`` on.

    Returns the attempts' clients, start times and outcomes, and each client's
    connect time (NaN if it never connected).
    """
    # Heap entries: (arrival, client, attempt index, attempt start, SYN retransmissions).
    heap: list[tuple[float, int, int, float, int]] = []
    for c in np.nonzero(refused.first_live <= k)[0]:
        t = float(refused.starts[c, refused.first_live[c]])  # waits for the server if earlier
        heap.append((max(t, s.ready_s), int(c), int(refused.first_live[c]), t, 0))
    heapq.heapify(heap)
    connected_at = np.full(s.n_clients, np.nan)
    server = _Server.of(s)
    anchor_start = strat.anchor == "attempt_start"
    ev_client: list[int] = []
    ev_time: list[float] = []
    ev_outcome: list[int] = []
    # Plain Python lists: per-element numpy indexing would dominate the event loop.
    delay_rows: list[list[float]] = delays.tolist()
    timeout_rows: list[list[float]] = timeouts.tolist()
    deadlines: list[float] = deadline_at.tolist()
    heappop, heappush = heapq.heappop, heapq.heappush
    while heap:
        t, c, j, t_start, retx = heappop(heap)
        give_up_at = t_start + min(timeout_rows[c][j], deadlines[c] - t_start)
        if t >= give_up_at:  # timed out waiting for the server to come up: no work for it
            outcome, end = TIMEOUT, give_up_at
        elif server.full(t):
            # Accept queue full: the SYN is dropped and the kernel retransmits it.
            if retx < len(SYN_RETRANSMIT_S) and t_start + SYN_RETRANSMIT_S[retx] < give_up_at:
                heappush(heap, (t_start + SYN_RETRANSMIT_S[retx], c, j, t_start, retx + 1))
                continue
            outcome, end = TIMEOUT, give_up_at
        else:
            outcome, end = server.answer(t, give_up_at)
        ev_client.append(c)
        ev_time.append(t_start)
        ev_outcome.append(outcome)
        if outcome == OK:
            connected_at[c] = end
        elif j < k:  # not the last attempt: the next one after the strategy's delay
            d = delay_rows[c][j]
            nxt = max(end, t_start + d) if anchor_start else end + d
            if nxt < deadlines[c]:
                heappush(heap, (nxt, c, j + 1, nxt, 0))
    return (
        np.asarray(ev_client, dtype=np.int64),
        np.asarray(ev_time, dtype=float),
        np.asarray(ev_outcome, dtype=np.int8),
        connected_at,
    )


def simulate(
    strategy: Strategy | str, settings: SimSettings, *, seed: int = 0, name: str | None = None
) -> SimResult:
    """Simulate one herd; deterministic for a given ``seed``."""
    started = time.perf_counter()
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    label = name or (strategy if isinstance(strategy, str) else strat.kind)
    s = settings
    n = s.n_clients
    rng = np.random.default_rng(seed)
    k = _n_delays(strat, s)
    delays = strat.sample(rng, n, k + 1)  # delay j follows attempt j; the last feeds timeouts
    t0 = rng.random(n) * s.start_spread_s if s.start_spread_s > 0 else np.zeros(n)
    deadline_at = t0 + (s.deadline if s.deadline is not None else np.inf)
    timeouts = _attempt_timeouts(strat, s, delays, k)
    refused = _refused_phase(strat, s, delays, t0, deadline_at, k)
    clients, times, outcomes, connected_at = _live_phase(
        strat, s, refused, delays, timeouts, deadline_at, k
    )
    return SimResult(
        settings=s,
        strategy=label,
        attempt_client=np.concatenate([refused.clients, clients]),
        attempt_time=np.concatenate([refused.times, times]),
        attempt_outcome=np.concatenate(
            [np.full(len(refused.clients), REFUSED, dtype=np.int8), outcomes]
        ),
        connected_at=connected_at,
        elapsed_s=time.perf_counter() - started,
    )


def simulate_many(
    strategies: list[str], settings: SimSettings, *, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, SimResult]]:
    """:func:`simulate` each named strategy; summaries as a frame plus the results."""
    results = {name: simulate(name, settings, seed=seed) for name in strategies}
    return pd.DataFrame([r.summary() for r in results.values()]), results
