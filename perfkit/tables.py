"""Result frames as tables for people: units in the headers, rounded, no index, fits the page.

The lab notebooks show their frames through :func:`table`; the CSVs keep the
full frames unchanged. What it does to a copy of the frame:

* a meaningful index (a ``groupby``/``describe`` result) becomes ordinary
  columns, row numbers (an unnamed integer index, also after a sort or a
  filter) are dropped; multi-level columns are joined;
* a unit suffix of a column name goes into the header: ``wall_s`` -> "wall (s)",
  ``peak_bytes`` -> "peak (MiB)", ``cpu_pct`` -> "cpu (%)"; seconds whose
  values all lie below one second are shown in ms;
* numbers keep three significant digits (``53.25`` -> ``53.2``, ``15423.3`` ->
  ``15,423``), missing values show as "–", booleans as yes/no;
* headers and text wrap at spaces (never inside a word), and a frame wider
  than the page (:data:`PAGE_PX`, estimated from the characters of each
  column) is split into several tables that repeat the columns naming a row.

The result renders as HTML in Jupyter and in nbconvert's export (``_repr_html_``)
and as plain text elsewhere.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

#: The page width the tables must fit (the report is checked at this width).
PAGE_PX = 1200
#: Room left for the page's margins.
_USABLE_PX = PAGE_PX - 80
#: Width of one character at the table's font size, and a cell's padding.
_CHAR_PX = 6.6
_PAD_PX = 14
#: A header or text cell wraps past this many characters.
_HEADER_CHARS = 14
_TEXT_CHARS = 40
MISSING = "–"

#: name suffix -> (unit shown, factor applied to the values)
UNITS: dict[str, tuple[str, float]] = {  # longest suffix first: "_per_s" before "_s"
    "_per_s": ("/s", 1.0),
    "_ms": ("ms", 1.0),
    "_us": ("µs", 1.0),
    "_s": ("s", 1.0),
    "_bytes": ("MiB", 1 / 2**20),
    "_mib": ("MiB", 1.0),
    "_pct": ("%", 1.0),
    "_rps": ("req/s", 1.0),
}

#: (unit in the name, unit asked for) -> factor
_CONVERSIONS = {("s", "ms"): 1e3, ("s", "µs"): 1e6, ("ms", "s"): 1e-3, ("ms", "µs"): 1e3}

_STYLE = (
    (
        "<style>"
        "table.perfkit-table{border-collapse:collapse;margin:4px 0 10px 0;font-size:12px;"
        "table-layout:auto;max-width:100%}"
        "table.perfkit-table th,table.perfkit-table td{padding:3px 7px;"
        "border-bottom:1px solid #ddd;"
        "white-space:normal;word-break:normal;overflow-wrap:normal;vertical-align:top}"
        "table.perfkit-table thead tr th{text-align:left;font-weight:600}"
        "table.perfkit-table thead tr th.num{text-align:right}"
        "table.perfkit-table thead tr th.num div{margin-left:auto}"
        "table.perfkit-table th div{max-width:HEADERch}"
        "table.perfkit-table td.num{text-align:right;white-space:nowrap}"
        "table.perfkit-table td.text{text-align:left}"
        "table.perfkit-table td.text div{max-width:TEXTch}"
        "</style>"
    )
    .replace("HEADER", str(_HEADER_CHARS + 2))
    .replace("TEXT", str(_TEXT_CHARS))
)


def format_number(value: object, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits (at least the integer part), or "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if not isinstance(value, numbers.Real):
        return MISSING if pd.isna(value) else str(value)  # type: ignore[call-overload]
    x = float(value)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{x:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def unit_of(name: str) -> tuple[str, str, float]:
    """(label without the suffix, unit, factor) of a column name; unit "" when it has none."""
    lowered = name.lower()
    for suffix, (unit, factor) in UNITS.items():
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], unit, factor
    return name, "", 1.0


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its index as columns (unless it is a plain 0..n-1) and flat names."""
    out = frame.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [
            " ".join(str(p) for p in parts if str(p) != "").strip() for parts in out.columns
        ]
    unnamed = all(n is None for n in out.index.names)
    positions = unnamed and out.index.nlevels == 1 and pd.api.types.is_integer_dtype(out.index)
    if not positions:  # row numbers (also after a sort or a filter) are dropped, labels kept
        names = [
            n if n is not None else ("" if out.index.nlevels == 1 else f"level {i}")
            for i, n in enumerate(out.index.names)
        ]
        out.index = out.index.set_names(names)
        out = out.reset_index()
    out.columns = [str(c) for c in out.columns]
    return out


@dataclass(frozen=True)
class Column:
    """One column as shown: header, cell texts, and whether it holds numbers."""

    header: str
    cells: list[str]
    numeric: bool
    #: text, or few whole numbers (workers, threads, a parameter): can name a row
    names_rows: bool = False

    def chars(self) -> int:
        """Estimated width in characters (headers and text wrap at their limits)."""
        widest_word = max((len(w) for w in self.header.split()), default=0)
        header = max(min(len(self.header), _HEADER_CHARS), widest_word)
        cells = max((len(c) for c in self.cells), default=0)
        if not self.numeric:
            longest_word = max((len(w) for c in self.cells for w in c.split()), default=0)
            cells = max(min(cells, _TEXT_CHARS), longest_word)
        return max(header, cells)

    def px(self) -> float:
        return self.chars() * _CHAR_PX + _PAD_PX


def _column(name: str, values: pd.Series, digits: int, units: Mapping[str, str]) -> Column:
    label, unit, factor = unit_of(name)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if name in units:
        factor *= _CONVERSIONS.get((unit, units[name]), 1.0)
        unit = units[name]
    elif numeric and unit == "s" and factor == 1.0:
        finite = values.dropna().abs()
        if len(finite) and float(finite.max()) < 1.0:
            unit, factor = "ms", 1e3
    if numeric and factor != 1.0:
        values = values * factor
    header = label.replace("_", " ").strip() or name
    if unit:
        header = f"{header} ({unit})"
    format_cell: Callable[[object], str] = (
        (lambda v: format_number(v, digits)) if numeric else _text
    )
    cells = [format_cell(v) for v in values.tolist()]
    return Column(header, cells, numeric, not numeric or _few_whole_numbers(values))


def _few_whole_numbers(values: pd.Series) -> bool:
    finite = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(finite)) and finite.nunique() <= 12 and bool((finite % 1 == 0).all())


def _cell(numeric: bool, text: str) -> str:
    if numeric:
        return f'<td class="num">{html.escape(text)}</td>'
    return f'<td class="text"><div>{html.escape(text)}</div></td>'


def _text(value: object) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):
        return format_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value)
    try:
        if pd.isna(value):  # type: ignore[call-overload]
            return MISSING
    except (TypeError, ValueError):
        pass
    return str(value)


def _pack(widths: Sequence[float], room: float) -> list[list[int]]:
    """Positions of ``widths`` packed in order into groups of at most ``room`` (one at least)."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0.0
    for i, width in enumerate(widths):
        if current and used + width > room:
            groups.append(current)
            current, used = [], 0.0
        current.append(i)
        used += width
    if current or not groups:
        groups.append(current)
    return groups


def _chunks(columns: Sequence[Column], keys: int, budget: float) -> list[list[int]]:
    """Column indices per table: the first ``keys`` columns in every one, the rest packed
    into as few tables as fit the budget, of about equal width."""
    key_px = sum(c.px() for c in columns[:keys])
    if key_px > budget / 2:  # too wide to repeat: no repeated key columns
        keys, key_px = 0, 0.0
    widths = [c.px() for c in columns[keys:]]
    room = budget - key_px
    groups = _pack(widths, room)
    if len(groups) > 1:  # the same number of tables, as equally wide as packing allows
        limit = max(sum(widths) / len(groups), max(widths))
        while limit < room and len(_pack(widths, limit)) > len(groups):
            limit *= 1.02
        groups = _pack(widths, min(limit, room))
    return [list(range(keys)) + [keys + i for i in group] for group in groups]


def _keys(columns: Sequence[Column]) -> int:
    """Leading columns that name a row (at most three): a text column first, then text or
    a few whole numbers (``variant, workers``; ``scenario, param_s, label``)."""
    if not columns or columns[0].numeric:
        return 0
    keys = 1
    while keys < min(3, len(columns)) and columns[keys].names_rows:
        keys += 1
    return keys


@dataclass(frozen=True)
class Table:
    """A frame formatted for people; one or more HTML tables side by side in the page."""

    columns: tuple[Column, ...]
    chunks: tuple[tuple[int, ...], ...]
    title: str = ""

    @property
    def rows(self) -> int:
        return len(self.columns[0].cells) if self.columns else 0

    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def _html_one(self, chunk: Sequence[int]) -> str:
        cols = [self.columns[i] for i in chunk]
        head = "".join(
            f'<th class="{"num" if c.numeric else "text"}"><div>{html.escape(c.header)}</div></th>'
            for c in cols
        )
        body = []
        for r in range(self.rows):
            cells = "".join(_cell(c.numeric, c.cells[r]) for c in cols)
            body.append(f"<tr>{cells}</tr>")
        return (
            f'<table class="perfkit-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        title = f"<p><b>{html.escape(self.title)}</b></p>" if self.title else ""
        if not self.columns:
            return f"{title}<p><i>(no columns)</i></p>"
        if self.rows == 0:
            return f"{title}<p><i>(no rows)</i></p>"
        return _STYLE + title + "".join(self._html_one(chunk) for chunk in self.chunks)

    def __str__(self) -> str:
        frame = pd.DataFrame({c.header: c.cells for c in self.columns})
        return (self.title + "\n" if self.title else "") + frame.to_string(index=False)

    def __repr__(self) -> str:
        return str(self)


def table(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    digits: int = 3,
    keys: int | None = None,
    title: str = "",
    width_px: float = _USABLE_PX,
) -> Table:
    """``frame`` (or its ``columns``) formatted for people; see the module docstring.

    ``units`` sets the unit of a column by its name (``{"median_s": "ms"}`` converts,
    ``{"mean": "s"}`` labels a column whose name has no unit);
    ``keys``: how many leading columns identify a row and are repeated when the
    table is split (default: a leading text column and the text or whole-number columns
    right after it, at most three: ``scenario, param_s, label``; ``variant, workers``).
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    flat = _flat(frame if columns is None else frame[list(columns)])
    shown = [_column(name, flat[name], digits, units or {}) for name in flat.columns]
    if keys is None:
        keys = _keys(shown)
    chunks = _chunks(shown, keys, width_px)
    return Table(tuple(shown), tuple(tuple(c) for c in chunks), title)
