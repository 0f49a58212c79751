"""`perfkit doctor` explains which backends work here."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from perfkit import doctor
from perfkit.doctor import check_local
from perfkit.postgres import PostgresServer


def test_local_backend_is_reported_with_its_binaries() -> None:
    status = check_local()
    assert status.usable
    assert "PostgreSQL" in status.detail and "/" in status.detail


def test_doctor_names_every_backend_and_the_auto_choice() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "perfkit.doctor"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for word in ("docker", "local", "external", "auto ->"):
        assert word in result.stdout


def test_doctor_fails_when_no_backend_is_usable() -> None:
    env = {
        "PATH": "/nonexistent",
        "PERFKIT_PG_BINDIR": "/nonexistent",
        "DOCKER_HOST": "unix:///nonexistent.sock",
    }
    result = subprocess.run(
        [sys.executable, "-m", "perfkit.doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "no backend is usable" in result.stdout


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.local
def test_doctor_dsn_of_a_running_server_says_it_answers_with_the_password_masked(
    pg_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = doctor.main(["--dsn", pg_server.dsn])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if "external" in line)
    assert line.startswith("ok  external") and f"PostgreSQL {pg_server.server_version()}" in line
    assert pg_server.settings.password not in out and "***" in line


def test_doctor_dsn_that_does_not_answer_exits_1_naming_where_it_tried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _free_loopback_port()
    code = doctor.main(["--dsn", f"postgresql://me:s3cret-pw@127.0.0.1:{port}/db"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(line for line in out.splitlines() if "external" in line)
    assert line.startswith("no  external") and f"127.0.0.1:{port} does not answer" in line
    assert "s3cret-pw" not in out


def test_doctor_refuses_a_dsn_that_is_not_loopback_before_checking_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = doctor.main(["--dsn", "postgresql://me:s3cret-pw@0.0.0.0:5432/db"])
    captured = capsys.readouterr()
    assert code == 2
    assert "--dsn: host '0.0.0.0'" in captured.err and "not a loopback address" in captured.err
    assert captured.out == ""  # no backend was checked
    assert "s3cret-pw" not in captured.err


# Every option a doctor hint names exists where the hint says.

BACKTICKED = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"(?<![\w-])--[a-z][\w-]*")
BARE = re.compile(r"([\w.-]*)\s+(--[a-z][\w-]*)")  # an option outside backticks and the word before
FOREIGN = {"pg_config", "docker", "dockerd", "systemctl", "apt-get", "pip", "psql"}


def _doctor_outputs(tmp_path: Path) -> str:
    """doctor's output with everything usable, nothing usable, a missing image, a dead DSN."""
    dead = f"postgresql://me@127.0.0.1:{_free_loopback_port()}/db"
    runs = [
        ([], {}),
        ([], {"PATH": "/nonexistent", "PERFKIT_PG_BINDIR": "/nonexistent"}),
        ([], {"DOCKER_HOST": "unix:///nonexistent.sock"}),
        ([], {"PERFKIT_DOCKER_IMAGE": "perfkit/absent:none"}),
        (["--dsn", dead], {}),
    ]
    outputs = []
    for args, env in runs:
        result = subprocess.run(
            [sys.executable, "-m", "perfkit.doctor", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **env},
            cwd=tmp_path,
        )
        outputs.append(result.stdout + result.stderr)
    return "\n".join(outputs)


def _help(command: list[str], tmp_path: Path) -> str:
    """The --help of a command a hint names: ``perfkit ...`` or ``pytest``."""
    if command[0] == "pytest":
        return subprocess.run(
            [sys.executable, "-m", "pytest", "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            check=True,
        ).stdout
    words = [w for w in command[1:] if not w.startswith("-")]
    result = subprocess.run(
        [sys.executable, "-m", "perfkit.cli", *words, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, (
        f"`{' '.join(command)}` names no perfkit command: {result.stderr}"
    )
    return result.stdout


def test_every_option_a_doctor_hint_names_exists_in_that_commands_parser(tmp_path: Path) -> None:
    text = _doctor_outputs(tmp_path)
    checked = []
    for span in BACKTICKED.findall(text):
        command = shlex.split(span)
        if command[0] not in ("perfkit", "pytest"):
            continue  # another tool's command (`pg_config --bindir`, `docker pull ...`)
        usage = _help(command, tmp_path)
        for option in OPTION.findall(span):
            assert option in OPTION.findall(usage), f"`{span}`: {command[:3]} has no {option}"
            checked.append(option)
    doctor_help = _help(["perfkit", "doctor"], tmp_path)
    for tool, option in BARE.findall(BACKTICKED.sub("", text)):
        if tool in FOREIGN:
            continue  # e.g. "(pg_config --bindir)": where the binaries were found
        assert option in OPTION.findall(doctor_help), f"doctor names {option}, which it lacks"
    assert {"--dsn", "--perfkit-dsn", "--tag"} <= set(checked)
