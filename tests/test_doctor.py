"""`perfkit doctor` explains which backends work here."""

from __future__ import annotations

import subprocess
import sys

from perfkit.doctor import check_local


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
