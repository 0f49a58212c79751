"""The public API: every package declares ``__all__``, and README imports only from it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import perfkit

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
IMPORT = re.compile(r"^\s*from (perfkit[\w.]*) import \(?([\w\s,]+?)\)?\s*(?:#.*)?$", re.M)


def _packages() -> list[str]:
    names = ["perfkit"]
    for info in pkgutil.walk_packages(perfkit.__path__, "perfkit."):
        if info.ispkg:
            names.append(info.name)
    return names


def _readme_imports() -> list[tuple[str, str]]:
    out = []
    for match in IMPORT.finditer(README.read_text(encoding="utf-8")):
        for name in match.group(2).split(","):
            if name.strip():
                out.append((match.group(1), name.strip()))
    return out


def test_readme_has_imports_to_check() -> None:
    assert len(_readme_imports()) >= 10


@pytest.mark.parametrize("package", _packages())
def test_every_package_declares_all(package: str) -> None:
    module = importlib.import_module(package)
    assert isinstance(getattr(module, "__all__", None), list | tuple), package


@pytest.mark.parametrize("package", _packages())
def test_every_name_in_all_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        if not hasattr(module, name):  # a submodule listed in __all__
            importlib.import_module(f"{package}.{name}")
        assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize(("module", "name"), _readme_imports())
def test_readme_imports_only_from_package_roots(module: str, name: str) -> None:
    imported = importlib.import_module(module)
    assert hasattr(imported, "__path__"), f"README imports {name} from the module {module}"
    assert name in imported.__all__, f"README imports {name} from {module}, not in its __all__"


def test_importing_perfkit_loads_none_of_its_exports() -> None:
    import subprocess
    import sys

    code = "import sys, perfkit; print(sorted(m for m in sys.modules if m.startswith('perfkit')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['perfkit', 'perfkit._exports']"
