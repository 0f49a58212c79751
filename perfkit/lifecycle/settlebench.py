"""Benchmark: what a stable-DSN test's release costs, by path and check, next to its baselines.

    python -m perfkit.lifecycle.settlebench [--backend local|docker] [--rounds 200] [--seed 0]

One server and one ``verified`` session with a stable DSN over the short
suite's schema (plus seed rows); the application keeps one connection open
across tests, as a cached engine does. Every round runs three tests in a
seeded random order and times each one's release plus the next test's acquire:

* ``read``: a query only (the quick path: no transaction id was assigned);
* ``rows``: rows inserted into three tables (checked, then reset in place);
* ``temp``: a temporary table on a connection the test closes (checked clean
  once the closing session has dropped it).

Rounds alternate between finding changes from the WAL (``wal``,
:mod:`perfkit.lifecycle.walcheck`) and scanning every table and catalog
(``scan``), so both see the same noise. In the same rounds, the baselines:
``native cleanup`` (the same three-table insert on one shared database, then
the ``DELETE`` a suite on one database runs after each test) and
``clone + drop`` (``CREATE DATABASE ... TEMPLATE`` and ``DROP DATABASE``: what
a fresh database per test costs the server).

Printed per case: n, p50 with its 95% order-statistic interval, p99, and the
paths the releases took. The server and every temporary directory are
removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from perfkit.lifecycle.bench import SHORT_SUITE_DIR
from perfkit.lifecycle.dbconnect import connect
from perfkit.lifecycle.session import IsolationSession
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.lifecycle.verified import VerifiedPool
from perfkit.stats import rank_quantile_interval

KINDS = ("read", "rows", "temp")
CHECKS = ("wal", "scan")
SEED_ROWS = (
    "INSERT INTO products (sku, title, price_cents, stock) "
    "SELECT 'seed-' || i, 'seed product ' || i, 100 * i, 10 FROM generate_series(1, 20) i;"
)
THREE_TABLES = (
    "INSERT INTO customers (email, name) VALUES ('{t}@example.invalid', 'c');"
    "INSERT INTO products (sku, title, price_cents, stock) VALUES ('sku-{t}', 'p', 5, 3);"
    "INSERT INTO orders (customer_id, placed_at) "
    "SELECT id, now() FROM customers WHERE email = '{t}@example.invalid';"
)
NATIVE_CLEANUP = (
    "DELETE FROM orders; DELETE FROM customers; DELETE FROM products WHERE sku LIKE 'sku-%'"
)
Clock = Callable[[], float]


def _test(kind: str, dsn: str, app: psycopg.Connection, tag: str) -> None:
    """What one test of ``kind`` does to its database."""
    if kind == "read":
        app.execute("SELECT count(*) FROM products").fetchone()
    elif kind == "rows":
        app.execute(THREE_TABLES.format(t=tag).encode())
    else:
        with connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TEMP TABLE items (id serial PRIMARY KEY, name text)")
            conn.execute("INSERT INTO items (name) SELECT 'x' FROM generate_series(1, 100)")


def run(
    settings: IsolationSettings, rounds: int, *, seed: int = 0, clock: Clock = time.perf_counter
) -> pd.DataFrame:
    """Tidy rows (case, check, i, seconds, path) of ``rounds`` rounds; see the module doc."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    with IsolationSession(settings, extra_sql=SEED_ROWS) as session:
        strategy = session.strategy("verified")
        assert isinstance(strategy, VerifiedPool)
        lease = session.acquire("verified", "settle::0")
        home = strategy.home
        assert home is not None
        native = session.namer.name("native")
        session.create_database(native)
        shared = connect(session.dsn_for(native), autocommit=True)
        app = connect(home.dsn, autocommit=True)
        try:
            for i in range(rounds):
                check = CHECKS[i % 2] if home.wal_available else "scan"
                home.use_wal(check == "wal")
                for kind in rng.sample(KINDS, len(KINDS)):
                    _test(kind, home.dsn, app, f"{i}-{kind}")
                    t0 = clock()
                    session.release(lease)
                    lease = session.acquire("verified", f"settle::{i}:{kind}")
                    seconds = clock() - t0
                    last = next(r for r in reversed(session.records) if r.get("stable"))
                    path = f"{last['event']}/{last.get('check', '')}"
                    rows.append(_row(f"{kind}", check, i, seconds, path))
                shared.execute(THREE_TABLES.format(t=f"n{i}").encode())
                t0 = clock()
                shared.execute(NATIVE_CLEANUP.encode())
                rows.append(_row("native cleanup", "", i, clock() - t0, "DELETE"))
                name = session.namer.name("clone")
                t0 = clock()
                session.create_database(name)
                session.drop_database(name)
                rows.append(_row("clone + drop", "", i, clock() - t0, "CREATE/DROP"))
        finally:
            app.close()
            shared.close()
            session.release(lease)
            session.drop_database(native)
    return pd.DataFrame(rows)


def _row(case: str, check: str, i: int, seconds: float, path: str) -> dict[str, Any]:
    return {"case": case, "check": check, "i": i, "seconds": seconds, "path": path}


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and check: n, p50 with its 95% interval and p99 (ms), and the paths taken."""
    out = []
    for (case, check), group in frame.groupby(["case", "check"], sort=False):
        p50 = rank_quantile_interval(group["seconds"], 0.5)
        out.append(
            {
                "case": case,
                "check": check,
                "n": p50.n,
                "p50_ms": p50.value * 1e3,
                "p50_low_ms": p50.low * 1e3,
                "p50_high_ms": p50.high * 1e3,
                "p99_ms": float(group["seconds"].quantile(0.99)) * 1e3,
                "paths": ", ".join(f"{p} {n}" for p, n in Counter(group["path"]).most_common()),
            }
        )
    return pd.DataFrame(out)


def format_summary(table: pd.DataFrame) -> str:
    lines = [
        "release + next acquire under a stable DSN, by test kind and check; baselines below",
        f"{'case':16} {'check':5} {'n':>4}  {'p50 ms [95% interval]':>24}  {'p99 ms':>7}  paths",
    ]
    for r in table.itertuples():
        interval = f"{r.p50_ms:6.2f} [{r.p50_low_ms:.2f}, {r.p50_high_ms:.2f}]"
        lines.append(
            f"{r.case:16} {r.check:5} {r.n:4d}  {interval:>24}  {r.p99_ms:7.2f}  {r.paths}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m perfkit.lifecycle.settlebench",
        description="What a stable-DSN test's release costs (WAL check vs full scan), next to "
        "a shared database's cleanup and a clone + drop.",
    )
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--rounds", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="order seed (default 0)")
    parser.add_argument("--csv", type=Path, help="also write the raw rows here")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (one per check)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perfkit-settlebench-") as tmp:
        migrations = Path(tmp) / "schema.sql"
        migrations.write_bytes((SHORT_SUITE_DIR / "migrations.sql").read_bytes())
        settings = IsolationSettings(
            isolation="verified",
            backend=args.backend,
            migrations=(migrations,),
            pool_size=1,
            clone_workers=1,
            stable_dsn=True,
        )
        frame = run(settings, args.rounds, seed=args.seed)
    if args.csv is not None:
        frame.to_csv(args.csv, index=False)
    print(format_summary(summary(frame)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
