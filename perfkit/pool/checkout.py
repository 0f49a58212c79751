"""What "test before acquire" costs: time ``getconn`` + ``putconn`` with and without a check.

One thread, a pool of one connection that is always idle, so each checkout
measures only the pool's own bookkeeping plus (with ``check=True``) the
round trip of ``ConnectionPool.check_connection`` (an empty query).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
from psycopg_pool import ConnectionPool

from perfkit.errors import ConfigError
from perfkit.pool.runner import OPEN_TIMEOUT_S, make_pool
from perfkit.pool.server_processes import new_application_name
from perfkit.pool.settings import PoolSettings

CHECKOUT_COLUMNS = ("check", "i", "checkout_ms", "checkin_ms")


def measure_checkout(
    dsn: str,
    *,
    checks: tuple[bool, ...] = (False, True),
    n: int = 500,
    clock: Callable[[], float] = time.perf_counter,
) -> pd.DataFrame:
    """``n`` checkouts per ``check`` value, interleaved in blocks so drift hits both alike.

    Columns: ``check``, ``i``, ``checkout_ms`` (inside ``getconn``),
    ``checkin_ms`` (inside ``putconn``).
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    pools: dict[bool, ConnectionPool] = {}
    rows: list[dict[str, object]] = []
    try:
        for check in checks:
            settings = PoolSettings(name=f"check={check}", min_size=1, max_size=1, check=check)
            pool = make_pool(dsn, settings, new_application_name("perfkit-checkout"))
            pools[check] = pool
            pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
        block = 50
        for start in range(0, n, block):
            for check, pool in pools.items():
                for i in range(start, min(n, start + block)):
                    t0 = clock()
                    conn = pool.getconn()
                    t1 = clock()
                    pool.putconn(conn)
                    t2 = clock()
                    rows.append(
                        {
                            "check": check,
                            "i": i,
                            "checkout_ms": (t1 - t0) * 1000.0,
                            "checkin_ms": (t2 - t1) * 1000.0,
                        }
                    )
    finally:
        for pool in pools.values():
            pool.close()
    return pd.DataFrame(rows, columns=list(CHECKOUT_COLUMNS))


def summarize_checkout(df: pd.DataFrame) -> pd.DataFrame:
    """p50 / p99 / mean checkout per ``check`` value."""
    g = df.groupby("check")["checkout_ms"]
    out = pd.DataFrame(
        {
            "n": g.size(),
            "checkout_p50_ms": g.quantile(0.5),
            "checkout_p99_ms": g.quantile(0.99),
            "checkout_mean_ms": g.mean(),
        }
    )
    return out.reset_index()
