"""Retry scenarios against a real server: cold start, outage and hang.

Every scenario runs one client per :class:`ClientSpec` *at the same time*
(one thread each) against the same event, while an independent
:class:`~perfkit.retry.probe.ReadinessProbe` records when the server was
actually ready. Results are tidy frames:

- ``runs``: one row per client run: ``scenario, rep, label, strategy,
  param_s`` (outage/hang length), ``event_at`` (server launched / brought up /
  resumed), ``ready_at`` (probe), ``connected_at``, ``overshoot_s`` (connected
  minus ready), ``time_to_connect_s`` (connected minus the client's start),
  ``attempts, failed, total_sleep_s, gave_up``;
- ``attempts``: every attempt of every run (the trace), with ``t_event_s``:
  start time relative to the event, for timelines.

Herds (many clients of one strategy) live in :mod:`perfkit.retry.herd`.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from perfkit import stats
from perfkit.errors import ConfigError, RetryError
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.retry.connect import connect_with_retry
from perfkit.retry.probe import ReadinessProbe
from perfkit.retry.strategies import Strategy, get_strategy, strategy_name
from perfkit.retry.trace import Trace


@dataclass(frozen=True, kw_only=True)
class ClientSpec:
    """One retrying client: a strategy (registered name or object) and its stop settings.

    A :class:`Strategy` object (e.g. a fitted schedule) runs without being
    registered in ``STRATEGIES``; its label defaults to its registry name or kind.
    """

    strategy: str | Strategy
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0
    label: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.resolve()  # validates name (or object) and overrides
        for name in ("connect_timeout", "deadline"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ConfigError(f"ClientSpec.{name} must be > 0 or None, got {value!r}")
        if not self.label:
            object.__setattr__(self, "label", self.strategy_name)

    def resolve(self) -> Strategy:
        """The strategy this client runs, with its overrides applied."""
        if isinstance(self.strategy, Strategy):
            return self.strategy.with_(**self.overrides) if self.overrides else self.strategy
        if not isinstance(self.strategy, str):
            raise ConfigError(
                f"ClientSpec.strategy must be a strategy name or a Strategy, got {self.strategy!r}"
            )
        return get_strategy(self.strategy, **self.overrides)

    @property
    def strategy_name(self) -> str:
        """The registered name, or a Strategy object's registry name or kind."""
        return self.strategy if isinstance(self.strategy, str) else strategy_name(self.strategy)

    def __hash__(self) -> int:
        return hash((self.strategy, self.connect_timeout, self.deadline, self.label))


def specs_for(
    strategies: Iterable[str] | Mapping[str, str | Strategy],
    *,
    connect_timeout: float | None = 2.0,
    deadline: float = 60.0,
) -> list[ClientSpec]:
    """One :class:`ClientSpec` per strategy (validated now, before any server starts).

    ``strategies`` are registered names, or a mapping of label to a name or a
    :class:`Strategy` object (e.g. ``{"fitted": fit_schedule(...)}``): the
    registry itself is never changed.
    """
    if isinstance(strategies, Mapping):
        items = list(strategies.items())
    else:
        items = [(name if isinstance(name, str) else "", name) for name in strategies]
    return [
        ClientSpec(strategy=strat, connect_timeout=connect_timeout, deadline=deadline, label=label)
        for label, strat in items
    ]


def client_rng(seed: int, *parts: object) -> random.Random:
    """A deterministic RNG per client (string seeds hash with SHA-512 in CPython)."""
    return random.Random(":".join(str(p) for p in (seed, *parts)))


@dataclass(kw_only=True)
class ClientRun:
    """What one client thread did."""

    spec: ClientSpec
    trace: Trace | None = None
    error: str | None = None


class ClientGroup:
    """Client threads that start retrying together when :meth:`go` is called."""

    def __init__(
        self, specs: Sequence[ClientSpec], *, seed: int, tag: Sequence[object] = ()
    ) -> None:
        self.runs = [ClientRun(spec=s) for s in specs]
        self._seed = seed
        self._tag = tuple(tag)
        self._dsn: str | None = None
        self._go = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(run,), name=f"client-{run.spec.label}")
            for run in self.runs
        ]
        for t in self._threads:
            t.start()

    def _client(self, run: ClientRun) -> None:
        self._go.wait()
        if self._dsn is None:  # released without a target: aborted
            return
        spec = run.spec
        try:
            conn, trace = connect_with_retry(
                self._dsn,
                spec.resolve(),
                connect_timeout=spec.connect_timeout,
                deadline=spec.deadline,
                rng=client_rng(self._seed, *self._tag, spec.label),
                autocommit=True,
            )
            conn.close()
            run.trace = trace
        except RetryError as exc:
            run.trace = exc.trace
            run.error = str(exc)
        except Exception as exc:  # recorded, never raised from a thread
            run.error = f"{type(exc).__name__}: {exc}"

    def go(self, dsn: str) -> None:
        self._dsn = dsn
        self._go.set()

    def join(self, timeout: float | None = None) -> None:
        self._go.set()
        for t in self._threads:
            t.join(timeout)


def _rows(
    group: ClientGroup,
    *,
    scenario: str,
    rep: int,
    param_s: float | None,
    event_at: float,
    ready_at: float | None,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for run in group.runs:
        trace = run.trace
        connected = trace.connected_at if trace else None
        row: dict[str, Any] = {
            "scenario": scenario,
            "rep": rep,
            "label": run.spec.label,
            "strategy": run.spec.strategy_name,
            "connect_timeout_s": run.spec.connect_timeout,
            "param_s": param_s,
            "event_at": event_at,
            "ready_at": ready_at,
            "ready_after_event_s": None if ready_at is None else ready_at - event_at,
            "client_t0": trace.t0 if trace else None,
            "connected_at": connected,
            "connected": connected is not None,
            "overshoot_s": (connected - ready_at)
            if connected is not None and ready_at is not None
            else math.nan,
            "time_to_connect_s": (connected - trace.t0) if trace and connected else math.nan,
            "attempts": trace.n_attempts if trace else 0,
            "failed": trace.n_failed if trace else 0,
            "total_sleep_s": trace.total_sleep if trace else 0.0,
            "gave_up": trace.gave_up if trace else "error",
            "error": run.error,
        }
        rows.append(row)
        if trace is not None:
            df = trace.to_frame(scenario=scenario, rep=rep, label=run.spec.label, param_s=param_s)
            df["t_event_s"] = df["start"] - event_at
            df["t_event_end_s"] = df["end"] - event_at
            frames.append(df)
    return rows, frames


@dataclass(kw_only=True)
class ScenarioResult:
    """``runs`` and ``attempts`` frames of one scenario (see the module docstring)."""

    runs: pd.DataFrame
    attempts: pd.DataFrame
    server: dict[str, Any] = field(default_factory=dict)


def _result(rows: list[dict[str, Any]], frames: list[pd.DataFrame]) -> ScenarioResult:
    attempts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return ScenarioResult(runs=pd.DataFrame(rows), attempts=attempts)


def cold_start(
    settings: ServerSettings,
    specs: Sequence[ClientSpec],
    *,
    reps: int = 3,
    seed: int = 0,
    on_server: Callable[[PostgresServer], None] | None = None,
    first_rep: int = 0,
) -> ScenarioResult:
    """Launch a fresh server ``reps`` times; the clients start retrying at launch.

    The event is the moment ``start(wait=False)`` returned (the server process
    or container exists, not ready yet). ``on_server`` sees each server (e.g.
    to keep its ``describe()`` for metadata). Repetitions are numbered from
    ``first_rep`` (later rounds of the same experiment continue the count).
    """
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for rep in range(first_rep, first_rep + reps):
        group = ClientGroup(specs, seed=seed, tag=("cold", rep))
        server = create_server(settings)
        try:
            server.start(wait=False)
            event_at = time.monotonic()
            probe = ReadinessProbe(server.dsn).start()
            group.go(server.dsn)
            group.join()
            ready_at = probe.wait()
            probe.stop()
            if on_server is not None:
                on_server(server)
        finally:
            group.join()
            server.stop()
        r, f = _rows(
            group,
            scenario="cold_start",
            rep=rep,
            param_s=None,
            event_at=event_at,
            ready_at=ready_at,
        )
        rows += r
        frames += f
    return _result(rows, frames)


def outage(
    server: PostgresServer,
    specs: Sequence[ClientSpec],
    *,
    outage_s: Sequence[float],
    reps: int = 1,
    seed: int = 0,
    first_rep: int = 0,
) -> ScenarioResult:
    """Stop the server for each length T, clients retrying from the stop; then start it.

    The event is the moment ``bring_up(wait=False)`` was called; overshoot is
    measured against the probe's ready time after that. Repetitions are
    numbered from ``first_rep``.
    """
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for length in outage_s:
        if not length >= 0:
            raise ConfigError(f"outage_s values must be >= 0, got {length!r}")
        for rep in range(first_rep, first_rep + reps):
            if not server.is_ready():
                server.bring_up(wait=True)
            group = ClientGroup(specs, seed=seed, tag=("outage", length, rep))
            server.take_down()
            try:
                group.go(server.dsn)
                time.sleep(length)
                event_at = time.monotonic()  # the restart begins (docker start takes a while)
                server.bring_up(wait=False)
                probe = ReadinessProbe(server.dsn).start()
                group.join()
                ready_at = probe.wait()
                probe.stop()
            finally:
                group.join()
                if not server.is_ready():
                    server.bring_up(wait=True)
            r, f = _rows(
                group,
                scenario="outage",
                rep=rep,
                param_s=float(length),
                event_at=event_at,
                ready_at=ready_at,
            )
            rows += r
            frames += f
    return _result(rows, frames)


def hang(
    server: PostgresServer,
    specs: Sequence[ClientSpec],
    *,
    hang_s: float,
    reps: int = 1,
    seed: int = 0,
) -> ScenarioResult:
    """Freeze the server (pause) for ``hang_s``; clients retry from the freeze.

    Connects to a frozen server neither fail nor finish: the kernel accepts
    the TCP handshake and nobody answers. The event is ``resume()``; the
    probe's ready time is the first success after it.
    """
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for rep in range(reps):
        group = ClientGroup(specs, seed=seed, tag=("hang", hang_s, rep))
        server.pause()
        try:
            group.go(server.dsn)
            time.sleep(hang_s)
        finally:
            server.resume()
        event_at = time.monotonic()
        probe = ReadinessProbe(server.dsn).start()
        group.join()
        ready_at = probe.wait()
        probe.stop()
        r, f = _rows(
            group,
            scenario="hang",
            rep=rep,
            param_s=float(hang_s),
            event_at=event_at,
            ready_at=ready_at,
        )
        rows += r
        frames += f
    return _result(rows, frames)


def summarize(
    runs: pd.DataFrame, by: Sequence[str] = ("scenario", "label"), *, seed: int = 0
) -> pd.DataFrame:
    """Median/p90 overshoot, time to connect and attempts per group; success rate.

    ``n`` is the number of runs with an overshoot (connected ones); the medians
    of overshoot and attempts carry seeded 95 % bootstrap intervals
    (:func:`perfkit.stats.quantile_interval`): ``overshoot_ci_low_s``,
    ``overshoot_ci_high_s``, ``attempts_ci_low``, ``attempts_ci_high``.
    """
    if runs.empty:
        return pd.DataFrame()
    g = runs.groupby(list(by), dropna=False)
    out = g.agg(
        runs=("connected", "size"),
        connected=("connected", "sum"),
        n=("overshoot_s", "count"),
        overshoot_median_s=("overshoot_s", "median"),
        overshoot_p90_s=("overshoot_s", lambda s: s.quantile(0.9)),
        time_to_connect_median_s=("time_to_connect_s", "median"),
        attempts_median=("attempts", "median"),
        failed_median=("failed", "median"),
    ).reset_index()
    out["success_rate"] = out["connected"] / out["runs"]
    intervals = []
    for _, group in g:
        overshoot = group["overshoot_s"].dropna().to_numpy(dtype=float)
        attempts = group["attempts"].to_numpy(dtype=float)
        o = stats.quantile_interval(overshoot, 0.5, seed=seed)
        a = stats.quantile_interval(attempts, 0.5, seed=seed)
        intervals.append((o.low, o.high, a.low, a.high))
    ci = np.array(intervals, dtype=float).reshape(-1, 4)
    out["overshoot_ci_low_s"], out["overshoot_ci_high_s"] = ci[:, 0], ci[:, 1]
    out["attempts_ci_low"], out["attempts_ci_high"] = ci[:, 2], ci[:, 3]
    return out
