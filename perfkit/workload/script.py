"""pgbench-format scripts: SQL commands, ``\\set`` and ``\\sleep``, parsed before anything runs.

A SQL command runs to the first ``;`` outside quotes, comments and dollar
quotes (it may span lines; the last one may omit it). A line starting with a
backslash is a meta-command: ``\\set name expression`` (:mod:`perfkit.workload.expr`)
or ``\\sleep n [us|ms|s]`` (``n`` an integer or ``:var``); a trailing backslash
continues it on the next line. ``:name`` in SQL (outside quotes and comments,
not ``::``) becomes a server-side bound parameter ($1, $2, ...), never pasted
text. Anything else raises :class:`ScriptError` naming ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perfkit.errors import ConfigError
from perfkit.workload import expr
from perfkit.workload.expr import ExprSyntaxError, Node

#: Variables pgbench sets itself (``scale`` comes from the run, ``client_id`` per client).
AUTOMATIC = ("client_id", "scale", "random_seed", "default_seed")
SLEEP_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
#: pgbench meta-commands this runner does not implement (anything else is unknown).
UNSUPPORTED = (
    "setshell",
    "shell",
    "if",
    "elif",
    "else",
    "endif",
    "gset",
    "aset",
    "startpipeline",
    "endpipeline",
    "syncpipeline",
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WRITES = re.compile(
    r"\b(insert|update|delete|merge|create|drop|alter|truncate|copy|grant|revoke|lock"
    r"|vacuum|cluster|reindex|refresh|comment|nextval|setval)\b",
    re.IGNORECASE,
)


class ScriptError(ConfigError):
    """A script does not parse or cannot run here; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class SetCommand:
    """``\\set var expression``."""

    line: int
    var: str
    expression: Node


@dataclass(frozen=True)
class SleepCommand:
    """``\\sleep amount [unit]``: ``amount`` is an integer constant or a variable."""

    line: int
    amount: int | str
    unit_s: float


@dataclass(frozen=True)
class SqlCommand:
    """One SQL statement: its text as written and psycopg's form with ``%s`` per variable."""

    line: int
    text: str
    query: str
    params: tuple[str, ...]


Command = SetCommand | SleepCommand | SqlCommand


@dataclass(frozen=True)
class Script:
    """A parsed script: ``name`` (file stem), where it came from and its commands."""

    name: str
    source: str
    where: str
    commands: tuple[Command, ...]
    path: str | None = None

    @property
    def writes(self) -> bool:
        """Whether a SQL command looks like it writes (INSERT, UPDATE, CREATE, ...)."""
        return any(
            isinstance(c, SqlCommand) and _WRITES.search(_code_only(c.text)) for c in self.commands
        )

    def sets(self) -> set[str]:
        """Variables the script sets."""
        return {c.var for c in self.commands if isinstance(c, SetCommand)}

    def uses(self) -> list[tuple[int, str]]:
        """(line, variable) for every variable the script reads."""
        out: list[tuple[int, str]] = []
        for c in self.commands:
            if isinstance(c, SetCommand):
                out += [(c.line, v) for v in sorted(expr.variables(c.expression))]
            elif isinstance(c, SleepCommand) and isinstance(c.amount, str):
                out.append((c.line, c.amount))
            elif isinstance(c, SqlCommand):
                out += [(c.line, v) for v in c.params]
        return out


# -- scanning -------------------------------------------------------------------------


def _skip_quoted(text: str, i: int) -> int:
    """From an opening quote/comment at ``i``: the index just after it ends (or len)."""
    c = text[i]
    if c in "'\"":
        escapes = c == "'" and i > 0 and text[i - 1] in "eE"  # E'...' takes backslash escapes
        j = i + 1
        while j < len(text):
            if escapes and text[j] == "\\":
                j += 2
                continue
            if text[j] == c:
                if j + 1 < len(text) and text[j + 1] == c:
                    j += 2
                    continue
                return j + 1
            j += 1
        return len(text)
    if text.startswith("--", i):
        j = text.find("\n", i)
        return len(text) if j < 0 else j
    if text.startswith("/*", i):
        j = text.find("*/", i + 2)
        return len(text) if j < 0 else j + 2
    m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])
    if m:
        j = text.find(m.group(0), i + len(m.group(0)))
        return len(text) if j < 0 else j + len(m.group(0))
    return i + 1


def _opens_quote(text: str, i: int) -> bool:
    c = text[i]
    if c in "'\"":
        return True
    if text.startswith("--", i) or text.startswith("/*", i):
        return True
    return c == "$" and re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:]) is not None


def _code_only(sql: str) -> str:
    """``sql`` with quoted text and comments blanked out."""
    out, i = [], 0
    while i < len(sql):
        if _opens_quote(sql, i):
            j = _skip_quoted(sql, i)
            out.append(" " * (j - i))
            i = j
        else:
            out.append(sql[i])
            i += 1
    return "".join(out)


def _bind(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` in psycopg's form: ``:name`` -> ``%s`` (and ``%`` -> ``%%``), with the names."""
    out: list[str] = []
    names: list[str] = []
    i = 0
    while i < len(sql):
        if _opens_quote(sql, i):
            j = _skip_quoted(sql, i)
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif sql.startswith("::", i):
            out.append("::")
            i += 2
        elif sql[i] == ":" and (m := _NAME.match(sql, i + 1)):
            names.append(m.group(0))
            out.append("%s")
            i = m.end()
        else:
            out.append("%%" if sql[i] == "%" else sql[i])
            i += 1
    if not names:
        return sql, ()
    return "".join(out), tuple(names)


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _skip_space(text: str, i: int) -> int:
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i) or text.startswith("/*", i):
            i = _skip_quoted(text, i)
        else:
            break
    return i


def _sql_end(text: str, i: int, where: str) -> int:
    """Index of the ``;`` ending the SQL command starting at ``i`` (or len(text))."""
    while i < len(text):
        c = text[i]
        if _opens_quote(text, i):
            i = _skip_quoted(text, i)
            continue
        if c == ";":
            return i
        if c == "\\":
            word = re.match(r"\\\w*", text[i:])
            raise ScriptError(
                f"{where}:{_line_of(text, i)}: meta-command {word.group(0) if word else c} "
                "inside a SQL command (end the SQL command with ';' first; perfkit runs "
                "\\set and \\sleep on lines of their own)"
            )
        i += 1
    return len(text)


def _meta_end(text: str, i: int) -> int:
    """End of the meta-command starting at ``i``: its line, plus lines continued with ``\\``."""
    while True:
        j = text.find("\n", i)
        if j < 0:
            return len(text)
        if not text[:j].rstrip("\r").endswith("\\"):
            return j
        i = j + 1


# -- meta-commands ----------------------------------------------------------------------


def _meta(body: str, line: int, where: str) -> Command:
    at = f"{where}:{line}"
    words = body.split()
    name = words[0][1:].lower()
    if name == "set":
        if len(words) < 3:
            raise ScriptError(f"{at}: \\set needs a variable name and an expression")
        var = words[1]
        if not _NAME.fullmatch(var):
            raise ScriptError(f"{at}: invalid variable name {var!r}")
        rest = body.split(None, 2)[2]
        try:
            return SetCommand(line=line, var=var, expression=expr.parse(rest))
        except ExprSyntaxError as exc:
            raise ScriptError(f"{at}: \\set {var}: {exc}") from None
    if name == "sleep":
        return _sleep(words[1:], line, at)
    if name in UNSUPPORTED:
        raise ScriptError(f"{at}: \\{name} is a pgbench meta-command perfkit does not run")
    raise ScriptError(f"{at}: unknown meta-command \\{name} (perfkit runs \\set and \\sleep)")


def _sleep(args: list[str], line: int, at: str) -> SleepCommand:
    if not 1 <= len(args) <= 2:
        raise ScriptError(f"{at}: \\sleep takes an amount and an optional unit (us, ms, s)")
    unit = args[1].lower() if len(args) == 2 else "s"
    if unit not in SLEEP_UNITS:
        raise ScriptError(f"{at}: \\sleep: unknown time unit {args[1]!r} (us, ms or s)")
    raw = args[0]
    if raw.startswith(":") and _NAME.fullmatch(raw[1:]):
        amount: int | str = raw[1:]
    elif re.fullmatch(r"-?\d+", raw):
        amount = int(raw)
    else:
        raise ScriptError(f"{at}: \\sleep: {raw!r} is neither an integer nor a :variable")
    return SleepCommand(line=line, amount=amount, unit_s=SLEEP_UNITS[unit])


# -- the script ---------------------------------------------------------------------------


def parse_script(text: str, *, name: str, where: str, path: str | None = None) -> Script:
    """Parse a pgbench script; ``where`` (its file) starts every error message."""
    commands: list[Command] = []
    i = _skip_space(text, 0)
    while i < len(text):
        line = _line_of(text, i)
        if text[i] == "\\":
            end = _meta_end(text, i)
            body = re.sub(r"\\\r?\n", " ", text[i:end])
            commands.append(_meta(body, line, where))
        else:
            end = _sql_end(text, i, where)
            sql = text[i:end].strip()
            query, params = _bind(sql)
            commands.append(SqlCommand(line=line, text=sql, query=query, params=params))
        i = _skip_space(text, end + 1)
    if not commands:
        raise ScriptError(f"{where}:1: the script has no command")
    return Script(name=name, source=text, where=where, commands=tuple(commands), path=path)
