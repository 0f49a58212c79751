"""Find PostgreSQL server binaries (initdb, postgres) on this machine.

Search order: an explicit bindir (setting or ``PERFKIT_PG_BINDIR``),
``pg_config --bindir``, Debian/Ubuntu's ``/usr/lib/postgresql/*/bin`` (newest
first), the binaries shipped in the ``pgserver`` wheel, then ``PATH``.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from perfkit.errors import BackendUnavailable

REQUIRED = ("initdb", "postgres")


@dataclass(frozen=True)
class PgBinaries:
    """A directory holding ``initdb`` and ``postgres``, and where it was found."""

    bindir: Path
    source: str
    version: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def has_library(self, name: str) -> bool:
        """Whether the server can load the module ``name`` (``<pkglibdir>/name.so``)."""
        root = self.bindir.parent
        dirs = (root / "lib", root / "lib" / "postgresql", root / "lib64" / "postgresql")
        return any((d / f"{name}.so").is_file() for d in dirs)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in REQUIRED)


def _version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    return match.group(1) if match else out.strip()


def _candidates() -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                found.append((Path(out), "pg_config --bindir"))
        except (OSError, subprocess.SubprocessError):
            pass

    def major(path: str) -> float:
        name = Path(path).parent.name
        return float(name) if re.fullmatch(r"\d+(\.\d+)?", name) else 0.0

    for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        found.append((Path(path), "/usr/lib/postgresql"))
    # Located without importing: importing pgserver has side effects (warnings, dirs).
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        found.append((Path(spec.origin).parent / "pginstall" / "bin", "pgserver wheel"))
    initdb = shutil.which("initdb")
    if initdb:
        found.append((Path(os.path.realpath(initdb)).parent, "PATH"))
    return found


def find_binaries(bindir: str | None = None) -> PgBinaries:
    """Locate server binaries or raise BackendUnavailable saying where we looked."""
    explicit = bindir or os.environ.get("PERFKIT_PG_BINDIR")
    if explicit:
        path = Path(explicit)
        if not _has_server(path):
            raise BackendUnavailable(
                f"no PostgreSQL server binaries (initdb, postgres) in bindir {explicit!r}; "
                "point bindir/PERFKIT_PG_BINDIR at the directory `pg_config --bindir` prints"
            )
        return PgBinaries(path, "bindir setting", _version(path))
    looked = []
    for path, source in _candidates():
        looked.append(f"{path} ({source})")
        if _has_server(path):
            return PgBinaries(path, source, _version(path))
    raise BackendUnavailable(
        "no PostgreSQL server binaries found (looked in: "
        + (", ".join(looked) or "pg_config, /usr/lib/postgresql/*/bin, pgserver, PATH")
        + "). Install them (`pip install pgserver`, or apt-get install postgresql) "
        "or set PERFKIT_PG_BINDIR."
    )


def find_tool(name: str, bindir: str | None = None, *, install_hint: str = "") -> Path:
    """Locate a PostgreSQL client program (e.g. ``pgbench``) or raise BackendUnavailable.

    With ``bindir`` only that directory is searched. Otherwise the server-binary
    search order above is used (``PERFKIT_PG_BINDIR``, ``pg_config --bindir``,
    ``/usr/lib/postgresql/*/bin``, the pgserver wheel), then ``PATH``.
    """
    hint = install_hint or "apt-get install postgresql-client"
    if bindir:
        path = Path(bindir) / name
        if os.access(path, os.X_OK) and path.is_file():
            return path
        raise BackendUnavailable(f"no {name} in bindir {bindir!r}; install it ({hint})")
    candidates: list[tuple[Path, str]] = []
    explicit = os.environ.get("PERFKIT_PG_BINDIR")
    if explicit:
        candidates.append((Path(explicit), "PERFKIT_PG_BINDIR"))
    candidates += _candidates()
    looked = []
    for directory, source in candidates:
        path = directory / name
        looked.append(f"{directory} ({source})")
        if os.access(path, os.X_OK) and path.is_file():
            return path
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    looked.append("PATH")
    raise BackendUnavailable(
        f"{name} not found (looked in: {', '.join(looked)}). Install it ({hint}) "
        "or pass the directory holding it as bindir."
    )
