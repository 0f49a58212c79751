"""Migration SQL: split files into statements and apply them one by one.

Statements are split on top-level semicolons, honouring quoted strings
('...', E'...', "..."), dollar quotes ($tag$...$tag$) and comments, so a
failure can name the exact statement (file, line and text) that broke.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from perfkit.dsn import mask
from perfkit.errors import ConfigError, MigrationError

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
SHOWN_CHARS = 400


@dataclass(frozen=True, kw_only=True)
class Statement:
    """One SQL statement and where it came from."""

    sql: str
    source: str
    line: int

    def shown(self) -> str:
        text = self.sql.strip()
        return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + " ..."


def split_sql(text: str, *, source: str = "<sql>") -> list[Statement]:
    """Split ``text`` into statements at top-level semicolons; drop empty ones."""
    statements: list[Statement] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif ch == "/" and text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif ch == "'":
            backslash = i > 0 and text[i - 1] in "eE" and (i < 2 or not text[i - 2].isalnum())
            i += 1
            while i < n:
                if backslash and text[i] == "\\":
                    i += 2
                elif text[i] == "'":
                    if text.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            while end >= 0 and text.startswith('""', end):
                end = text.find('"', end + 2)
            i = n if end < 0 else end + 1
        elif ch == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            match = _DOLLAR_TAG.match(text, i)
            if match:
                end = text.find(match.group(0), match.end())
                i = n if end < 0 else end + len(match.group(0))
            else:
                i += 1
        elif ch == ";":
            _append(statements, text, start, i, source)
            start = i = i + 1
        else:
            i += 1
    _append(statements, text, start, n, source)
    return statements


def _append(out: list[Statement], text: str, start: int, end: int, source: str) -> None:
    chunk = text[start:end]
    body = chunk[_code_start(chunk) :]
    if not body.strip():
        return
    offset = start + len(chunk) - len(body)
    line = text.count("\n", 0, offset) + 1
    out.append(Statement(sql=body.strip(), source=source, line=line))


def _code_start(chunk: str) -> int:
    """Index of the first character that is not whitespace or (nested) comment."""
    i, n = 0, len(chunk)
    while i < n:
        if chunk[i].isspace():
            i += 1
        elif chunk.startswith("--", i):
            end = chunk.find("\n", i)
            i = n if end < 0 else end + 1
        elif chunk.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if chunk.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif chunk.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return i


def load(paths: Sequence[Path]) -> list[Statement]:
    """Read and split migration files in order; a missing file is a ConfigError."""
    statements: list[Statement] = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"migrations file {path} cannot be read: {exc.strerror}") from None
        statements += split_sql(text, source=str(path))
    return statements


def apply(conn: psycopg.Connection, statements: Iterable[Statement]) -> int:
    """Run ``statements`` on an autocommit connection; return how many ran.

    On failure raise :class:`MigrationError` naming the statement.
    """
    count = 0
    for statement in statements:
        try:
            conn.execute(statement.sql.encode())  # bytes: no client-side placeholder parsing
        except psycopg.Error as exc:
            error = mask(str(exc)).strip()
            raise MigrationError(
                f"migration failed at {statement.source}:{statement.line} "
                f"(statement {count + 1}): {error}\n  SQL: {statement.shown()}",
                statement=statement,
            ) from None
        count += 1
    return count
