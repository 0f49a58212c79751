"""Stages: a lab run limited to some of its stages, refused before anything starts when a name
is unknown, and a real quick run of one stage that measures only that stage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from perfkit import labrun, registry, results
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Results, param
from perfkit.retry.lab import LAB as RETRY


def quick(tmp_path: Path, **changes: object) -> LabParams:
    values = {"quick": True, "backend": "local", "out_dir": str(tmp_path / "data"), **changes}
    return RETRY.Params.from_mapping(values)


def test_unknown_stage_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        quick(tmp_path, stages=["hang", "warmup"])
    message = str(info.value)
    assert "'warmup'" in message
    assert all(repr(stage) in message for stage in RETRY.Params.STAGES)


def test_unknown_stage_given_to_labrun_is_refused_before_anything_starts(tmp_path: Path) -> None:
    seen: list[str] = []
    with pytest.raises(ConfigError, match="unknown stage 'warmup'"):
        labrun.run_and_save(RETRY, quick(tmp_path), stages=["warmup"], progress=seen.append)
    assert seen == []  # nothing ran
    assert not (tmp_path / "data").exists()  # nothing saved


def test_an_empty_list_of_stages_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one stage"):
        quick(tmp_path, stages=[])


def test_budget_without_the_runs_it_spends_on_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'budget'.*add 'cold_start' or 'outages'"):
        quick(tmp_path, stages=["budget", "hang"])


def test_a_lab_without_stages_refuses_any_stage() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Whole(LabParams):
        size: int = param(1, "how many")

    with pytest.raises(ConfigError, match="runs as one piece"):
        Whole(stages=("all",))


@pytest.mark.parametrize("lab", registry.LABS, ids=lambda lab: lab.name)
def test_naming_every_stage_a_lab_declares_runs_them_all(lab: object) -> None:
    params_type = lab.Params  # type: ignore[attr-defined]
    if not params_type.STAGES:
        pytest.skip(f"{params_type.__module__} runs as one piece")
    params = params_type(quick=True, stages=params_type.STAGES)
    assert all(params.ran(stage) for stage in params_type.STAGES)


def test_one_retry_stage_selects_only_that_stage(tmp_path: Path) -> None:
    params = quick(tmp_path, stages=["herd"])
    assert [stage for stage in RETRY.Params.STAGES if params.ran(stage)] == ["herd"]


def test_results_of_all_stages_ran_every_stage() -> None:
    assert Results(frames={}).ran("anything")
    assert not Results(frames={}, stages=("hang",)).ran("herd")


def test_the_analytic_stage_alone_computes_only_the_worst_cases(tmp_path: Path) -> None:
    out = labrun.run_and_save(RETRY, quick(tmp_path), stages=["analytic"], progress=lambda m: None)
    assert out.stages == ("analytic",)
    assert set(out.frames) == {"worst_case", "review_claim", "headline", "samples"}
    assert set(out.frames["headline"]["metric"]) == {"connection_time"}
    text = RETRY.conclusions(out)
    assert "The review's claim does not hold" in text
    skipped = "cold_start, outages, budget, hang, herd, fleet, simulation"
    assert f"Not measured in this run: {skipped}" in text


def test_one_stage_on_a_real_server_measures_only_that_stage(tmp_path: Path) -> None:
    out = labrun.run_and_save(RETRY, quick(tmp_path), stages=["hang"], progress=lambda m: None)
    runs = out.frames["runs"]
    assert set(runs["scenario"]) == {"hang"} and runs["connected"].all()
    assert not {"worst_case", "herd", "simulation", "budget", "ready_times"} & set(out.frames)
    saved = results.latest("retry", tmp_path / "data")
    assert saved.metadata["params"]["stages"] == ["hang"]
    loaded = Results.of_run(saved)
    assert loaded.stages == ("hang",) and not loaded.ran("cold_start")
    text = RETRY.conclusions(loaded)
    assert "**Hang**" in text and "Not measured in this run: analytic, cold_start" in text
    assert [caption for caption, _ in RETRY.figures(loaded)] == []  # no figure of a skipped stage
