"""`perfkit sweep`: one papermill run per grid point, results merged with the point's parameters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from perfkit import results, sweep
from perfkit.cli import main
from perfkit.errors import ConfigError

TINY = Path(__file__).parent / "notebooks" / "tiny.ipynb"


def test_points_are_the_cartesian_product_in_file_order() -> None:
    assert sweep.points({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_scalar_grid_values_count_as_one_point() -> None:
    assert sweep.normalise_grid({"a": 3, "b": [1, 2]}) == {"a": [3], "b": [1, 2]}


def test_grid_file_must_map_names_to_values(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must map parameter names"):
        sweep.load_grid(path)


def test_grid_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_bytes(b"clients: [1, 2]\nname: \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        sweep.load_grid(path)


def test_empty_value_list_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'a' has an empty list"):
        sweep.normalise_grid({"a": []})


def test_unknown_grid_parameter_fails_before_any_point_runs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown parameter xs"):
        sweep.run_sweep(TINY, {"x": [1], "xs": [2]}, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_one_ill_typed_point_fails_the_whole_sweep_before_running(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'x' expects int"):
        sweep.run_sweep(TINY, {"x": [1, 2, "three"]}, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_grid_may_not_set_out_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sets 'out_dir' itself"):
        sweep.run_sweep(TINY, {"out_dir": ["a"]}, output_dir=tmp_path)


def _check_merged(outcome: sweep.SweepOutcome, expected_points: list[dict[str, object]]) -> None:
    assert outcome.ok
    values = outcome.frames["tiny.values"]
    for i, point in enumerate(expected_points):
        rows = values[values["point"] == i]
        assert len(rows) == point["x"]
        assert set(rows["x"]) == {point["x"]}
        assert rows["value"].tolist() == [
            j * float(point.get("scale", 1.5)) for j in range(point["x"])
        ]
    merged = results.load(outcome.merged_path)
    assert merged.frames["tiny.values"].equals(values)
    assert merged.frames["points"]["ok"].tolist() == [True] * len(expected_points)


@pytest.mark.notebook
def test_local_sweep_runs_each_point_and_merges_results(tmp_path: Path) -> None:
    outcome = sweep.run_sweep(TINY, {"x": [2, 3], "scale": [1.0, 2.0]}, output_dir=tmp_path)
    _check_merged(
        outcome,
        [
            {"x": 2, "scale": 1.0},
            {"x": 2, "scale": 2.0},
            {"x": 3, "scale": 1.0},
            {"x": 3, "scale": 2.0},
        ],
    )
    assert outcome.points[0].parameters == {"x": 2, "scale": 1.0}
    assert all(Path(p.executed).is_file() for p in outcome.points)


@pytest.mark.notebook
def test_failing_point_is_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    lines: list[str] = []
    outcome = sweep.run_sweep(TINY, {"fail": [True, False]}, output_dir=tmp_path, log=lines.append)
    assert lines[0] == "[1/2] {'fail': True}" and lines[1].startswith("      FAILED in")
    assert not outcome.ok
    assert ["RuntimeError" in (p.error or "") for p in outcome.points] == [True, False]
    assert set(outcome.frames["tiny.values"]["fail"]) == {False}


@pytest.mark.notebook
def test_sweep_on_a_dask_local_cluster_by_scheduler_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text("x: [2, 3]\n")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        code = main(
            [
                "sweep",
                str(TINY),
                "--grid",
                str(grid),
                "--output-dir",
                str(tmp_path),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        assert code == 0, capsys.readouterr().err
        (worker,) = cluster.workers.values()
        computed = sorted(e[0] for e in worker.state.log if e[1] == "put-in-memory")
    assert [k.rsplit("-", 1)[-1] for k in computed] == ["000", "001"]  # both points ran on dask
    (sweep_dir,) = tmp_path.glob("sweep-*")
    merged = results.latest("sweep", sweep_dir)
    assert merged.frames["tiny.values"].groupby("x").size().to_dict() == {2: 2, 3: 3}
    assert "2 points" in capsys.readouterr().out


@pytest.mark.notebook
@pytest.mark.slow  # dask in-process runs in the default run; this one starts worker processes
def test_sweep_on_a_dask_cluster_with_worker_processes(tmp_path: Path) -> None:
    with (
        LocalCluster(
            host="127.0.0.1",
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cl,
        Client(cl) as client,
    ):
        outcome = sweep.run_sweep(TINY, {"x": [1, 2]}, output_dir=tmp_path, scheduler=client)
        worker_pids = set(client.run(os.getpid).values())
    _check_merged(outcome, [{"x": 1}, {"x": 2}])
    assert os.getpid() not in worker_pids  # the points really ran elsewhere
