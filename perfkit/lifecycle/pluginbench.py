"""Benchmark of the pytest plugin's own costs, as real pytest runs.

Run ``python -m perfkit.lifecycle.pluginbench [--backend local|docker]``.

Three questions, each answered next to a baseline measured in the same run:

* **release with a connection left open**: tests that leave a psycopg2
  ``with connect()`` connection open; release p50/p99 under ``template`` and
  ``warm-pool``, next to a synchronous ``DROP DATABASE ... WITH (FORCE)`` with
  a connection open (what release cost before it moved off the test's path).
* **warm pool with short tests** (10-20 ms of real queries each): acquire
  p50/p99 and how many tests waited.
* **reuse**: from starting ``pytest`` to the first test body, cold (a new
  server) vs the second run with ``--perfkit-reuse`` (server, template and
  pool found ready).

Every figure is printed with its 95 % bootstrap interval and n. Servers it
reuses live in their own namespace and are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2

from perfkit.errors import SuiteFailed
from perfkit.lifecycle.settings import IsolationSettings
from perfkit.stats import quantile_interval

SCHEMA = """
CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL, balance bigint NOT NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts(id),
                     kind text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON events (account_id);
"""

SHORT_TESTS = """
import random
import time

import psycopg2
import pytest

@pytest.mark.parametrize("i", range({n}))
def test_short(perfkit_dsn, i):
    rng = random.Random(i)
    budget = rng.uniform(0.010, 0.020)  # 10-20 ms of real queries
    with psycopg2.connect(perfkit_dsn) as conn:  # left open, as psycopg2 users do
        cur = conn.cursor()
        start = time.perf_counter()
        while time.perf_counter() - start < budget:
            cur.execute("INSERT INTO accounts (name, balance) VALUES (%s, %s) RETURNING id",
                        (f"a{{i}}", rng.randint(0, 100)))
            account = cur.fetchone()[0]
            cur.execute("INSERT INTO events (account_id, kind) VALUES (%s, 'open')", (account,))
            cur.execute("SELECT count(*) FROM events WHERE account_id = %s", (account,))
    assert conn.closed == 0
"""

FIRST_BODY = """
import os
import time

def test_first(perfkit_db):
    with open(os.environ["PERFKIT_BENCH_MARK"], "w") as fh:
        fh.write(repr(time.time()))
"""


def _pytest(folder: Path, tests: str, args: Sequence[str], env: dict[str, str]) -> dict[str, Any]:
    """Run pytest on ``tests`` in ``folder``; return the plugin's timing document."""
    (folder / "test_bench.py").write_text(textwrap.dedent(tests))
    (folder / "schema.sql").write_text(SCHEMA)
    (folder / "pytest.ini").write_text("[pytest]\n")
    timings = folder / "timings.json"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
        str(folder / "pytest.ini"), "--rootdir", str(folder),
        f"--perfkit-migrations={folder / 'schema.sql'}", f"--perfkit-timings={timings}",
        *args, str(folder / "test_bench.py"),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SuiteFailed(f"benchmark suite failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return dict(json.loads(timings.read_text()))


def _env(namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PERFKIT_REUSE_NAMESPACE"] = namespace
    return env


def sync_drop_baseline(backend: str, n: int) -> list[float]:
    """Seconds of ``DROP DATABASE ... WITH (FORCE)`` while a psycopg2 connection is open."""
    from perfkit.lifecycle.session import IsolationSession

    seconds = []
    with IsolationSession(IsolationSettings(backend=backend, isolation="template")) as session:
        session.strategy("template")
        for i in range(n):
            name = session.namer.name(f"drop{i}")
            session.create_database(name)
            conn = psycopg2.connect(session.shared_server.dsn_for(name))
            t0 = time.perf_counter()
            session.drop_database(name)
            seconds.append(time.perf_counter() - t0)
            conn.close()
    return seconds


def short_tests(backend: str, strategy: str, tests: int, repeat: int) -> dict[str, list[float]]:
    """acquire/release seconds of every test over ``repeat`` runs of the short suite."""
    out: dict[str, list[float]] = {"acquire": [], "release": [], "waited": []}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="perfkit-bench-") as tmp:
            document = _pytest(
                Path(tmp),
                SHORT_TESTS.format(n=tests),
                [f"--perfkit-isolation={strategy}", f"--perfkit-backend={backend}"],
                _env(""),
            )
        records = [r for r in document["records"] if r["event"] == "test"]
        out["acquire"] += [r["acquire_s"] for r in records]
        out["release"] += [r["release_s"] for r in records]
        out["waited"].append(sum(r["acquire_s"] > 0.001 for r in records) / len(records))
    return out


def first_test_latency(backend: str, repeat: int) -> dict[str, list[float]]:
    """Seconds from starting pytest to the first test body: cold vs reused (second run on)."""
    namespace = f"bench-{secrets.token_hex(4)}"
    out: dict[str, list[float]] = {"cold": [], "reused": []}
    keys: set[str] = set()
    try:
        for i in range(repeat + 1):
            for mode in ("cold", "reused"):
                with tempfile.TemporaryDirectory(prefix="perfkit-bench-") as tmp:
                    mark = Path(tmp) / "first"
                    env = {**_env(namespace), "PERFKIT_BENCH_MARK": str(mark)}
                    args = [f"--perfkit-backend={backend}", "--perfkit-isolation=warm-pool"]
                    if mode == "reused":
                        args.append("--perfkit-reuse")
                    t0 = time.time()
                    document = _pytest(Path(tmp), FIRST_BODY, args, env)
                    latency = float(mark.read_text()) - t0
                keys |= {r["reuse_key"] for r in document["records"] if r.get("reuse_key")}
                if mode == "cold" or i > 0:  # the first reused run builds what later ones find
                    out[mode].append(latency)
    finally:
        from perfkit.postgres.reuse import stop_reused

        stop_reused(keys=keys)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perfkit.lifecycle.pluginbench")
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--tests", type=int, default=100, help="short tests per run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    ms = {"scale": 1000.0, "unit": " ms"}
    print(f"backend {args.backend}; {args.tests} short tests x {args.repeat} runs", flush=True)
    drop = sync_drop_baseline(args.backend, max(10, args.repeat * 5))
    print(
        "synchronous DROP ... WITH (FORCE), connection open: p50",
        quantile_interval(drop).format(**ms),
    )
    for strategy in ("template", "warm-pool"):
        data = short_tests(args.backend, strategy, args.tests, args.repeat)
        print(
            f"{strategy:9}: acquire p50 {quantile_interval(data['acquire']).format(**ms)}, "
            f"p99 {quantile_interval(data['acquire'], 0.99).format(**ms)}; "
            f"release p50 {quantile_interval(data['release']).format(**ms)}, "
            f"p99 {quantile_interval(data['release'], 0.99).format(**ms)}; "
            f"tests that waited: {100 * sum(data['waited']) / len(data['waited']):.0f} %",
            flush=True,
        )
    latency = first_test_latency(args.backend, args.repeat)
    for mode, values in latency.items():
        estimate = quantile_interval(values).format(1.0, " s", 3)
        print(f"pytest start -> first test body, {mode:6}: {estimate}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
