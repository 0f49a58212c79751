"""Where the server's time went during each variant of a lab: one object a lab carries.

``with profiler.measure("max_size=8", workers=16): run()`` takes the counters
and ``pg_stat_statements`` before, samples ``pg_stat_activity`` while the
block runs (:class:`~perfkit.serverprofile.sampler.WaitSampler`), takes them
again after and keeps the rows. :meth:`Profiler.frames` returns the three
frames saved with a lab run:

``wait_profile``    variant, tags, wait_event_type, wait_event, state, backend_type,
                    count (backends seen with that key, summed over samples), samples,
                    missed, elapsed_s, query_s (the sampler's own query time).
``top_statements``  variant, tags, rank, query, calls, total_ms, mean_ms, rows,
                    shared_blks_hit, shared_blks_read: the top statements by total
                    time and by calls in the block (deltas).
``server_counters`` variant, tags, source, counter, value: deltas of
                    ``pg_stat_database`` / ``pg_stat_bgwriter`` / ``pg_stat_checkpointer`` /
                    ``pg_stat_wal``, mean client backends per state (``backends``), the
                    sampler's own numbers (``sampler``) and whatever the lab adds
                    (``run.add``: the pool's ``get_stats()``, PgBouncer's ``SHOW STATS``).

A snapshot that fails (the server is down) is noted in :attr:`Profiler.notes`
and skipped; the run goes on. Nothing here raises into the lab's measurement.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import pandas as pd
import psycopg

from perfkit.serverprofile import counters, statements
from perfkit.serverprofile.sampler import KEY_COLUMNS, Profile, WaitSampler

FRAME_NAMES = ("wait_profile", "top_statements", "server_counters")
DEFAULT_INTERVAL_S = 0.01
TOP_N = 10

Source = Callable[[], Mapping[str, float]]


@dataclass
class Run:
    """One measured block: the lab may add counters of its own (``add``)."""

    variant: str
    tags: dict[str, Any]
    added: list[dict[str, Any]] = field(default_factory=list)

    def add(self, source: str, values: Mapping[str, Any]) -> None:
        """Gauges or totals the lab read itself (``source`` names where they came from)."""
        for name, value in values.items():
            with contextlib.suppress(TypeError, ValueError):
                self.added.append({"source": source, "counter": name, "value": float(value)})


class Profiler:
    """Wait events, statements and counters per variant of a lab, against one server."""

    def __init__(
        self,
        dsn: str,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        top_n: int = TOP_N,
        create_extension: bool = True,
    ) -> None:
        self._dsn = dsn
        self._create = create_extension
        self.interval_s = interval_s
        self.top_n = top_n
        self.notes: list[str] = []
        self._statements: bool | None = None  # None: not checked yet
        self._rows: dict[str, list[dict[str, Any]]] = {name: [] for name in FRAME_NAMES}
        self._wait_sampler: WaitSampler | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def for_server(cls, server: Any, **kw: Any) -> Profiler:
        """A profiler of a perfkit server; on an external one it creates no extension."""
        external = getattr(server, "backend", None) == "external"
        return cls(server.dsn, create_extension=not external, **kw)

    @property
    def statements(self) -> bool:
        """Whether pg_stat_statements can be read (checked once, on first use)."""
        if self._statements is None:
            why = statements.enable(self._dsn, create=self._create)
            self._statements = why is None
            if why is not None:
                self.notes.append(why)
        return self._statements

    def _try(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (psycopg.Error, OSError) as exc:
            note = f"{what} skipped: {type(exc).__name__}"
            if note not in self.notes:
                self.notes.append(note)
            return None

    def _sampler(self) -> WaitSampler:
        """The one sampler process, started on first use and paused between blocks."""
        if self._wait_sampler is None:
            sampler = WaitSampler(self._dsn, interval_s=self.interval_s).start()
            # Stopped by close(), or when the profiler is collected (a lab that raised).
            self._finalizer = weakref.finalize(self, sampler.stop)
            self._wait_sampler = sampler
        return self._wait_sampler

    def close(self) -> None:
        """Stop the sampler process (its connection closed). Idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        self._wait_sampler = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _statements_now(self) -> pd.DataFrame:
        return statements.snapshot(self._dsn)

    @contextlib.contextmanager
    def measure(
        self, variant: str, *, sources: Mapping[str, Source] | None = None, **tags: Any
    ) -> Iterator[Run]:
        """Profile the block as ``variant``; ``sources`` are cumulative counters to delta."""
        sources = dict(sources or {})
        run = Run(variant=variant, tags=dict(tags))
        use_statements = self.statements
        before = self._try("counters", lambda: counters.snapshot(self._dsn))
        extra0 = {name: self._try(name, fn) for name, fn in sources.items()}
        stmts0 = self._try("statements", self._statements_now) if use_statements else None
        sampler = self._sampler()
        sampler.reset()
        try:
            yield run
        finally:
            sampler.pause()
            profile = sampler.profile()
            stmts1 = self._try("statements", self._statements_now) if use_statements else None
            after = self._try("counters", lambda: counters.snapshot(self._dsn))
            extra1 = {name: self._try(name, fn) for name, fn in sources.items()}
            self._keep(run, profile, (before, after), (extra0, extra1), (stmts0, stmts1))

    def _keep(
        self,
        run: Run,
        profile: Profile,
        snaps: tuple[Any, Any],
        extras: tuple[dict[str, Any], dict[str, Any]],
        stmts: tuple[pd.DataFrame | None, pd.DataFrame | None],
    ) -> None:
        tags = {"variant": run.variant, **run.tags}
        self._rows["wait_profile"] += profile.rows(**tags)
        rows: list[dict[str, Any]] = []
        if snaps[0] is not None and snaps[1] is not None:
            rows += counters.delta(*snaps)
        for name, after in extras[1].items():
            before = extras[0].get(name)
            if before is not None and after is not None:
                rows += counters.delta(
                    {(name, k): float(v) for k, v in before.items()},
                    {(name, k): float(v) for k, v in after.items()},
                )
        rows += backend_rows(profile) + sampler_rows(profile) + run.added
        self._rows["server_counters"] += [tags | row for row in rows]
        if stmts[0] is not None and stmts[1] is not None:
            top = top_statements(statements.delta(stmts[0], stmts[1]), self.top_n)
            self._rows["top_statements"] += [tags | row for row in top.to_dict("records")]

    def frames(self) -> dict[str, pd.DataFrame]:
        """The three frames (empty ones keep their columns)."""
        empty = {
            "wait_profile": ["variant", *KEY_COLUMNS, "count", "samples"],
            "top_statements": ["variant", "rank", *statements.COLUMNS],
            "server_counters": ["variant", "source", "counter", "value"],
        }
        return {
            name: pd.DataFrame(rows) if rows else pd.DataFrame(columns=empty[name])
            for name, rows in self._rows.items()
        }


def backend_rows(profile: Profile) -> list[dict[str, Any]]:
    """Mean client backends per state over the samples (source ``backends``)."""
    if profile.samples == 0:
        return []
    per_state: dict[str, int] = {}
    for (_wtype, _event, state, btype), n in profile.counts.items():
        if btype == "client backend":
            per_state[state or "unknown"] = per_state.get(state or "unknown", 0) + n
    return [
        {"source": "backends", "counter": state, "value": n / profile.samples}
        for state, n in sorted(per_state.items())
    ]


def sampler_rows(profile: Profile) -> list[dict[str, Any]]:
    """The sampler's own numbers (source ``sampler``): samples, missed ticks, query time."""
    values = {
        "samples": profile.samples,
        "missed": profile.missed,
        "elapsed_s": profile.elapsed_s,
        "query_ms": profile.query_s * 1000,
        "cpu_ms": profile.cpu_s * 1000,
    }
    return [{"source": "sampler", "counter": k, "value": float(v)} for k, v in values.items()]


def top_statements(delta: pd.DataFrame, n: int) -> pd.DataFrame:
    """The top ``n`` statements by total time plus the top ``n`` by calls, ranked by time."""
    if delta.empty:
        return delta.assign(rank=pd.Series(dtype=int))
    by_time = delta.nlargest(n, "total_ms")
    by_calls = delta.nlargest(n, "calls")
    top = pd.concat([by_time, by_calls]).drop_duplicates(subset=["query"])
    top = top.sort_values("total_ms", ascending=False, ignore_index=True)
    return top.assign(rank=range(1, len(top) + 1))
