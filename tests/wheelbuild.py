"""Build perfkit's wheel and install it into fresh venvs, as a user of the package would.

pip resolves the dependencies from the configured index (pip.conf here: local
mirrors and wheel folders), never from this checkout's venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Distributions only the lab extra brings; a light install has none of them.
LAB_ONLY = ("pandas", "numpy", "matplotlib", "jupyterlab", "ipykernel", "papermill", "dask")


def clean_env(bindir: Path | None = None) -> dict[str, str]:
    """``os.environ`` without the outer pytest's, venv's and checkout's variables.

    (With ``PYTHONPATH`` pointing at a checkout, pip would take its ``perfkit.egg-info``
    for an installed perfkit.) ``bindir`` goes first on ``PATH``.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "VIRTUAL_ENV", "PERFKIT_DSN", "PYTHONPATH"))
    }
    if bindir is not None:
        env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    return env


def build_wheel(root: Path) -> Path:
    """``perfkit-*.whl`` built from this checkout into ``root/dist``."""
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
        check=True,
        cwd=root,  # build/ goes here, not into the checkout
    )
    (wheel,) = dist.glob("perfkit-*.whl")
    return wheel


@dataclass(frozen=True)
class Installed:
    """A venv holding the wheel: its ``bin`` folder and how long pip took."""

    bindir: Path
    seconds: float

    @property
    def root(self) -> Path:
        return self.bindir.parent

    def size_bytes(self) -> int:
        """Bytes of every file in the venv (pip and setuptools included)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def distributions(self) -> list[str]:
        out = subprocess.run(
            [self.bindir / "python", "-m", "pip", "list", "--format=freeze"],
            capture_output=True,
            text=True,
            check=True,
            env=self.env(),
        ).stdout
        return [line.split("==")[0].lower() for line in out.splitlines() if "==" in line]

    def env(self) -> dict[str, str]:
        """The environment for commands of this venv (no outer pytest or venv variables)."""
        return clean_env(self.bindir)


def install(wheel: Path, env_dir: Path, *, extras: str = "") -> Installed:
    """A fresh venv at ``env_dir`` with ``wheel`` (``extras`` like ``lab``) and its dependencies."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / "bin"
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    t0 = time.perf_counter()
    subprocess.run(
        [bindir / "python", "-m", "pip", "install", "-q", target], check=True, env=clean_env()
    )
    return Installed(bindir, time.perf_counter() - t0)
