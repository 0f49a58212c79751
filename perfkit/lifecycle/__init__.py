"""Container lifecycle and test isolation: strategies, a pytest plugin and the suite benchmark.

Import what you need from the submodules (this package imports nothing heavy,
so the pytest plugin in :mod:`perfkit.lifecycle.plugin` loads cheaply):

* :mod:`~perfkit.lifecycle.settings` - :class:`IsolationSettings`
* :mod:`~perfkit.lifecycle.registry` - strategy names, ``check_name``
* :mod:`~perfkit.lifecycle.session` - :class:`IsolationSession` (servers, template, leases)
* :mod:`~perfkit.lifecycle.strategies` - the strategies themselves
* :mod:`~perfkit.lifecycle.migrations` - SQL splitting, :class:`MigrationError`
* :mod:`~perfkit.lifecycle.leakcheck` - does a strategy really isolate tests?
* :mod:`~perfkit.lifecycle.bench` / :mod:`~perfkit.lifecycle.micro` - measurements
"""
