"""headlines.from_samples: the one route from a lab's samples to its headline numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.headlines import HEADLINE_COLUMNS, HeadlineSpec, candidate_of, from_samples


def _samples(values: list[float], metric: str = "wait", variant: str = "naive") -> pd.DataFrame:
    return pd.DataFrame({"metric": metric, "variant": variant, "unit": "s", "value": values})


def test_a_headline_is_the_median_of_its_samples_by_default() -> None:
    frame = from_samples(_samples([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert list(frame.columns) == list(HEADLINE_COLUMNS)
    assert frame["value"].iloc[0] == 3.0
    assert frame["n"].iloc[0] == 5


def test_the_spec_names_the_statistic_per_metric() -> None:
    frame = from_samples(
        _samples([1.0, 2.0, 3.0, 4.0, 100.0]), {"wait": HeadlineSpec(statistic="mean")}
    )
    assert frame["value"].iloc[0] == pytest.approx(22.0)


def test_the_interval_contains_the_value() -> None:
    row = from_samples(_samples([float(v) for v in range(1, 41)])).iloc[0]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_too_few_samples_give_no_interval() -> None:
    row = from_samples(_samples([1.0, 2.0])).iloc[0]
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])


def test_the_label_column_wins_over_the_spec_label() -> None:
    samples = _samples([float(v) for v in range(30)]).assign(label="pool of 5")
    frame = from_samples(samples, {"wait": HeadlineSpec(label="{variant} pool")})
    assert frame["label"].iloc[0] == "pool of 5"


def test_the_spec_label_may_name_the_variant() -> None:
    samples = _samples([float(v) for v in range(30)])
    frame = from_samples(samples, {"wait": HeadlineSpec(label="{variant} pool")})
    assert frame["label"].iloc[0] == "naive pool"


def test_an_unknown_statistic_is_refused() -> None:
    with pytest.raises(ConfigError, match="statistic"):
        HeadlineSpec(statistic="mode")


def test_one_headline_per_metric_and_variant_in_sample_order() -> None:
    samples = pd.concat([_samples([1.0], "b", "improved"), _samples([2.0], "a", "naive")])
    frame = from_samples(samples)
    assert list(zip(frame["metric"], frame["variant"], strict=True)) == [
        ("b", "improved"),
        ("a", "naive"),
    ]


def test_samples_from_several_runs_make_an_interval_over_runs() -> None:
    runs = [f"r{i}" for i in range(4) for _ in range(50)]
    values = [1.0 + 0.1 * i for i in range(4) for _ in range(50)]
    row = from_samples(_samples(values).assign(run=runs)).iloc[0]
    assert row["n"] == 4
    assert row["ci_high"] - row["ci_low"] >= 0.1


def test_samples_of_one_run_keep_their_per_sample_interval() -> None:
    values = [float(v) for v in range(1, 41)]
    row = from_samples(_samples(values).assign(run="only")).iloc[0]
    assert row["n"] == 40 and row["ci_low"] < row["ci_high"]


def test_a_median_of_a_few_samples_gets_its_exact_order_statistic_interval() -> None:
    row = from_samples(_samples([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0])).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (1.0, 7.0)
    assert "range" not in row["label"]


def test_fewer_than_six_samples_show_their_range_and_say_so() -> None:
    row = from_samples(_samples([1.0, 2.0, 4.0]).assign(label="what")).iloc[0]
    assert (row["ci_low"], row["ci_high"]) == (1.0, 4.0)
    assert row["label"] == "what (interval: the range of 3)"


def test_a_few_runs_of_many_samples_show_the_range_of_the_runs() -> None:
    runs = [f"r{i}" for i in range(4) for _ in range(50)]
    values = [1.0 + 0.1 * i for i in range(4) for _ in range(50)]
    row = from_samples(_samples(values).assign(run=runs)).iloc[0]
    assert row["n"] == 4 and (row["ci_low"], row["ci_high"]) == pytest.approx((1.0, 1.3))


def test_the_better_direction_of_a_spec_goes_into_its_headlines() -> None:
    frame = from_samples(_samples([1.0, 2.0, 3.0]), {"wait": HeadlineSpec(better="higher")})
    assert frame["better"].tolist() == ["higher"]


def test_a_metric_without_a_spec_is_lower_is_better() -> None:
    assert from_samples(_samples([1.0, 2.0, 3.0]))["better"].tolist() == ["lower"]


def test_a_better_direction_other_than_lower_or_higher_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="better"):
        HeadlineSpec(better="up")


def test_every_labs_headline_metric_declares_its_better_direction() -> None:
    from perfkit import registry

    specs = registry.headline_specs()
    assert specs["pool_throughput"].better == "higher"
    assert specs["pgbouncer_connect_per_request_throughput"].better == "higher"
    assert specs["suite_runtime"].better == "lower"
    assert {s.better for s in specs.values()} <= {"lower", "higher"}


def test_the_candidate_of_a_label_is_what_was_measured_without_notes() -> None:
    assert candidate_of("rollback (workers=1) (interval: the range of 4)") == "rollback, workers=1"
    assert candidate_of("transaction: median connect + SELECT 1 + close") == "transaction"
    assert candidate_of("") == ""
