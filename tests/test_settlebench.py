"""The stable-DSN release benchmark times every kind of test with both checks, and its baselines."""

from __future__ import annotations

import pandas as pd
import pytest

from perfkit.lifecycle import settlebench
from perfkit.lifecycle.bench import SHORT_SUITE_DIR
from perfkit.lifecycle.settings import IsolationSettings


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    migrations = tmp_path_factory.mktemp("settle") / "schema.sql"
    migrations.write_bytes((SHORT_SUITE_DIR / "migrations.sql").read_bytes())
    settings = IsolationSettings(
        isolation="verified",
        backend="local",
        migrations=(migrations,),
        pool_size=1,
        clone_workers=1,
        stable_dsn=True,
    )
    return settlebench.run(settings, rounds=2, seed=3)


def test_every_kind_is_timed_with_the_wal_check_and_the_full_scan(frame: pd.DataFrame) -> None:
    timed = set(zip(frame["case"], frame["check"], strict=True))
    assert {(kind, check) for kind in settlebench.KINDS for check in settlebench.CHECKS} <= timed


def test_each_kind_takes_the_path_it_stands_for(frame: pd.DataFrame) -> None:
    paths = dict(zip(frame["case"] + "/" + frame["check"], frame["path"], strict=False))
    assert paths["rows/wal"] == "pool_reset/wal"
    assert paths["rows/scan"] == "pool_reset/scan"
    assert paths["read/wal"] == "pool_reuse/quick"
    assert paths["temp/wal"] in ("pool_reuse/wal", "pool_reuse/scan")


def test_the_summary_gives_each_case_its_n_and_an_interval(frame: pd.DataFrame) -> None:
    table = settlebench.summary(frame)
    native = table[table["case"] == "native cleanup"].iloc[0]
    assert native["n"] == 2
    assert native["p50_low_ms"] <= native["p50_ms"] <= native["p50_high_ms"]
    assert "clone + drop" in settlebench.format_summary(table)


def test_fewer_than_two_rounds_is_refused() -> None:
    with pytest.raises(SystemExit):
        settlebench.parse_args(["--rounds", "1"])
