"""The PgBouncer lab's application-pool load runs pgbench-format scripts (perfkit.workload)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from perfkit.pgbouncer import lab, measure
from perfkit.postgres import PostgresServer
from perfkit.postgres.pgbouncer import PgBouncer, PgBouncerSettings
from perfkit.workload import ScriptError, load_workload

SCRIPT = """\
\\set id random(1, 1000)
\\set delta random(-5, 5)
BEGIN;
UPDATE wl_bouncer SET n = n + :delta WHERE id = :id;
SELECT n FROM wl_bouncer WHERE id = :id;
END;
"""


def test_a_script_workload_runs_through_a_transaction_mode_pgbouncer(
    pg_server: PostgresServer, tmp_path: Path
) -> None:
    script = tmp_path / "update.sql"
    script.write_text(SCRIPT)
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE wl_bouncer (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO wl_bouncer (id) SELECT generate_series(1, 1000)")
    try:
        settings = PgBouncerSettings(pool_mode="transaction", default_pool_size=2)
        with PgBouncer(pg_server, settings) as bouncer:
            load = measure.pooled_requests(
                bouncer.dsn, 4, 3, 0.5, load_workload([f"{script}@1"]), seed=1
            )
        with psycopg.connect(pg_server.dsn) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE n <> 0) FROM wl_bouncer").fetchone()
    finally:
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE wl_bouncer")
    assert load.errors == 0
    assert len(load.done) > 20
    assert row is not None and row[0] > 0  # the updates reached the table


def test_the_pgbouncer_lab_checks_its_scripts_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sql"
    bad.write_text("\\setshell x echo 1\n")
    with pytest.raises(ScriptError, match=rf"{bad}:1: .*perfkit does not run"):
        lab.Params(quick=True, workload=[str(bad)])


def test_the_pgbouncer_lab_s_default_load_is_select_1() -> None:
    (w,) = lab.Params(quick=True).scripts
    assert w.script.commands[0].text == "SELECT 1"
