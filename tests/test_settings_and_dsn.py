"""ServerSettings validation and DSN masking: bad input fails early, secrets never show."""

from __future__ import annotations

import pytest

from perfkit.dsn import host_port, make_url, mask
from perfkit.errors import ConfigError
from perfkit.postgres import ServerSettings


def test_unknown_backend_is_rejected_with_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown backend 'kubernetes'.*auto, docker, local"):
        ServerSettings(backend="kubernetes")


def test_non_positive_startup_timeout_is_rejected() -> None:
    with pytest.raises(ConfigError, match="startup_timeout"):
        ServerSettings(startup_timeout=0)


def test_server_setting_of_unsupported_type_is_rejected() -> None:
    with pytest.raises(ConfigError, match="work_mem"):
        ServerSettings(server_settings={"work_mem": ["4MB"]})


def test_server_setting_name_must_be_a_guc_name() -> None:
    with pytest.raises(ConfigError, match="GUC"):
        ServerSettings(server_settings={"fsync=off; DROP": "x"})


def test_booleans_become_on_off() -> None:
    settings = ServerSettings(server_settings={"fsync": False, "max_connections": 50})
    assert dict(settings.server_settings) == {"fsync": "off", "max_connections": "50"}


def test_external_backend_needs_a_dsn() -> None:
    with pytest.raises(ConfigError, match="needs a dsn"):
        ServerSettings(backend="external")


def test_password_is_not_in_repr() -> None:
    settings = ServerSettings(password="s3cret-pw")
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings.describe())


def test_default_password_is_random_per_settings() -> None:
    assert ServerSettings().password != ServerSettings().password


def test_mask_hides_url_password() -> None:
    url = make_url(host="127.0.0.1", port=5432, user="u", password="p@ss:w/rd", dbname="d")
    assert mask(url) == "postgresql://u:***@127.0.0.1:5432/d"


def test_mask_hides_key_value_password_inside_other_text() -> None:
    text = "connection failed: host=127.0.0.1 password='x y z' dbname=d"
    masked = mask(text)
    assert "x y z" not in masked
    assert "password=***" in masked


def test_host_port_never_includes_the_password() -> None:
    assert host_port("postgresql://u:secret@127.0.0.1:6543/d") == "127.0.0.1:6543"
