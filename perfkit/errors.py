"""Exceptions perfkit raises for problems a user can fix.

Every message says what was wrong and what to do about it; none contains a
password (DSNs are masked before they reach a message).
"""


class PerfkitError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(PerfkitError, ValueError):
    """A setting or parameter has an unknown name, a wrong type or a bad value."""


class BackendUnavailable(PerfkitError):
    """The requested PostgreSQL backend cannot run on this machine."""


class ServerStartError(PerfkitError):
    """A PostgreSQL server was started but did not become ready."""


class OutageUnsupported(PerfkitError):
    """The backend cannot simulate this kind of outage (e.g. an external DSN)."""


class IsolationBroken(PerfkitError):
    """A test's writes escaped its isolation (e.g. another connection under rollback)."""


class IsolationWarning(UserWarning):
    """A test's writes may have escaped its isolation; see the message for what was seen."""
