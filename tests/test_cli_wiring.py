"""The `perfkit` console script: subcommands, pass-through to doctor / image build, exit codes."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import perfkit
from perfkit import cli
from perfkit.cli import main

PERFKIT = Path(sys.executable).parent / "perfkit"


def test_console_script_lists_subcommands() -> None:
    out = subprocess.run([str(PERFKIT), "--help"], capture_output=True, text=True, check=True)
    for command in ("run", "report", "compare", "sweep", "doctor", "image"):
        assert command in out.stdout


def test_doctor_subcommand_runs_the_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    assert code in (0, 1)
    assert "local" in capsys.readouterr().out


def test_doctor_options_are_passed_through(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--help"])
    assert info.value.code == 0
    assert "--sweep" in capsys.readouterr().out


def test_image_build_options_are_passed_through(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["image", "build", "--help"])
    assert info.value.code == 0
    assert "--bindir" in capsys.readouterr().out


def test_unknown_option_of_other_commands_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", "a", "b", "--bogus"])
    assert info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_perfkit_errors_exit_2_with_the_message_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert "neither a results run directory" in capsys.readouterr().err


def test_version_prints_the_installed_version() -> None:
    out = subprocess.run([str(PERFKIT), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"perfkit {metadata.version('perfkit')}\n"


def test_version_falls_back_to_the_package_version_when_perfkit_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli.version() == perfkit.__version__


def test_doctor_dsn_is_passed_through_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--dsn", "postgresql://me@0.0.0.0:5432/db"]) == 2
    assert "--dsn: host '0.0.0.0'" in capsys.readouterr().err


def test_image_build_options_with_values_reach_image_build_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:  # argparse stops at the unknown option, after --tag
        main(["image", "build", "--tag", "perfkit/x:y", "--no-such-option"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err
