"""Isolation settings, the strategy registry, database names and the SQL splitter (no server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perfkit.errors import ConfigError
from perfkit.lifecycle import migrations
from perfkit.lifecycle.names import Namer, worker_id
from perfkit.lifecycle.registry import NAMES, check_name, strategy_class
from perfkit.lifecycle.settings import IsolationSettings


def test_unknown_isolation_name_is_a_config_error_listing_the_names() -> None:
    with pytest.raises(ConfigError) as info:
        IsolationSettings(isolation="per-test-container")
    message = str(info.value)
    assert "per-test-container" in message
    for name in NAMES:
        assert name in message


def test_every_registered_name_maps_to_a_strategy_of_that_name() -> None:
    for name in NAMES:
        assert strategy_class(name).name == name


def test_check_name_rejects_non_strings() -> None:
    with pytest.raises(ConfigError, match="unknown isolation strategy"):
        check_name(None)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("backend", "podman", "backend"),
        ("template_strategy", "clone", "template_strategy"),
        ("pool_size", 0, "pool_size"),
        ("pool_size", True, "pool_size"),
        ("keep_tables", "users", "keep_tables"),
        ("acquire_timeout", 0, "acquire_timeout"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        IsolationSettings(**{field: value})  # type: ignore[arg-type]


def test_external_backend_needs_a_dsn() -> None:
    with pytest.raises(ConfigError, match="dsn"):
        IsolationSettings(backend="external")


def test_describe_masks_the_password(tmp_path: Path) -> None:
    schema = tmp_path / "a.sql"
    schema.write_text("SELECT 1;")
    settings = IsolationSettings(
        backend="external", dsn="postgresql://u:s3cret@127.0.0.1:5432/db", migrations=str(schema)
    )
    described = str(settings.describe())
    assert "s3cret" not in described
    assert "s3cret" not in repr(settings)
    assert settings.migrations == (schema,)


def test_missing_migrations_file_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.sql"):
        IsolationSettings(migrations=[tmp_path / "missing.sql"])


def test_names_carry_token_and_worker_and_never_repeat() -> None:
    namer = Namer("gw1", token="abc123")
    first, second = namer.name("t"), namer.name("t")
    assert first != second
    assert first.startswith("pk_abc123_gw1_")
    assert namer.owns(first)
    assert not Namer("gw0", token="abc123").owns(first)


def test_names_fit_postgres_identifiers() -> None:
    assert len(Namer("w" * 80).name("template")) <= 63


def test_worker_id_comes_from_xdist_environment() -> None:
    assert worker_id({"PYTEST_XDIST_WORKER": "gw3"}) == "gw3"
    assert worker_id({}) == "main"


def test_split_respects_quotes_dollar_quotes_and_comments() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE a (x text DEFAULT 'semi;colon', "odd;name" int);
    /* block; /* nested; */ comment */
    CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$;
    INSERT INTO a (x) VALUES (E'it\\'s; fine');
    SELECT $$;$$
    """
    statements = migrations.split_sql(text, source="s.sql")
    assert [s.sql.split()[0] for s in statements] == ["CREATE", "CREATE", "INSERT", "SELECT"]
    assert "'semi;colon'" in statements[0].sql
    assert "$body$ SELECT 1; $body$" in statements[1].sql
    assert statements[0].line == 3
    assert statements[1].line == 5


def test_split_drops_comment_only_chunks() -> None:
    assert migrations.split_sql("-- nothing\n;\n/* still nothing */;") == []


def test_unreadable_migration_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        migrations.load([tmp_path / "missing.sql"])


_TEXT = st.text(alphabet=st.sampled_from(list("ab;'$-/* \n\"")), max_size=12)


@given(st.lists(_TEXT, min_size=1, max_size=6))
def test_split_round_trips_statements_whose_literals_hold_any_punctuation(
    texts: list[str],
) -> None:
    statements = [
        f"SELECT '{text.replace(chr(39), chr(39) * 2)}' AS v{i}" for i, text in enumerate(texts)
    ]
    split = migrations.split_sql(";\n".join(statements) + ";")
    assert [s.sql for s in split] == statements


@given(st.lists(st.text(alphabet=st.sampled_from(list("ab;'-/*\n\"")), max_size=12), max_size=5))
def test_split_keeps_dollar_quoted_bodies_whole(texts: list[str]) -> None:
    statements = [f"SELECT $q$ {text} $q$" for text in texts]
    split = migrations.split_sql(";".join(statements))
    assert [s.sql for s in split] == [s.strip() for s in statements]
