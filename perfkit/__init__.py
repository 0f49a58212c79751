"""perfkit: measure how programs connect to, pool and provision PostgreSQL.

The notebooks in ``notebooks/`` are thin; the logic lives in this package:
``perfkit.postgres`` (where a server comes from), ``perfkit.retry`` (connection
retry strategies), ``perfkit.pool`` (pool workloads), ``perfkit.lifecycle``
(test isolation strategies and the pytest plugin), ``perfkit.results``
(tidy results with metadata) and ``perfkit.cli`` (the ``perfkit`` command).

The public API is ``__all__`` here and in each subpackage's ``__init__``;
ARCHITECTURE.md lists the modules that are internal. Importing this package
is cheap: the names below are loaded on first use.
"""

from perfkit._exports import lazy

__version__ = "0.1.0"

_HOMES = {
    "decide": "perfkit.verdicts",
    "Verdict": "perfkit.verdicts",
    "SecretDsn": "perfkit.dsn",
    "mask": "perfkit.dsn",
    "PerfkitError": "perfkit.errors",
    "ConfigError": "perfkit.errors",
    "BackendUnavailable": "perfkit.errors",
    "ServerUnresponsive": "perfkit.errors",
    "ServerStartError": "perfkit.errors",
    "RetryError": "perfkit.errors",
    "NotebookFailed": "perfkit.errors",
    "SuiteFailed": "perfkit.errors",
    "IsolationBroken": "perfkit.errors",
    "latest_or_run": "perfkit.labrun",
}

__all__ = ["__version__", "results", *_HOMES]  # results: a submodule

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
