"""Container lifecycle and test isolation: strategies, a pytest plugin and the suite benchmark.

The names in ``__all__`` are loaded on first use (this package imports
nothing heavy, so the pytest plugin in :mod:`perfkit.lifecycle.plugin` loads
cheaply); the modules behind them:

* :mod:`~perfkit.lifecycle.settings` - :class:`IsolationSettings`
* :mod:`~perfkit.lifecycle.registry` - strategy names, ``check_name``, the lab's variants
* :mod:`~perfkit.lifecycle.session` - :class:`IsolationSession` (servers, template, leases)
* :mod:`~perfkit.lifecycle.strategies` - the strategies themselves
* :mod:`~perfkit.lifecycle.migrations` - SQL splitting, :class:`MigrationError`
* :mod:`~perfkit.lifecycle.fingerprint` - does a database still equal its template?
* :mod:`~perfkit.lifecycle.blindspots` - migrations ``verified`` cannot check (refused)
* :mod:`~perfkit.lifecycle.leakcheck` - does a strategy really isolate tests?
* :mod:`~perfkit.lifecycle.bench` / :mod:`~perfkit.lifecycle.micro` - measurements
* :mod:`~perfkit.lifecycle.pytest_postgresql` - pytest-postgresql's fixture shapes
* :mod:`~perfkit.lifecycle.pgenv` - PG* variables for suites that read them
* :mod:`~perfkit.lifecycle.header` - the run's header line (backend, version, isolation)
"""

from perfkit._exports import lazy

_HOMES = {
    "IsolationSettings": "perfkit.lifecycle.settings",
    "IsolationSession": "perfkit.lifecycle.session",
    "open_session": "perfkit.lifecycle.session",
    "IsolationStrategy": "perfkit.lifecycle.strategies",
    "Lease": "perfkit.lifecycle.strategies",
    "check_name": "perfkit.lifecycle.registry",
    "MigrationError": "perfkit.errors",
    "postgresql": "perfkit.lifecycle.pytest_postgresql",
    "postgresql_proc": "perfkit.lifecycle.pytest_postgresql",
    "Fingerprint": "perfkit.lifecycle.fingerprint",
    "Comparison": "perfkit.lifecycle.fingerprint",
    "fingerprint": "perfkit.lifecycle.fingerprint",
    "equals_template": "perfkit.lifecycle.fingerprint",
    "template_fingerprint": "perfkit.lifecycle.fingerprint",
}

__all__ = list(_HOMES)

__getattr__, __dir__ = lazy(__name__, _HOMES, globals())
