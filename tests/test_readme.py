"""README's pytest-plugin example works as written, in a project of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if containing in b]
    return block


@pytest.mark.local
def test_plugin_example_passes_in_a_fresh_project(tmp_path: Path) -> None:
    example = _block("python", "perfkit_db")
    (tmp_path / "pytest.ini").write_text(_block("ini", "[pytest]"))
    (tmp_path / "db").mkdir()
    schema = re.search(r"db/schema\.sql: (.*)", example)
    assert schema, "the example names its schema"
    (tmp_path / "db" / "schema.sql").write_text(schema.group(1) + "\n")
    (tmp_path / "test_users.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--perfkit-backend=local"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout
