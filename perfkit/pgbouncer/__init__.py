"""The PgBouncer lab (notebooks/05_pgbouncer.ipynb): ``lab`` (parameters, run, the LAB),
``measure`` and ``storm`` (the measurements against real servers), ``analysis`` (samples
and headlines), ``conclusions`` (its closing Markdown), ``plots`` (its figures)."""

from perfkit._exports import lazy

__all__ = ["LAB"]

__getattr__, __dir__ = lazy(__name__, {"LAB": "perfkit.pgbouncer.lab"}, globals())
