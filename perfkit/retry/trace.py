"""The record of a retrying connect: one :class:`Attempt` per try, in a :class:`Trace`.

Times are readings of the driver's clock (``time.monotonic`` by default), so
they line up with ``PostgresServer.ready_at``; ``to_frame`` also gives them
relative to the first attempt. Error messages are masked (no passwords).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from perfkit.dsn import mask

if TYPE_CHECKING:  # pandas only for to_frame (the connect path stays pandas-free)
    import pandas as pd

Outcome = Literal["ok", "error", "timeout"]

# libpq reports connection-time server errors as text only (psycopg's
# ``sqlstate`` is None there), so the SQLSTATE is recovered from the message.
_MESSAGE_SQLSTATE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"too many clients already|remaining connection slots are reserved"), "53300"),
    (re.compile(r"the database system is (starting up|shutting down|in recovery mode)"), "57P03"),
    (re.compile(r"the database system is not (yet )?accepting connections"), "57P03"),
    (re.compile(r"password authentication failed|no pg_hba\.conf entry"), "28P01"),
    (re.compile(r'database ".*" does not exist'), "3D000"),
    (re.compile(r'role ".*" does not exist'), "28000"),
)


def sqlstate_of(exc: BaseException) -> str | None:
    """SQLSTATE of a connection error: psycopg's if it has one, else from the message."""
    state = getattr(exc, "sqlstate", None)
    if state:
        return str(state)
    text = str(exc)
    for pattern, code in _MESSAGE_SQLSTATE:
        if pattern.search(text):
            return code
    return None


def error_kind(exc: BaseException | None, *, timed_out: bool = False) -> str | None:
    """A short class for plots: refused, starting_up, too_many_clients, timeout, auth, other."""
    if timed_out:
        return "timeout"
    if exc is None:
        return None
    state = sqlstate_of(exc)
    if state == "53300":
        return "too_many_clients"
    if state == "57P03":
        return "starting_up"
    if state in ("28P01", "28000", "3D000"):
        return "auth"
    text = str(exc)
    if "Connection refused" in text or "No such file or directory" in text:
        return "refused"
    if "timeout" in text.lower():
        return "timeout"
    return "other"


def short_message(exc: BaseException) -> str:
    """First line of the error, masked and trimmed (never the pgconn repr)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    return mask(first)[:200]


@dataclass(kw_only=True)
class Attempt:
    """One connection attempt. ``sleep_after`` is the wait before the next one."""

    number: int
    start: float
    end: float
    outcome: Outcome
    timeout: float | None = None
    error_class: str | None = None
    error_kind: str | None = None
    sqlstate: str | None = None
    message: str | None = None
    sleep_after: float | None = None
    sleep_planned: float | None = None
    sleep_truncated: bool = False


@dataclass(kw_only=True)
class Trace:
    """All attempts of one retrying connect."""

    strategy: str
    t0: float
    attempts: list[Attempt] = field(default_factory=list)
    connected_at: float | None = None
    gave_up: str | None = None
    ended_at: float | None = None

    @property
    def n_attempts(self) -> int:
        return len(self.attempts)

    @property
    def n_failed(self) -> int:
        return sum(a.outcome != "ok" for a in self.attempts)

    @property
    def elapsed(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.t0

    @property
    def total_sleep(self) -> float:
        return sum(a.sleep_after or 0.0 for a in self.attempts)

    def to_frame(self, **extra: Any) -> pd.DataFrame:
        """One row per attempt; ``extra`` columns (e.g. client id) are added to every row."""
        import pandas as pd

        rows = [
            {
                **extra,
                "strategy": self.strategy,
                "attempt": a.number,
                "start": a.start,
                "end": a.end,
                "start_s": a.start - self.t0,
                "end_s": a.end - self.t0,
                "duration_s": a.end - a.start,
                "outcome": a.outcome,
                "timeout_s": a.timeout,
                "error_class": a.error_class,
                "error_kind": a.error_kind,
                "sqlstate": a.sqlstate,
                "message": a.message,
                "sleep_after_s": a.sleep_after,
                "sleep_planned_s": a.sleep_planned,
                "sleep_truncated": a.sleep_truncated,
            }
            for a in self.attempts
        ]
        return pd.DataFrame(rows, columns=_COLUMNS if not extra else [*extra, *_COLUMNS])

    def summary(self) -> dict[str, Any]:
        """Totals of this trace as a flat dict."""
        return {
            "strategy": self.strategy,
            "t0": self.t0,
            "connected": self.connected_at is not None,
            "connected_at": self.connected_at,
            "attempts": self.n_attempts,
            "failed": self.n_failed,
            "total_sleep_s": self.total_sleep,
            "elapsed_s": self.elapsed,
            "gave_up": self.gave_up,
        }


_COLUMNS = [
    "strategy",
    "attempt",
    "start",
    "end",
    "start_s",
    "end_s",
    "duration_s",
    "outcome",
    "timeout_s",
    "error_class",
    "error_kind",
    "sqlstate",
    "message",
    "sleep_after_s",
    "sleep_planned_s",
    "sleep_truncated",
]
