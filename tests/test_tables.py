"""perfkit.tables: result frames formatted for people."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup

from perfkit import tables


def _cells(table: tables.Table) -> list[dict[str, str]]:
    """Rows of the first HTML table, header -> text."""
    soup = BeautifulSoup(table._repr_html_(), "html.parser")
    first = soup.find("table")
    head = [th.get_text(strip=True) for th in first.find("thead").find_all("th")]
    return [
        dict(zip(head, [td.get_text(strip=True) for td in tr.find_all("td")], strict=True))
        for tr in first.find("tbody").find_all("tr")
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (53.25, "53.2"),
        (15423.3, "15,423"),
        (0.012345, "0.0123"),
        (1.5, "1.5"),
        (3.0, "3"),
        (np.int64(1000000), "1,000,000"),
        (math.nan, "–"),
        (None, "–"),
        (True, "yes"),
        (-0.0004, "-0.0004"),
        (math.inf, "∞"),
    ],
)
def test_numbers_keep_three_significant_digits(value: object, text: str) -> None:
    assert tables.format_number(value) == text


def test_headers_carry_the_unit_of_the_column_name() -> None:
    frame = pd.DataFrame(
        {"wall_s": [2.5], "peak_bytes": [3 * 2**20], "cpu_pct": [50.0], "rows": [10]}
    )
    assert tables.table(frame).headers() == ["wall (s)", "peak (MiB)", "cpu (%)", "rows"]
    assert _cells(tables.table(frame))[0]["peak (MiB)"] == "3"


def test_a_rate_per_second_is_not_read_as_seconds() -> None:
    assert tables.table(pd.DataFrame({"attempts_per_s": [12.0]})).headers() == ["attempts (/s)"]


def test_seconds_below_one_second_are_shown_in_ms() -> None:
    frame = pd.DataFrame({"overshoot_median_s": [0.05325, 0.0123]})
    shown = tables.table(frame)
    assert shown.headers() == ["overshoot median (ms)"]
    assert [row["overshoot median (ms)"] for row in _cells(shown)] == ["53.2", "12.3"]


def test_units_argument_converts_or_labels_a_column() -> None:
    frame = pd.DataFrame({"median_s": [2.5], "mean": [0.3]})
    shown = tables.table(frame, units={"median_s": "ms", "mean": "s"})
    assert shown.headers() == ["median (ms)", "mean (s)"]
    assert _cells(shown)[0] == {"median (ms)": "2,500", "mean (s)": "0.3"}


def test_default_index_is_dropped_and_a_named_index_becomes_a_column() -> None:
    plain = tables.table(pd.DataFrame({"a_s": [1.0, 2.0]}, index=[5, 9]).reset_index(drop=True))
    assert plain.headers() == ["a (s)"]
    described = (
        pd.DataFrame({"method": ["x", "x", "y"], "ms": [1.0, 2.0, 3.0]})
        .groupby("method")["ms"]
        .describe()
    )
    shown = tables.table(described)
    assert shown.headers()[:2] == ["method", "count"]
    assert [row["method"] for row in _cells(shown)] == ["x", "y"]


def test_row_numbers_of_a_sorted_or_filtered_frame_are_dropped() -> None:
    frame = pd.DataFrame({"strategy": ["b", "a", "c"], "wall_s": [2.0, 1.0, 3.0]})
    shown = tables.table(frame[frame["wall_s"] < 3].sort_values("wall_s"))
    assert shown.headers() == ["strategy", "wall (s)"]
    assert [row["strategy"] for row in _cells(shown)] == ["a", "b"]


def test_missing_values_show_as_a_dash_not_nan() -> None:
    frame = pd.DataFrame({"name": ["a", None], "ratio": [np.nan, 1.23456]})
    html = tables.table(frame)._repr_html_()
    assert "NaN" not in html and "None" not in html
    assert [row["ratio"] for row in _cells(tables.table(frame))] == ["–", "1.23"]


def test_wide_frame_is_split_into_tables_that_repeat_the_key_columns() -> None:
    frame = pd.DataFrame(
        {"strategy": ["naive", "full_jitter"], **{f"metric_{i}_s": [1.5, 2.5] for i in range(30)}}
    )
    shown = tables.table(frame)
    assert len(shown.chunks) > 1
    assert all(chunk[0] == 0 for chunk in shown.chunks)  # "strategy" in every part
    assert sorted({i for chunk in shown.chunks for i in chunk}) == list(range(31))
    soup = BeautifulSoup(shown._repr_html_(), "html.parser")
    assert len(soup.find_all("table")) == len(shown.chunks)


def test_split_parts_are_about_equally_wide_and_repeat_every_leading_name() -> None:
    frame = pd.DataFrame(
        {
            "scenario": ["cold_start"] * 2,
            "param_s": [1.0, 1.0],
            "label": ["naive", "full_jitter"],
            **{f"a_long_metric_name_{i}_s": [1.5, 2.5] for i in range(13)},
        }
    )
    shown = tables.table(frame)
    assert all(chunk[:3] == (0, 1, 2) for chunk in shown.chunks)
    sizes = [len(chunk) - 3 for chunk in shown.chunks]
    assert len(sizes) > 1 and max(sizes) - min(sizes) <= 1


def test_split_parts_repeat_a_whole_number_column_that_names_the_row() -> None:
    frame = pd.DataFrame(
        {
            "variant": ["direct", "pgbouncer"] * 2,
            "workers": [4, 4, 16, 16],
            **{f"a_long_metric_name_{i}_ms": [1.25, 2.5, 3.75, 5.0] for i in range(13)},
        }
    )
    shown = tables.table(frame)
    assert len(shown.chunks) > 1
    assert all(chunk[:2] == (0, 1) for chunk in shown.chunks)


def test_narrow_frame_stays_one_table() -> None:
    frame = pd.DataFrame({"strategy": ["naive"], "wall_s": [1.0]})
    assert tables.table(frame).chunks == ((0, 1),)


def test_long_text_wraps_at_spaces_not_inside_words() -> None:
    frame = pd.DataFrame({"verdict": ["indistinguishable at this n " * 6]})
    html = tables.table(frame)._repr_html_()
    assert "word-break:normal" in html and "break-all" not in html


def test_the_frame_itself_is_not_changed() -> None:
    frame = pd.DataFrame({"wall_s": [0.123456789]})
    tables.table(frame)
    assert frame["wall_s"].iloc[0] == 0.123456789
