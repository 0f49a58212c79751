"""perfkit.params: parameter specs reject unknown names and wrong types with clear messages."""

from __future__ import annotations

import math
import types

import pytest

from perfkit import params
from perfkit.errors import ConfigError

SPEC = {"attempts": int, "delay_s": float, "backend": str, "dsn": (str, type(None)), "quick": bool}


def test_valid_values_are_returned_unchanged() -> None:
    values = {"attempts": 3, "delay_s": 0.5, "backend": "local", "dsn": None, "quick": True}
    assert params.validate(SPEC, values) == values


def test_missing_names_are_allowed_by_validate() -> None:
    assert params.validate(SPEC, {"attempts": 1}) == {"attempts": 1}


def test_unknown_name_is_rejected_and_known_names_listed() -> None:
    with pytest.raises(ConfigError, match="unknown parameter attemps") as info:
        params.validate(SPEC, {"attemps": 3})
    assert "known parameters: attempts, backend, delay_s, dsn, quick" in str(info.value)


def test_several_unknown_names_are_all_named() -> None:
    with pytest.raises(ConfigError, match="unknown parameters a, b"):
        params.validate(SPEC, {"b": 1, "a": 2})


def test_wrong_type_names_parameter_expected_and_got() -> None:
    with pytest.raises(ConfigError, match=r"'attempts' expects int, got str '3'"):
        params.validate(SPEC, {"attempts": "3"})


def test_bool_does_not_pass_as_int() -> None:
    with pytest.raises(ConfigError, match="'attempts' expects int, got bool"):
        params.validate(SPEC, {"attempts": True})


def test_bool_does_not_pass_as_float() -> None:
    with pytest.raises(ConfigError, match="'delay_s' expects float, got bool"):
        params.validate(SPEC, {"delay_s": False})


def test_int_passes_where_float_is_expected() -> None:
    assert params.validate(SPEC, {"delay_s": 2}) == {"delay_s": 2}


def test_float_does_not_pass_as_int() -> None:
    with pytest.raises(ConfigError, match="'attempts' expects int, got float"):
        params.validate(SPEC, {"attempts": 2.0})


def test_none_only_passes_when_nonetype_is_in_spec() -> None:
    assert params.validate(SPEC, {"dsn": None}) == {"dsn": None}
    with pytest.raises(ConfigError, match="'backend' expects str, got NoneType"):
        params.validate(SPEC, {"backend": None})


def test_union_and_generic_spec_entries_are_understood() -> None:
    spec = {"sizes": list[int], "limit": int | None}
    assert params.validate(spec, {"sizes": [1, 2], "limit": None})
    with pytest.raises(ConfigError, match=r"'limit' expects int \| None"):
        params.validate(spec, {"limit": math.inf})


def test_validate_globals_ignores_modules_functions_private_and_ipython_names() -> None:
    namespace = {
        "attempts": 2,
        "delay_s": 0.1,
        "backend": "local",
        "dsn": None,
        "quick": False,
        "_": None,
        "_i1": "x",
        "In": [],
        "Out": {},
        "get_ipython": lambda: None,
        "exit": None,
        "quit": None,
        "open": open,
        "math": math,
        "helper": params.validate,
        "SimpleNamespace": types.SimpleNamespace,
        "SPEC": SPEC,
    }
    assert params.validate_globals(SPEC, namespace) == {
        "attempts": 2,
        "delay_s": 0.1,
        "backend": "local",
        "dsn": None,
        "quick": False,
    }


def test_validate_globals_rejects_an_injected_unknown_name() -> None:
    namespace = {"attempts": 2, "delay_s": 0.1, "backend": "x", "dsn": None, "quick": False}
    with pytest.raises(ConfigError, match="unknown parameter atempts"):
        params.validate_globals(SPEC, {**namespace, "atempts": 5})


def test_validate_globals_rejects_an_ill_typed_injected_value() -> None:
    namespace = {"attempts": "5", "delay_s": 0.1, "backend": "x", "dsn": None, "quick": False}
    with pytest.raises(ConfigError, match="'attempts' expects int"):
        params.validate_globals(SPEC, namespace)


def test_validate_globals_requires_every_spec_name_to_be_defined() -> None:
    with pytest.raises(ConfigError, match="quick not defined"):
        params.validate_globals(SPEC, {"attempts": 1, "delay_s": 1.0, "backend": "x", "dsn": None})


def test_rerun_in_the_same_kernel_ignores_variables_of_later_cells() -> None:
    namespace = {"attempts": 2, "delay_s": 0.1, "backend": "x", "dsn": None, "quick": False}
    params.validate_globals(SPEC, namespace)
    namespace["frames"] = {"later": "cell output"}  # what running the rest of the notebook leaves
    assert params.validate_globals(SPEC, namespace)["attempts"] == 2


def test_rerun_still_checks_the_types_of_spec_names() -> None:
    namespace = {"attempts": 2, "delay_s": 0.1, "backend": "x", "dsn": None, "quick": False}
    params.validate_globals(SPEC, namespace)
    namespace["attempts"] = "two"
    with pytest.raises(ConfigError, match="'attempts' expects int"):
        params.validate_globals(SPEC, namespace)


def test_failed_validation_does_not_mark_the_namespace() -> None:
    namespace = {"attempts": 2, "delay_s": 0.1, "backend": "x", "dsn": None, "quick": False, "t": 1}
    with pytest.raises(ConfigError):
        params.validate_globals(SPEC, namespace)
    assert params.VALIDATED_MARKER not in namespace
