"""Workload files: ``file.sql@7`` references, the scripts shipped with perfkit, SQL files.

A reference is a path with an optional ``@weight`` (a non-negative integer,
default 1, as pgbench's ``-f file@weight``). A path starting with ``perfkit:``
names a file shipped in ``perfkit/workload/scripts/`` (``perfkit:default/select1.sql``).
:func:`load_workload` parses every script and checks that each variable read
is set by some script (or is automatic), so every error names ``file:line``
before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from perfkit.workload.script import AUTOMATIC, Script, ScriptError, SqlCommand, parse_script

SHIPPED_PREFIX = "perfkit:"
#: pgbench's builtin scripts, shipped as files with the same text (``pgbench --show-script``).
BUILTIN_SCRIPTS = {
    "tpcb-like": "perfkit:builtin/tpcb-like.sql",
    "simple-update": "perfkit:builtin/simple-update.sql",
    "select-only": "perfkit:builtin/select-only.sql",
}


@dataclass(frozen=True)
class WeightedScript:
    """A parsed script and its weight in the mix."""

    script: Script
    weight: int


def split_ref(ref: str) -> tuple[str, int]:
    """``"path@7"`` -> ``("path", 7)``; no ``@weight``: weight 1."""
    if not isinstance(ref, str) or not ref.strip():
        raise ScriptError(f"a workload entry must be a file path (file.sql@weight), got {ref!r}")
    m = re.fullmatch(r"(.*)@([^@/]*)", ref)
    if m is None:
        return ref, 1
    path, weight = m.group(1), m.group(2)
    if not re.fullmatch(r"\d+", weight):
        raise ScriptError(f"workload entry {ref!r}: the weight after '@' must be an integer >= 0")
    return path, int(weight)


def resolve(path: str) -> Path:
    """The file a workload path names (``perfkit:...`` inside the package), which must exist."""
    if path.startswith(SHIPPED_PREFIX):
        rel = path[len(SHIPPED_PREFIX) :]
        found = Path(str(resources.files("perfkit.workload").joinpath("scripts", rel)))
    else:
        found = Path(path).expanduser()
    if not found.is_file():
        shipped = ", ".join(sorted(shipped_scripts()))
        raise ScriptError(f"{path}: no such file (scripts shipped with perfkit: {shipped})")
    return found


def shipped_scripts() -> list[str]:
    """Every script shipped with perfkit, as ``perfkit:dir/file.sql``."""
    root = Path(str(resources.files("perfkit.workload").joinpath("scripts")))
    return [SHIPPED_PREFIX + p.relative_to(root).as_posix() for p in sorted(root.rglob("*.sql"))]


def read_script(path: str) -> Script:
    """Parse one script file (errors name ``path:line``)."""
    found = resolve(path)
    try:
        text = found.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: cannot read: {exc}") from None
    return parse_script(text, name=found.stem, where=path, path=str(found))


def load_workload(refs: Sequence[str], defined: Sequence[str] = ()) -> tuple[WeightedScript, ...]:
    """Parse ``refs`` (``file.sql@weight``) and check the variables across them.

    ``defined`` names variables given from outside (``-D``-like). Raises
    :class:`ScriptError` naming ``file:line``.
    """
    if isinstance(refs, str) or not refs:
        raise ScriptError(f"workload must be a non-empty list of script files, got {refs!r}")
    out = []
    for ref in refs:
        path, weight = split_ref(ref)
        out.append(WeightedScript(read_script(path), weight))
    if sum(w.weight for w in out) <= 0:
        raise ScriptError("workload: the total weight of the scripts must be > 0")
    names = [w.script.name for w in out]
    if len(set(names)) != len(names):
        raise ScriptError(f"workload: two scripts have the same file name: {names}")
    check_variables([w.script for w in out], defined)
    return tuple(out)


def check_variables(scripts: Sequence[Script], defined: Sequence[str] = ()) -> None:
    """Every variable a script reads is set by one of ``scripts``, automatic or ``defined``."""
    known = set(AUTOMATIC) | set(defined)
    for s in scripts:
        known |= s.sets()
    for s in scripts:
        for line, var in s.uses():
            if var not in known:
                raise ScriptError(
                    f"{s.where}:{line}: variable :{var} is never set "
                    f"(\\set it; automatic: {', '.join(AUTOMATIC)})"
                )


def read_sql_file(path: str) -> tuple[str, tuple[SqlCommand, ...]]:
    """A schema or seed file: plain SQL statements only (``\\set`` etc. are errors)."""
    script = read_script(path)
    for c in script.commands:
        if not isinstance(c, SqlCommand) or c.params:
            raise ScriptError(f"{path}:{c.line}: schema and seed files hold plain SQL only")
    return path, tuple(c for c in script.commands if isinstance(c, SqlCommand))


def created_objects(statements: Sequence[SqlCommand]) -> list[str]:
    """What ``CREATE ...`` statements make, e.g. ``table scheduled_tasks`` (for messages)."""
    out = []
    pattern = re.compile(
        r"^\s*create\s+(?:unique\s+|or\s+replace\s+|unlogged\s+|temp(?:orary)?\s+)*"
        r"(table|index|sequence|view|function|type|materialized\s+view)\s+"
        r"(?:if\s+not\s+exists\s+)?([\w.\"]+)",
        re.IGNORECASE,
    )
    for s in statements:
        if m := pattern.match(s.text):
            out.append(f"{m.group(1).lower()} {m.group(2)}")
    return out
