"""The PgBouncer lab's reconnect storm (part 3): clients holding connections through the
server or a PgBouncer while the server goes down and comes back; what they and the server
saw (see :mod:`perfkit.pgbouncer.lab` for the definitions of "back" and "ready")."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg

from perfkit.errors import PerfkitError
from perfkit.pgbouncer.measure import (
    DIRECT,
    SAMPLE_EVERY_S,
    TRANSACTION,
    connect,
    peak_after,
    peak_rate,
    ready_after,
    run_threads,
)

if TYPE_CHECKING:
    from perfkit.postgres import PostgresServer
    from perfkit.retry.probe import BackendSampler

HEARTBEAT_S = 0.1  # a holding client's SELECT 1 every 0.1 s
STORM_DEADLINE_S = 30.0  # a client gives up this long after the server went down
HOLD_MAX_S = 3.0  # longest wait for a backend sample after the last client came back


@dataclass(frozen=True, kw_only=True)
class StormSettings:
    """One storm's shape: clients, outage, the clients' fixed retry delay."""

    n_clients: int
    outage_s: float
    retry_delay_s: float


@dataclass
class _StormClient:
    """One storm client's record (monotonic times)."""

    i: int
    lost_at: float | None = None
    recovered_at: float | None = None
    attempts: list[tuple[float, float, str]] = field(default_factory=list)
    conn: psycopg.Connection[Any] | None = None


class _Storm:
    """The shared state of one storm: clients, the outage's moments and the release signal."""

    def __init__(self, dsn: str, n: int, retry_delay_s: float) -> None:
        self.dsn = dsn
        self.retry_delay_s = retry_delay_s
        self.clients = [_StormClient(i) for i in range(n)]
        self.connected = threading.Semaphore(0)
        self.down = threading.Event()
        self.down_at = math.inf
        self.release = threading.Event()

    def run_client(self, i: int) -> None:
        c = self.clients[i]
        try:
            c.conn = connect(self.dsn)
        finally:
            self.connected.release()  # connected or failed: the coordinator stops waiting
        deadline = math.inf
        try:
            while not self.release.is_set():
                if self.down.is_set() and deadline == math.inf:
                    deadline = time.monotonic() + STORM_DEADLINE_S
                if time.monotonic() > deadline:
                    return  # gave up: recovered_at stays None
                if c.conn is None:
                    if self._reconnect(c):
                        return
                    time.sleep(self.retry_delay_s)
                    continue
                started = time.monotonic()
                try:
                    c.conn.execute("SELECT 1")
                except psycopg.Error:
                    c.lost_at = c.lost_at or time.monotonic()
                    c.conn.close()
                    c.conn = None
                    continue
                if started >= self.down_at:
                    c.recovered_at = time.monotonic()
                    return
                self.release.wait(HEARTBEAT_S)
        finally:
            if c.recovered_at is None and c.conn is not None:
                c.conn.close()
                c.conn = None

    def _reconnect(self, c: _StormClient) -> bool:
        t0 = time.monotonic()
        try:
            conn = connect(self.dsn)
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
                raise
        except psycopg.Error as exc:
            c.attempts.append((t0, time.monotonic(), type(exc).__name__))
            return False
        end = time.monotonic()
        c.attempts.append((t0, end, "ok"))
        c.conn = conn
        if t0 >= self.down_at:
            c.recovered_at = end
            return True
        return False

    def settled(self) -> bool:
        return all(c.recovered_at is not None for c in self.clients)

    def close_all(self) -> None:
        for c in self.clients:
            if c.conn is not None:
                c.conn.close()
                c.conn = None


# -- the steps of one storm -----------------------------------------------------------------


def _start_clients(storm: _Storm) -> tuple[threading.Thread, dict[str, BaseException]]:
    """Setup: every client connected, from one background thread; its error goes in the box."""
    box: dict[str, BaseException] = {}

    def clients() -> None:
        try:
            run_threads(len(storm.clients), storm.run_client)
        except BaseException as exc:  # surfaced in the main thread
            box["error"] = exc

    worker = threading.Thread(target=clients, name="storm-clients", daemon=True)
    worker.start()
    for _ in storm.clients:
        storm.connected.acquire()
    if any(c.conn is None for c in storm.clients):  # a client could not connect at all
        storm.release.set()
        worker.join()
        storm.close_all()
        raise box.get("error") or PerfkitError("a storm client could not connect")
    return worker, box


def _outage(
    server: PostgresServer,
    storm: _Storm,
    sampler: BackendSampler,
    worker: threading.Thread,
    outage_s: float,
) -> tuple[float, float]:
    """The storm: down for ``outage_s``, up again, clients back; (restart, probe ready)."""
    from perfkit.retry.probe import ReadinessProbe

    time.sleep(3 * SAMPLE_EVERY_S)  # a few samples of the steady state
    server.take_down()
    storm.down_at = time.monotonic()
    storm.down.set()
    time.sleep(outage_s)
    event_at = time.monotonic()
    server.bring_up(wait=False)
    probe = ReadinessProbe(server.dsn).start()
    ready = probe.wait()
    probe.stop()
    ready_at = ready if ready is not None else math.nan
    while worker.is_alive() and not storm.settled():
        time.sleep(0.02)
    last = max((c.recovered_at or 0.0 for c in storm.clients), default=0.0)
    until = time.monotonic() + HOLD_MAX_S
    while not sampler.sampled_after(last) and time.monotonic() < until:
        time.sleep(0.02)
    return event_at, ready_at


def _teardown(
    server: PostgresServer, storm: _Storm, sampler: BackendSampler, worker: threading.Thread
) -> None:
    """Teardown: clients released and closed, sampling stopped, the server left running."""
    storm.release.set()
    worker.join()
    sampler.stop()
    storm.close_all()
    if not server.is_ready():
        server.bring_up(wait=True)


# -- what one storm recorded ----------------------------------------------------------------


def _client_frames(
    storm: _Storm, tags: Mapping[str, Any], *, event_at: float, ready_at: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per client (lost, back, attempts) and one per reconnect attempt."""
    client_rows, attempt_rows = [], []
    for c in storm.clients:
        back = c.recovered_at
        client_rows.append(
            {
                **tags,
                "client": c.i,
                "lost": c.lost_at is not None,
                "recovered": back is not None,
                "attempts": len(c.attempts),
                "recovered_after_ready_ms": (back - ready_at) * 1000
                if back is not None
                else math.nan,
            }
        )
        attempt_rows += [
            {
                **tags,
                "client": c.i,
                "t_event_s": start - event_at,
                "duration_ms": (end - start) * 1000,
                "outcome": outcome,
            }
            for start, end, outcome in c.attempts
        ]
    attempts = pd.DataFrame(
        attempt_rows, columns=[*tags, "client", "t_event_s", "duration_ms", "outcome"]
    )
    return pd.DataFrame(client_rows), attempts


def _backend_frame(
    sampler: BackendSampler, tags: Mapping[str, Any], event_at: float
) -> pd.DataFrame:
    """The server's backends sampled over the storm (``t_event_s`` from the restart)."""
    backends = pd.DataFrame(sampler.samples, columns=["at", "backends"])
    backends["t_event_s"] = backends["at"] - event_at
    return backends.drop(columns="at").assign(**tags)


def _server_attempts(
    server: PostgresServer, wall_to_mono: float, window: tuple[float, float], event_at: float
) -> tuple[float, float]:
    """Connections the server received in ``window`` and their peak rate per second, from its
    ``connection received`` log lines (NaN, NaN where the backend has no log to read)."""
    from perfkit.retry.probe import connection_log_times

    log_times = connection_log_times(server, wall_to_mono=wall_to_mono)
    if log_times is None:
        return math.nan, math.nan
    seen = [t - event_at for t in log_times if window[0] <= t <= window[1]]
    return float(len(seen)), peak_rate(seen)


def _summary(
    tags: Mapping[str, Any],
    settings: StormSettings,
    frames: Mapping[str, pd.DataFrame],
    moments: Mapping[str, float],
    server_seen: tuple[float, float],
) -> dict[str, Any]:
    """The storm's one summary row."""
    client_frame, attempts, backends = frames["clients"], frames["attempts"], frames["backends"]
    event_at, ready_at = moments["event_at"], moments["ready_at"]
    recovered = client_frame["recovered_after_ready_ms"].dropna()
    steady = backends.loc[backends["t_event_s"] < -settings.outage_s, "backends"]
    return {
        **tags,
        "outage_s": settings.outage_s,
        "retry_delay_ms": settings.retry_delay_s * 1000,
        "ready_after_event_s": ready_at - event_at,
        "probe_ready_after_event_s": moments["probe_ready_at"] - event_at,
        "recovered": int(client_frame["recovered"].sum()),
        "lost": int(client_frame["lost"].sum()),
        "client_attempts": len(attempts),
        "client_peak_attempts_per_s": peak_rate(attempts["t_event_s"].to_numpy()),
        "server_connections_received": server_seen[0],
        "server_peak_attempts_per_s": server_seen[1],
        "steady_backends": float(steady.max()),
        "peak_backends_after_restart": peak_after(backends, 0.0),
        "median_recovered_after_ready_ms": float(recovered.median())
        if len(recovered)
        else math.nan,
        "all_recovered_after_ready_ms": float(recovered.max())
        if len(recovered) == settings.n_clients
        else math.nan,
    }


def run_storm(
    server: PostgresServer,
    dsn: str,
    settings: StormSettings,
    *,
    variant: str,
    rep: int = 0,
) -> dict[str, Any]:
    """One reconnect storm through ``dsn`` (the server's or a PgBouncer's); the server is
    left running. Returns ``summary`` (a dict) and the frames ``clients``, ``attempts``,
    ``backends`` (times ``t_event_s`` from the restart)."""
    from perfkit.retry.probe import BackendSampler

    if not server.is_ready():
        server.bring_up(wait=True)
    wall_to_mono = time.monotonic() - time.time()
    storm = _Storm(dsn, settings.n_clients, settings.retry_delay_s)
    sampler = BackendSampler(server.dsn, interval=SAMPLE_EVERY_S)
    worker, box = _start_clients(storm)
    sampler.start()
    try:
        event_at, probe_ready_at = _outage(server, storm, sampler, worker, settings.outage_s)
    finally:
        _teardown(server, storm, sampler, worker)
    if "error" in box:
        raise box["error"]
    end_at = time.monotonic()
    moments = {
        "event_at": event_at,
        "probe_ready_at": probe_ready_at,
        "ready_at": ready_after(probe_ready_at, [c.recovered_at for c in storm.clients]),
    }
    tags = {"variant": variant, "rep": rep, "n_clients": settings.n_clients}
    clients, attempts = _client_frames(storm, tags, event_at=event_at, ready_at=moments["ready_at"])
    frames = {
        "clients": clients,
        "attempts": attempts,
        "backends": _backend_frame(sampler, tags, event_at),
    }
    seen = _server_attempts(server, wall_to_mono, (storm.down_at, end_at), event_at)
    return {"summary": _summary(tags, settings, frames, moments, seen), **frames}


def storm_frames(
    server: PostgresServer,
    targets: Mapping[str, str],
    settings: StormSettings,
    *,
    repetitions: int,
    server_login_retry_s: float,
    progress: Callable[[str], None],
) -> dict[str, pd.DataFrame]:
    """Part 3: ``repetitions`` storms direct and through the transaction-mode PgBouncer,
    interleaved: ``storm`` (one row per storm), ``storm_clients``, ``storm_attempts``,
    ``storm_backends``."""
    storms: dict[str, list[Any]] = {"summary": [], "clients": [], "attempts": [], "backends": []}
    for rep in range(repetitions):
        for variant in (DIRECT, TRANSACTION):
            progress(f"storm: {settings.n_clients} clients, {variant}, rep {rep}")
            out = run_storm(server, targets[variant], settings, variant=variant, rep=rep)
            for key in storms:
                storms[key].append(out[key])
    frames = {
        "storm": pd.DataFrame(storms["summary"]).assign(server_login_retry_s=server_login_retry_s)
    }
    for key in ("clients", "attempts", "backends"):
        frames[f"storm_{key}"] = pd.concat(storms[key], ignore_index=True)
    return frames
