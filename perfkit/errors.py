"""Exceptions perfkit raises for problems a user can fix, and the warnings it emits.

Every message says what was wrong and what to do about it; none contains a
password (DSNs are masked before they reach a message). The hierarchy::

    PerfkitError                     anything perfkit raises on purpose
    ├── ConfigError (ValueError)     a setting or parameter is unknown, ill-typed or bad
    │   └── MigrationError           a migration statement failed (file, line, SQL)
    ├── BackendUnavailable           the requested PostgreSQL backend cannot run here
    ├── ServerStartError             a server was started but never became ready
    ├── ServerUnresponsive           a running server stopped answering (hung, paused)
    ├── OutageUnsupported            the backend cannot simulate this outage
    ├── RetryError                   a retrying connect gave up (``trace`` has every attempt)
    ├── NotebookFailed               a notebook cell raised (the executed notebook is saved)
    ├── SuiteFailed                  a measured pytest suite run did not pass
    ├── IsolationBroken              a test's writes escaped its isolation
    └── LabExtraMissing              a command needs ``pip install 'perfkit[lab]'``

    IsolationWarning (UserWarning)   the same, as a warning (rollback guard ``warn``)
    ConnectionBudgetWarning (UserWarning)  processes x pool size exceeds max_connections
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfkit.retry.trace import Trace


class PerfkitError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(PerfkitError, ValueError):
    """A setting or parameter has an unknown name, a wrong type or a bad value."""


class MigrationError(ConfigError):
    """A migration statement failed; the message shows the file, line and SQL.

    ``statement`` is the :class:`perfkit.lifecycle.migrations.Statement` that failed.
    """

    def __init__(self, message: str, *, statement: Any | None = None) -> None:
        super().__init__(message)
        self.statement = statement


class BackendUnavailable(PerfkitError):
    """The requested PostgreSQL backend cannot run on this machine."""


class LabExtraMissing(PerfkitError):
    """A command needs the ``lab`` extra (notebooks, report, analysis), which this install lacks."""


class ServerUnresponsive(PerfkitError):
    """A server that was running stopped answering: hung, paused or stopped mid-run.

    The isolation session declares its server dead on the first one, and every
    later test fails at once with the same message instead of waiting again.
    """


class ServerStartError(PerfkitError):
    """A PostgreSQL server was started but did not become ready."""


class OutageUnsupported(PerfkitError):
    """The backend cannot simulate this kind of outage (e.g. an external DSN)."""


class RetryError(PerfkitError):
    """A retrying connect gave up; ``trace`` holds every attempt."""

    def __init__(self, message: str, trace: Trace) -> None:
        super().__init__(message)
        self.trace = trace


class NotebookFailed(PerfkitError):
    """A cell of an executed notebook raised; the executed notebook was still saved."""

    def __init__(
        self,
        message: str,
        *,
        notebook: Path,
        cell_index: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
    ) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue


class SuiteFailed(PerfkitError):
    """A run of a measured pytest suite did not pass; the measurement stops there."""


class IsolationBroken(PerfkitError):
    """A test's writes escaped its isolation (e.g. another connection under rollback)."""


class IsolationWarning(UserWarning):
    """A test's writes may have escaped its isolation; see the message for what was seen."""


class ConnectionBudgetWarning(UserWarning):
    """Several processes' pools together may open more connections than ``max_connections``."""
