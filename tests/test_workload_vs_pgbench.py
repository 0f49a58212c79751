"""The same script files through perfkit and through real pgbench: same mix, same distributions.

pgbench draws from its own generator, so the values are not the same ones;
what must match is what they are drawn from: each script's share of the
transactions under weights, and each \\set variable's distribution (two-sample
KS test and quantiles on the values both inserted into a table).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from distcheck import chisquare_pvalue, ks_2samp_pvalue

from perfkit.pool.pgbench import find_pgbench, pgbench_env, run_pgbench
from perfkit.pool.runner import run_workload
from perfkit.pool.settings import PoolSettings, Workload, script_mix
from perfkit.postgres import PostgresServer
from perfkit.workload import ClientState, load_workload, run_script

DRAWS_SCRIPT = """\
\\set u random(1, 100)
\\set e random_exponential(1, 100, 3.0)
\\set g random_gaussian(1, 100, 2.5)
\\set z random_zipfian(1, 100, 1.5)
\\set x (:u * 2 + :z) % 7 - least(:e, :g) / 3
INSERT INTO wl_draws (u, e, g, z, x) VALUES (:u, :e, :g, :z, :x);
"""
N = 4000
WEIGHTS = (5, 3, 2)


@pytest.fixture
def draws_table(pg_server: PostgresServer) -> Iterator[str]:
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wl_draws (u int, e int, g int, z int, x int)")
    try:
        yield "wl_draws"
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE wl_draws")


def _take_draws(server: PostgresServer) -> np.ndarray:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT u, e, g, z, x FROM wl_draws").fetchall()
        conn.execute("TRUNCATE wl_draws")
    return np.array(rows, dtype=float)


def _pgbench(server: PostgresServer, script: Path, transactions: int) -> None:
    args = ["-n", "-c", "1", "-t", str(transactions), "--random-seed", "7", "-f", str(script)]
    subprocess.run(
        [str(find_pgbench()), *args],
        env=pgbench_env(server),
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_variables_are_drawn_from_pgbench_s_distributions(
    pg_server: PostgresServer, draws_table: str, tmp_path: Path
) -> None:
    script = tmp_path / "draws.sql"
    script.write_text(DRAWS_SCRIPT)
    _pgbench(pg_server, script, N)
    theirs = _take_draws(pg_server)
    (w,) = load_workload([str(script)])
    state = ClientState(seed=7, client_id=0)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        for _ in range(N):
            run_script(conn, w.script, state)
    ours = _take_draws(pg_server)
    assert len(theirs) == len(ours) == N
    for i, name in enumerate("uegzx"):
        p = ks_2samp_pvalue(ours[:, i], theirs[:, i])
        assert p > 0.001, f"{name}: KS p = {p:.2g}"
        for q in (0.1, 0.5, 0.9):
            a, b = np.quantile(ours[:, i], q), np.quantile(theirs[:, i], q)
            assert abs(a - b) <= max(3.0, 0.1 * abs(b)), f"{name} q{q}: {a} vs {b}"


def _weighted_scripts(tmp_path: Path) -> list[str]:
    refs = []
    for name, weight in zip("abc", WEIGHTS, strict=True):
        path = tmp_path / f"{name}.sql"
        path.write_text(f"\\set v random(1, 10)\nSELECT :v + {ord(name)};\n")
        refs.append(f"{path}@{weight}")
    return refs


def test_weighted_scripts_run_in_the_same_proportions_as_under_pgbench(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    mix = script_mix(load_workload(_weighted_scripts(tmp_path)))
    ref = run_pgbench(pg_server, clients=2, duration_s=1, mix=mix, seed=3)
    theirs = np.array([s.transactions for s in ref.scripts], dtype=float)
    assert [s.weight for s in ref.scripts] == list(WEIGHTS)  # the files, with their weights
    result = run_workload(
        pg_server.dsn,
        PoolSettings(min_size=2, max_size=2),
        Workload(workers=2, duration=1.0, mix=mix, seed=3),
    )
    ok = result.requests[result.requests["error"] == ""]
    ours = np.array([(ok["query"] == q.name).sum() for q in mix], dtype=float)
    assert ours.sum() > 500 and theirs.sum() > 500
    assert chisquare_pvalue(ours, np.array(WEIGHTS)) > 0.001
    assert chisquare_pvalue(theirs, np.array(WEIGHTS)) > 0.001
    # the two runs' proportions agree: chi-square of ours against theirs' shares
    assert chisquare_pvalue(ours, theirs / theirs.sum()) > 0.001
