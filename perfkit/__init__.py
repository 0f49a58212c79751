"""perfkit: measure how programs connect to, pool and provision PostgreSQL.

The notebooks in ``notebooks/`` are thin; the logic lives in this package:
``perfkit.postgres`` (where a server comes from), ``perfkit.retry`` (connection
retry strategies), ``perfkit.pool`` (pool workloads), ``perfkit.lifecycle``
(test isolation strategies and the pytest plugin), ``perfkit.results``
(tidy results with metadata) and ``perfkit.cli`` (the ``perfkit`` command).
"""

__version__ = "0.1.0"
