"""labrun.latest_or_run: a notebook loads the newest saved run with its parameters instead of
measuring, and measures (saying why) when there is none."""

from __future__ import annotations

import json
from pathlib import Path

from perfkit import labrun, latest_or_run, results
from perfkit.retry.lab import LAB

ANALYTIC = ["analytic"]  # the retry lab's stage without a server: a real run in a second


def params(tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    values = {"quick": True, "out_dir": str(tmp_path / "data"), "stages": ANALYTIC, **changes}
    return LAB.Params.from_mapping(values)


def saved_runs(tmp_path: Path) -> list[Path]:
    return results.run_dirs("retry", tmp_path / "data")


def test_without_a_saved_run_it_measures_and_saves(tmp_path: Path) -> None:
    said: list[str] = []
    out = latest_or_run(LAB, params(tmp_path), progress=said.append)
    assert [p.name for p in saved_runs(tmp_path)] == [out.run_id]
    assert any("no saved retry run" in line for line in said)


def test_a_saved_run_with_the_same_parameters_is_loaded_not_measured(tmp_path: Path) -> None:
    first = labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    said: list[str] = []
    again = latest_or_run(LAB, params(tmp_path, reuse_saved=True), progress=said.append)
    assert again.run_id == first.run_id and len(saved_runs(tmp_path)) == 1
    assert again.frames["worst_case"].equals(first.frames["worst_case"])
    assert again.stages == ("analytic",)
    assert any("nothing measured" in line for line in said)


def test_the_newest_of_several_matching_runs_is_loaded(tmp_path: Path) -> None:
    labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    newest = labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    assert latest_or_run(LAB, params(tmp_path), progress=lambda m: None).run_id == newest.run_id


def test_a_run_with_other_parameters_is_not_loaded_and_the_difference_is_named(
    tmp_path: Path,
) -> None:
    old = labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    said: list[str] = []
    new = latest_or_run(LAB, params(tmp_path, worst_case_samples=50), progress=said.append)
    assert new.run_id != old.run_id and len(saved_runs(tmp_path)) == 2
    assert any("worst_case_samples: None -> 50" in line for line in said)


def test_a_run_of_every_stage_answers_for_one_of_them(tmp_path: Path) -> None:
    saved = params(tmp_path, stages=None)
    run, diff = labrun.find_saved(LAB, params(tmp_path), tmp_path / "data")
    assert run is None and diff == []  # nothing saved yet
    assert labrun.differences(params(tmp_path), saved.as_dict()) == []
    assert labrun.differences(saved, params(tmp_path).as_dict()) == ["stages: ['analytic'] -> None"]


def test_out_dir_and_reuse_saved_do_not_make_a_run_differ(tmp_path: Path) -> None:
    mine = params(tmp_path, reuse_saved=True)
    theirs = params(tmp_path / "elsewhere").as_dict()
    assert labrun.differences(mine, theirs) == []


def test_a_corrupt_newer_run_is_skipped_for_an_older_matching_one(tmp_path: Path) -> None:
    good = labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    bad = labrun.run_and_save(LAB, params(tmp_path), progress=lambda m: None)
    meta_path = tmp_path / "data" / "retry" / bad.run_id / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "frames": "lost"}))  # still the newest run
    assert results.run_dirs("retry", tmp_path / "data")[-1].name == bad.run_id
    assert latest_or_run(LAB, params(tmp_path), progress=lambda m: None).run_id == good.run_id
