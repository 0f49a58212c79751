"""The notebooks open in a real JupyterLab: served, with their kernel, on loopback only."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from perfkit.postgres.local import free_port

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_connection_retry.ipynb"

pytestmark = pytest.mark.notebook


@dataclass(frozen=True)
class Lab:
    url: str
    token: str
    process: subprocess.Popen[bytes]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
        is_json = response.headers.get_content_type() == "application/json"
        return json.loads(raw) if raw and is_json else raw


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path_factory.mktemp("jupyter")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jupyter"),
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={ROOT}",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(home), "JUPYTER_CONFIG_DIR": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Lab(f"http://127.0.0.1:{port}", token, process)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                server.call("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not come up (exit code {process.poll()})")
                time.sleep(0.3)
        yield server
    finally:
        try:
            children = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()


def test_lab_serves_the_notebook_with_its_parameters_cell(lab: Lab) -> None:
    model = lab.call("GET", f"/api/contents/{NOTEBOOK}")
    code = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"]["tags"]


def test_lab_page_for_the_notebook_loads(lab: Lab) -> None:
    page = lab.call("GET", f"/lab/tree/{NOTEBOOK}")
    assert b"JupyterLab" in page


def test_the_notebooks_kernel_starts_in_the_lab_and_is_removed_with_its_session(lab: Lab) -> None:
    kernel_name = lab.call("GET", f"/api/contents/{NOTEBOOK}")["content"]["metadata"]["kernelspec"][
        "name"
    ]
    assert kernel_name in lab.call("GET", "/api/kernelspecs")["kernelspecs"]
    session = lab.call(
        "POST",
        "/api/sessions",
        {"path": NOTEBOOK, "type": "notebook", "kernel": {"name": kernel_name}},
    )
    kernel_id = session["kernel"]["id"]
    try:
        state = lab.call("GET", f"/api/kernels/{kernel_id}")["execution_state"]
        assert state in {"starting", "idle", "busy"}
    finally:
        lab.call("DELETE", f"/api/sessions/{session['id']}")
    assert kernel_id not in {k["id"] for k in lab.call("GET", "/api/kernels")}


def test_the_lab_has_the_widget_manager_the_what_if_sliders_need(lab: Lab) -> None:
    page = lab.call("GET", f"/lab/tree/{NOTEBOOK}").decode()
    # JupyterLab lists its prebuilt (federated) extensions in the page's config
    assert "@jupyter-widgets/jupyterlab-manager" in page
