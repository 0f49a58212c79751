"""PoolSettings and Workload: defaults mirror psycopg_pool, bad values fail naming the field."""

from __future__ import annotations

import inspect

import pytest
from psycopg_pool import ConnectionPool

from perfkit.errors import ConfigError
from perfkit.pool import NO_POOL, PRESETS, PSYCOPG_DEFAULTS, REVIEW, PoolSettings, Query, Workload


def test_defaults_match_psycopg_pool_constructor() -> None:
    params = inspect.signature(ConnectionPool.__init__).parameters
    kwargs = PSYCOPG_DEFAULTS.pool_kwargs()
    for name, value in kwargs.items():
        assert params[name].default == value, name


def test_review_preset_is_the_reviews_sqlx_settings() -> None:
    assert (REVIEW.min_size, REVIEW.max_size) == (1, 5)
    assert (REVIEW.timeout, REVIEW.max_idle, REVIEW.max_lifetime) == (3.0, 10.0, 60.0)
    assert REVIEW.check is True


def test_presets_are_named_and_no_pool_has_no_pool_kwargs() -> None:
    assert set(PRESETS) == {"review", "psycopg-defaults", "no-pool"}
    assert NO_POOL.pooled is False
    with pytest.raises(ConfigError, match="pooled=False"):
        NO_POOL.pool_kwargs()


def test_max_size_none_means_min_size() -> None:
    assert PoolSettings(min_size=3).effective_max_size == 3


def test_max_size_below_min_size_names_both_fields() -> None:
    with pytest.raises(ConfigError, match=r"max_size \(2\) must be >= min_size \(3\)"):
        PoolSettings(min_size=3, max_size=2)


@pytest.mark.parametrize("field", ["timeout", "max_idle", "max_lifetime", "reconnect_timeout"])
def test_negative_timeouts_are_rejected_naming_the_field(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"PoolSettings\.{field} must be > 0"):
        PoolSettings(**{field: -1.0})


def test_zero_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        PoolSettings(timeout=0)


def test_zero_pool_workers_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"num_workers must be >= 1"):
        PoolSettings(num_workers=0)


def test_bool_is_not_accepted_as_a_size() -> None:
    with pytest.raises(ConfigError, match="min_size must be an int"):
        PoolSettings(min_size=True)


def test_settings_are_frozen_and_replace_revalidates() -> None:
    with pytest.raises(AttributeError):
        REVIEW.max_size = 10  # type: ignore[misc]
    assert REVIEW.replace(max_size=7).max_size == 7
    with pytest.raises(ConfigError, match="max_size"):
        REVIEW.replace(max_size=0)


def test_zero_workers_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"Workload\.workers must be >= 1"):
        Workload(workers=0)


@pytest.mark.parametrize("field", ["duration", "stats_interval"])
def test_workload_durations_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=rf"Workload\.{field}"):
        Workload(**{field: -0.5})


def test_negative_think_time_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"Workload\.think_time must be >= 0"):
        Workload(think_time=-0.001)


def test_mix_needs_unique_named_queries() -> None:
    q = Query(name="a", sql="SELECT 1")
    with pytest.raises(ConfigError, match="duplicate"):
        Workload(mix=(q, q))
    with pytest.raises(ConfigError, match="weight"):
        Query(name="b", sql="SELECT 1", weight=0)


def test_describe_is_plain_data() -> None:
    d = Workload().describe()
    assert d["mix"][0]["name"] == "select1"
    assert REVIEW.describe()["effective_max_size"] == 5
