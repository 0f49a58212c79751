"""perfkit.results: runs save atomically with metadata and load back with their dtypes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from perfkit import results
from perfkit.errors import ConfigError, PerfkitError


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "attempt": [1, 2, 3],
            "elapsed_s": [0.1, 0.25, 1.5],
            "ok": [False, False, True],
            "error": ["refused", "refused", None],
            "at": pd.to_datetime(["2026-01-01T00:00:00", "2026-01-01T00:00:01", None], utc=True),
        }
    )


def test_save_writes_run_directory_named_by_run_id(tmp_path: Path) -> None:
    run = results.save(frames={"attempts": _frame()}, experiment="retry", out_dir=tmp_path)
    assert run.path == tmp_path / "retry" / run.run_id
    assert sorted(p.name for p in run.path.iterdir()) == ["attempts.csv", "metadata.json"]


def test_loaded_frames_equal_saved_frames_with_dtypes(tmp_path: Path) -> None:
    df = _frame()
    run = results.save(frames={"attempts": df}, experiment="retry", out_dir=tmp_path)
    loaded = results.load(run.path).frames["attempts"]
    pd.testing.assert_frame_equal(loaded, df, check_dtype=True)


def test_empty_strings_and_missing_values_stay_distinct(tmp_path: Path) -> None:
    df = pd.DataFrame({"s": ["", "x", None], "n": [1.0, None, 3.0], "q": ['a,"b"', "c\nd", ""]})
    run = results.save(frames={"f": df}, experiment="e", out_dir=tmp_path)
    loaded = results.load(run.path).frames["f"]
    assert loaded["s"].tolist()[:2] == ["", "x"] and pd.isna(loaded["s"][2])
    assert loaded["n"].isna().tolist() == [False, True, False]
    assert loaded["q"].tolist() == ['a,"b"', "c\nd", ""]


def test_runs_written_by_format_1_still_load(tmp_path: Path) -> None:
    run_dir = tmp_path / "e" / "20260101T000000Z-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "f.csv").write_text("a,b\n1,\n,x\n")
    meta = {
        "run_id": run_dir.name,
        "format_version": 1,
        "frames": {"f": {"file": "f.csv", "rows": 2, "dtypes": {"a": "float64", "b": "object"}}},
    }
    (run_dir / "metadata.json").write_text(json.dumps(meta))
    loaded = results.load(run_dir).frames["f"]
    assert loaded["a"].isna().tolist() == [False, True]
    assert loaded["b"].tolist() == [None, "x"]


def test_empty_frame_round_trips(tmp_path: Path) -> None:
    run = results.save(frames={"none": pd.DataFrame()}, experiment="x", out_dir=tmp_path)
    assert results.load(run.path).frames["none"].empty


def test_metadata_records_run_times_git_machine_packages_params_and_seed(tmp_path: Path) -> None:
    run = results.save(
        frames={"a": _frame()}, experiment="retry", params={"n": 3}, seed=42, out_dir=tmp_path
    )
    meta = results.load(run.path).metadata
    assert meta == run.metadata
    assert meta["run_id"] == run.run_id and meta["experiment"] == "retry"
    assert meta["started_at"] <= meta["finished_at"]
    assert meta["finished_at"].endswith("+00:00")
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["machine"]["cpu_count"] == os.cpu_count()
    assert meta["machine"]["memory_bytes"] > 0
    assert meta["packages"]["pandas"] == pd.__version__
    assert meta["python"]["version"]
    assert meta["params"] == {"n": 3} and meta["seed"] == 42
    assert meta["server"] is None


def test_git_info_is_none_outside_a_repository(tmp_path: Path) -> None:
    assert results.git_info(tmp_path) == {"commit": None, "dirty": None}


def test_git_info_reports_commit_of_this_repository() -> None:
    info = results.git_info(Path(__file__).parent)
    assert info["commit"] is not None and len(info["commit"]) == 40
    assert isinstance(info["dirty"], bool)


def test_passwords_in_params_and_server_description_are_masked(tmp_path: Path) -> None:
    class FakeServerDescription:  # only describe() is used; a real server is covered in notebooks
        def describe(self) -> dict[str, Any]:
            return {"backend": "external", "dsn": "postgresql://u:s3cret@127.0.0.1:5/db"}

    run = results.save(
        frames={},
        experiment="retry",
        params={"dsn": "host=127.0.0.1 password=s3cret", "nested": ["postgres://a:s3cret@h/d"]},
        server=FakeServerDescription(),
        out_dir=tmp_path,
    )
    text = (run.path / "metadata.json").read_text()
    assert "s3cret" not in text
    assert json.loads(text)["params"]["dsn"] == "host=127.0.0.1 password=***"
    assert json.loads(text)["server"]["dsn"] == "postgresql://u:***@127.0.0.1:5/db"


def test_server_describe_of_a_real_server_lands_in_metadata(tmp_path: Path, pg_server) -> None:
    run = results.save(frames={}, experiment="x", server=pg_server, out_dir=tmp_path)
    assert run.metadata["server"]["backend"] == pg_server.backend
    assert run.metadata["server"]["server_version"]
    assert pg_server.dsn not in (run.path / "metadata.json").read_text()


def test_failed_write_leaves_no_run_directory(tmp_path: Path) -> None:
    class Exploding(pd.DataFrame):
        def to_csv(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        results.save(
            frames={"ok": _frame(), "bad": Exploding(_frame())}, experiment="e", out_dir=tmp_path
        )
    assert list((tmp_path / "e").iterdir()) == []
    assert results.run_dirs("e", tmp_path) == []


def test_process_killed_mid_write_leaves_no_visible_run(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os
        import pandas as pd
        from perfkit import results

        class DiesWhileWriting(pd.DataFrame):
            def to_csv(self, path, **kwargs):
                with open(path, "w") as fh:
                    fh.write("a,b\\n1,")
                    fh.flush()
                os._exit(9)  # the process dies here: no cleanup, no exception handlers

        results.save(
            frames={{"ok": pd.DataFrame({{"a": [1]}}), "z": DiesWhileWriting({{"a": [1]}})}},
            experiment="e",
            out_dir={str(tmp_path)!r},
        )
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    leftovers = list((tmp_path / "e").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-")  # half-written, hidden
    assert results.run_dirs("e", tmp_path) == []
    with pytest.raises(PerfkitError, match="no runs of experiment 'e'"):
        results.latest("e", tmp_path)


def test_half_written_temporary_directory_is_invisible_to_loaders(tmp_path: Path) -> None:
    done = results.save(frames={"a": _frame()}, experiment="e", out_dir=tmp_path)
    crashed = tmp_path / "e" / ".tmp-20991231T000000Z-ffffff-abc"
    crashed.mkdir()
    (crashed / "a.csv").write_text("attempt\n1\n")
    assert results.latest("e", tmp_path).run_id == done.run_id
    assert list(results.load_all("e", tmp_path)["a"]["run_id"].unique()) == [done.run_id]


def test_latest_returns_the_last_finished_run(tmp_path: Path) -> None:
    first = results.save(frames={"a": _frame()}, experiment="e", out_dir=tmp_path)
    second = results.save(frames={"a": _frame()}, experiment="e", out_dir=tmp_path)
    assert first.run_id != second.run_id
    assert results.latest("e", tmp_path).run_id == second.run_id


def test_latest_without_runs_raises_naming_the_experiment(tmp_path: Path) -> None:
    with pytest.raises(PerfkitError, match="no runs of experiment 'pool'"):
        results.latest("pool", tmp_path)


def test_load_all_concatenates_runs_with_run_id_column(tmp_path: Path) -> None:
    ids = [results.save(frames={"a": _frame()}, experiment="e", out_dir=tmp_path).run_id]
    ids.append(results.save(frames={"a": _frame()}, experiment="e", out_dir=tmp_path).run_id)
    merged = results.load_all("e", tmp_path)["a"]
    assert len(merged) == 6
    assert list(merged["run_id"].unique()) == ids


def test_load_of_a_non_run_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(PerfkitError, match="not a perfkit run"):
        results.load(tmp_path)


def test_frame_names_must_be_file_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"frame name '\.\./x'"):
        results.save(frames={"../x": _frame()}, experiment="e", out_dir=tmp_path)
