"""Validate notebook parameters against a spec before anything expensive starts.

A spec maps each parameter name to a type or a tuple of types::

    SPEC = {"attempts": int, "delay_s": float, "backend": str, "dsn": (str, type(None))}

Rules: ``bool`` never passes as ``int`` or ``float``; an ``int`` passes where a
``float`` is expected; ``None`` passes only when ``type(None)`` is in the tuple.
Unknown names and wrong types raise :class:`perfkit.errors.ConfigError` with a
message naming the parameter.

In a notebook, the cell after the ``parameters`` cell (and after papermill's
injected-parameters cell) calls ``params.validate_globals(SPEC, globals())``:
any public global that is not in the spec is an unknown parameter. That is how
a notebook rejects a misspelt ``-p`` name even under plain papermill, which
itself only warns.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping, MutableMapping
from typing import Any

from perfkit.errors import ConfigError

TypeSpec = type | tuple[type, ...]
Spec = Mapping[str, Any]

NoneType = type(None)

# Globals IPython (and the Python REPL) put into a notebook's namespace.
VALIDATED_MARKER = "_perfkit_validated"
IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def _types_of(expected: Any) -> tuple[type, ...]:
    items = expected if isinstance(expected, tuple) else (expected,)
    out: list[type] = []
    for item in items:
        if item is None:
            out.append(NoneType)
            continue
        origin = typing.get_origin(item)
        if origin is types.UnionType or origin is typing.Union:
            out.extend(_types_of(typing.get_args(item)))
        elif origin is not None and isinstance(origin, type):
            out.append(origin)  # list[int] -> list (elements are not checked)
        elif isinstance(item, type):
            out.append(item)
        else:
            raise ConfigError(f"parameter spec entry {item!r} is not a type")
    return tuple(out)


def type_name(expected: Any) -> str:
    """Readable name of a spec entry, e.g. ``int | None``."""
    return " | ".join("None" if t is NoneType else t.__name__ for t in _types_of(expected))


def matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` is acceptable for a spec entry (see the module docstring)."""
    for t in _types_of(expected):
        if t is NoneType:
            if value is None:
                return True
        elif isinstance(value, bool):
            if t is bool:
                return True
        elif t is float:
            if isinstance(value, int | float):
                return True
        elif isinstance(value, t):
            return True
    return False


def validate(spec: Spec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``values`` against ``spec``; return them as a dict or raise ConfigError.

    Names missing from ``values`` are allowed (the notebook keeps its default).
    """
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ConfigError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known parameters: {', '.join(sorted(spec)) or '(none)'}"
        )
    for name, value in values.items():
        expected = spec[name]
        if not matches(value, expected):
            raise ConfigError(
                f"parameter {name!r} expects {type_name(expected)}, "
                f"got {type(value).__name__} {value!r}"
            )
    return dict(values)


def _is_parameter_like(name: str, value: Any) -> bool:
    if name.startswith("_") or name in IPYTHON_NAMES:
        return False
    return not isinstance(
        value,
        types.ModuleType | types.FunctionType | types.BuiltinFunctionType | type,
    )


def validate_globals(
    spec: Spec, namespace: MutableMapping[str, Any], *, ignore: Collection[str] = ()
) -> dict[str, Any]:
    """Validate a notebook's globals right after its parameters cell.

    Every public global that is not a module, function or class (nor the
    spec itself, so ``SPEC = {...}`` may sit in the same cell, nor a name in
    ``ignore``) counts as a parameter: names not in ``spec`` are unknown, and every name in ``spec``
    must be defined. Returns the parameters as a dict (for results metadata).

    The first call in a kernel marks the namespace (``_perfkit_validated``).
    A later call in the same kernel (re-running cells in JupyterLab, where
    later cells' variables already exist) checks only the spec's names: papermill
    always injects parameters into a fresh kernel, so the first call sees them.
    """
    first = VALIDATED_MARKER not in namespace
    found = {
        name: value
        for name, value in namespace.items()
        if value is not spec
        and name not in ignore
        and _is_parameter_like(name, value)
        and (first or name in spec)
    }
    missing = sorted(name for name in spec if name not in namespace)
    if missing:
        raise ConfigError(
            f"parameter{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            "not defined in the notebook's parameters cell"
        )
    values = validate(spec, found)
    namespace[VALIDATED_MARKER] = True
    return {name: values[name] for name in spec}
