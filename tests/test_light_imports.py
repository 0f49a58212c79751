"""What a test suite imports from perfkit loads none of the lab's packages.

The light install (``pip install perfkit``) has no pandas, numpy, matplotlib,
jupyter or dask; these imports must work there. Checked in a fresh interpreter
of this venv (which has them all): the names must not even be loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from perfkit.postgres import PostgresServer

LAB_PACKAGES = ("pandas", "numpy", "matplotlib", "jupyter", "ipykernel", "dask", "papermill")

SUITE_IMPORTS = """
import perfkit.lifecycle.plugin
import perfkit.lifecycle.pgenv
from perfkit.lifecycle import IsolationSession, IsolationSettings, open_session, postgresql
from perfkit.postgres import ServerSettings, create_server, reuse
from perfkit.retry import FullJitter, RetryTokenBucket, connect_with_retry
from perfkit import SecretDsn, mask
"""


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def test_what_a_suite_imports_loads_no_lab_package() -> None:
    loaded = _loaded_after(SUITE_IMPORTS)
    heavy = sorted({m for m in loaded if m.split(".")[0].startswith(LAB_PACKAGES)})
    assert heavy == []


@pytest.mark.local
def test_connect_with_retry_connects_without_loading_numpy_or_pandas(
    pg_server: PostgresServer,
) -> None:
    code = (
        "import os\n"
        "from perfkit.retry import connect_with_retry\n"
        "conn, trace = connect_with_retry(os.environ['DSN'], 'full_jitter', deadline=10)\n"
        "conn.close()\n"
        "assert trace.n_attempts >= 1\n"
    )
    env = {**os.environ, "DSN": str(pg_server.dsn)}
    probe = code + "import json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    ).stdout
    loaded = json.loads(out.splitlines()[-1])
    assert not [m for m in loaded if m.split(".")[0] in ("numpy", "pandas")]
