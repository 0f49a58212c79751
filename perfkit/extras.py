"""Which optional parts of perfkit this install has: the light install and the ``lab`` extra.

``pip install perfkit`` is the light install: the pytest plugin and the helpers a
test suite imports (``perfkit.lifecycle``, ``perfkit.postgres``, ``perfkit.retry``'s
connect), with psycopg, testcontainers, psutil and pytest. The notebooks, the
report and the analysis need ``pip install 'perfkit[lab]'``; a command that needs
them checks with :func:`require_lab` before it starts anything, so a light install
gets one sentence saying what to install instead of an ``ImportError`` traceback.
"""

from __future__ import annotations

import importlib.util

from perfkit.errors import LabExtraMissing

#: Import name -> distribution, for what the labs, report and analysis import.
LAB_MODULES: dict[str, str] = {
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "papermill": "papermill",
    "nbconvert": "nbconvert",
    "ipykernel": "ipykernel",
    "yaml": "pyyaml",
    "tqdm": "tqdm",
}
LAB_INSTALL = "pip install 'perfkit[lab]'"


def missing_lab_modules() -> list[str]:
    """Distributions of the ``lab`` extra that cannot be imported here (none: all there)."""
    return [dist for name, dist in LAB_MODULES.items() if importlib.util.find_spec(name) is None]


def require_lab(what: str) -> None:
    """Raise :class:`LabExtraMissing` naming ``what`` and the install command, if needed."""
    missing = missing_lab_modules()
    if missing:
        raise LabExtraMissing(
            f"{what} needs the lab extra (missing: {', '.join(missing)}): {LAB_INSTALL}"
        )
