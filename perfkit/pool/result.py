"""The outcome of one workload run: its frames, its settings and a one-row summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from perfkit.pool.records import Request, events_frame, requests_frame, stats_frame
from perfkit.pool.settings import PoolSettings, Workload
from perfkit.pool.summary import churn, summarize


@dataclass(frozen=True, kw_only=True)
class Action:
    """Something done ``at_s`` seconds after the workers start (e.g. kill its server processes).

    ``fn`` receives the run's ``application_name`` so it can target the run's
    own connections.
    """

    at_s: float
    name: str
    fn: Callable[[str], object]


@dataclass
class RunBook:
    """What a run collects while it runs; both runners (threads, asyncio) fill one."""

    workers: int
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    events: list[tuple[float, float, str, str]] = field(default_factory=list)
    per_worker: list[list[Request]] = field(default_factory=list)
    final_stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.per_worker = [[] for _ in range(self.workers)]

    def result(
        self,
        *,
        settings: PoolSettings,
        workload: Workload,
        mode: str,
        start_at: float,
        end: float,
        leaked: int | None,
    ) -> WorkloadResult:
        """The frames of the run, times relative to when the workers started."""
        records = [r for rs in self.per_worker for r in rs]
        return WorkloadResult(
            settings=settings,
            workload=workload,
            mode=mode,
            requests=requests_frame(records, start_at),
            stats=stats_frame(self.samples, start_at),
            events=events_frame(self.events, start_at),
            elapsed_s=end - start_at,
            leaked=leaked,
            final_stats=self.final_stats,
        )


@dataclass(frozen=True, kw_only=True)
class WorkloadResult:
    """Frames of one run (see :mod:`perfkit.pool.records` for their columns)."""

    settings: PoolSettings
    workload: Workload
    mode: str
    requests: pd.DataFrame
    stats: pd.DataFrame
    events: pd.DataFrame
    elapsed_s: float
    leaked: int | None
    final_stats: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """One flat row: settings, workload shape, throughput, percentiles, churn, leaks."""
        s = self.settings
        row: dict[str, Any] = {
            "pool": s.name,
            "mode": self.mode,
            "pooled": s.pooled,
            "min_size": s.min_size,
            "max_size": s.effective_max_size,
            "timeout_s": s.timeout,
            "max_waiting": s.max_waiting,
            "max_idle_s": s.max_idle,
            "max_lifetime_s": s.max_lifetime,
            "check": s.check,
            "workers": self.workload.workers,
            "think_ms": self.workload.think_time * 1000.0,
        }
        row |= summarize(self.requests, self.elapsed_s)
        row |= churn(self.stats, self.elapsed_s)
        row["leaked"] = self.leaked
        return row

    def tagged(self, **tags: Any) -> dict[str, pd.DataFrame]:
        """The three frames with ``tags`` (and pool name / workers) added as columns."""
        extra = {"pool": self.settings.name, "workers": self.workload.workers} | tags
        out = {}
        for name in ("requests", "stats", "events"):
            df = getattr(self, name).copy()
            for k, v in extra.items():
                df[k] = v
            out[name] = df
        return out
