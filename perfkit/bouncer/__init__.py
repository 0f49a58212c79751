"""The PgBouncer lab (notebooks/05_pgbouncer.ipynb): ``lab`` (parameters, run, results),
``measure`` (the measurements against real servers), ``plots`` (its figures)."""
