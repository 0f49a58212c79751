"""Build a PostgreSQL Docker image from binaries on this machine, with no registry.

Many CI networks (and this project's machines) reach no image registry. This
module packs the local PostgreSQL installation — binaries, the shared
libraries ``ldd`` names, the share directory, time zone data, ``/bin/sh`` and
an entrypoint — into a root filesystem tar and ``docker import``s it. The
entrypoint honours POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB and
``postgres -c name=value`` arguments like the official image, and ``sh`` and
``psql`` are present, so testcontainers' PostgresContainer runs it unchanged.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from perfkit.errors import BackendUnavailable
from perfkit.postgres.binaries import PgBinaries, find_binaries
from perfkit.postgres.docker import LOCAL_IMAGE, docker_client

POSTGRES_UID = 999
SHELL_TOOLS = ("/bin/sh", "/bin/rm", "/bin/cat", "/bin/mkdir")
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n"
)
GROUP = "root:x:0:\npostgres:x:999:\n"

ENTRYPOINT = """#!/bin/sh
# perfkit's PostgreSQL entrypoint: the official image's contract, minimal.
set -e
export PATH="{bindir}:/bin:/usr/bin"
: "${{POSTGRES_USER:=postgres}}"
: "${{POSTGRES_DB:=$POSTGRES_USER}}"
: "${{PGDATA:=/var/lib/postgresql/data}}"
export PGDATA
if [ "${{1#-}}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ]; then
  shift
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ]; then
      echo "error: POSTGRES_PASSWORD must be set" >&2
      exit 1
    fi
    umask 077
    printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/pwfile --auth-host=scram-sha-256 \\
      --auth-local=trust -E UTF8 --locale=C --no-sync > /dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
      echo "CREATE DATABASE \\"$POSTGRES_DB\\";" \\
        | postgres --single -D "$PGDATA" postgres > /dev/null
    fi
    echo "perfkit entrypoint: initialised $PGDATA"
  fi
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
"""


def _pg_config(binaries: PgBinaries, flag: str) -> Path | None:
    for tool in (binaries.bindir / "pg_config", Path("/usr/bin/pg_config")):
        if not tool.exists():
            continue
        try:
            out = subprocess.run([str(tool), "--bindir", flag], capture_output=True, text=True)
        except OSError:
            continue
        lines = out.stdout.split()
        if len(lines) == 2 and Path(lines[0]).resolve() == binaries.bindir.resolve():
            return Path(lines[1])
    return None


def share_dir(binaries: PgBinaries) -> Path:
    major = binaries.version.split(".")[0]
    candidates = [
        _pg_config(binaries, "--sharedir"),
        Path(f"/usr/share/postgresql/{major}"),
        binaries.bindir.parent / "share" / "postgresql",
        binaries.bindir.parent / "share",
    ]
    for path in candidates:
        if path and (path / "postgres.bki").exists():
            return path
    raise BackendUnavailable(
        f"cannot find the share directory (postgres.bki) for {binaries.bindir}"
    )


def pkglib_dir(binaries: PgBinaries) -> Path:
    candidates = [
        _pg_config(binaries, "--pkglibdir"),
        binaries.bindir.parent / "lib" / "postgresql",
        binaries.bindir.parent / "lib",
    ]
    for path in candidates:
        if path and (path / "plpgsql.so").exists():
            return path
    raise BackendUnavailable(
        f"cannot find the library directory (plpgsql.so) for {binaries.bindir}"
    )


def shared_libraries(files: Iterable[Path]) -> set[Path]:
    """Every shared library ``ldd`` says the given executables and libraries load."""
    libs: set[Path] = set()
    pattern = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")
    for path in files:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            match = pattern.search(line)
            if match:
                libs.add(Path(match.group(1)))
    return libs


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755, uid: int = 0) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, uid
    info.mtime = int(time.time())
    tar.addfile(info)


def _add_path(tar: tarfile.TarFile, path: Path, added: set[str]) -> None:
    """Add a file (following symlinks, stored under the name asked for) or a tree."""
    name = str(path).lstrip("/")
    if name in added or not path.exists():
        return
    added.add(name)
    if path.is_dir():
        tar.add(str(path), arcname=name, recursive=False)
        for child in sorted(path.iterdir()):
            if child.name != "bitcode":  # LLVM JIT bitcode: large and not needed
                _add_path(tar, child, added)
        return
    info = tar.gettarinfo(str(path.resolve()), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with open(path.resolve(), "rb") as fh:
        tar.addfile(info, fh)


def write_rootfs(binaries: PgBinaries, out: Path) -> int:
    """Write the image's root filesystem tar to ``out``; return the number of entries."""
    share, pkglib = share_dir(binaries), pkglib_dir(binaries)
    executables = [p for p in binaries.bindir.iterdir() if _is_elf(p)]
    tools = [Path(p) for p in SHELL_TOOLS if Path(p).exists()]
    if not any(str(p) == "/bin/sh" for p in tools):
        raise BackendUnavailable("/bin/sh is missing on this machine; it is needed in the image")
    if not (binaries.bindir / "psql").exists():
        raise BackendUnavailable(
            f"psql is missing from {binaries.bindir}; testcontainers' readiness probe needs it"
        )
    modules = list(pkglib.glob("*.so"))
    libs = shared_libraries([*executables, *tools, *modules])
    added: set[str] = set()
    with tarfile.open(out, "w") as tar:
        for directory in ("/tmp",):
            _add_dir(tar, directory, 0o1777)
        for directory in ("/etc", "/var", "/var/lib", "/var/run", "/usr", "/usr/share"):
            _add_dir(tar, directory)
            added.add(directory.lstrip("/"))
        _add_dir(tar, "/var/lib/postgresql", 0o755, POSTGRES_UID)
        _add_dir(tar, "/var/lib/postgresql/data", 0o700, POSTGRES_UID)
        _add_dir(tar, "/var/run/postgresql", 0o2775, POSTGRES_UID)
        _add_bytes(tar, "/etc/passwd", PASSWD.encode())
        _add_bytes(tar, "/etc/group", GROUP.encode())
        entry = ENTRYPOINT.format(bindir=binaries.bindir)
        _add_bytes(tar, "/usr/local/bin/docker-entrypoint.sh", entry.encode(), 0o755)
        for path in [*tools, *sorted(libs)]:
            _add_path(tar, path, added)
        for tree in (binaries.bindir, pkglib, share, Path("/usr/share/zoneinfo")):
            _add_path(tar, tree, added)
        return len(tar.getmembers())


def build_image(tag: str = LOCAL_IMAGE, bindir: str | None = None) -> str:
    """Build and tag the image; return its id. Raises BackendUnavailable with a reason."""
    binaries = find_binaries(bindir)
    client = docker_client()
    major = binaries.version.split(".")[0]
    changes = [
        "USER 999",
        "ENV PGDATA=/var/lib/postgresql/data",
        f"ENV PATH={binaries.bindir}:/bin:/usr/bin",
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["postgres"]',
        "EXPOSE 5432",
        f'LABEL perfkit.postgres-version="{binaries.version}" perfkit.source="{binaries.source}"',
    ]
    repository, _, version_tag = tag.rpartition(":") if ":" in tag else (tag, "", "latest")
    with tempfile.TemporaryDirectory(prefix="perfkit-image-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        write_rootfs(binaries, rootfs)
        client.api.import_image_from_file(
            str(rootfs), repository=repository, tag=version_tag, changes=changes
        )
    image = client.images.get(tag)
    image.tag(repository, f"{major}-local")
    return str(image.id)


def cli(argv: list[str] | None = None) -> int:
    """``perfkit image build``: build the air-gapped image and say how to use it."""
    parser = argparse.ArgumentParser(prog="perfkit image build")
    parser.add_argument("--tag", default=LOCAL_IMAGE, help=f"image tag (default {LOCAL_IMAGE})")
    parser.add_argument("--bindir", default=None, help="PostgreSQL bindir to pack")
    args = parser.parse_args(argv)
    started = time.monotonic()
    image_id = build_image(args.tag, args.bindir)
    print(
        f"built {args.tag} ({image_id[:19]}) in {time.monotonic() - started:.1f} s; "
        f"the docker backend uses it when no official postgres image is present "
        f"(or set PERFKIT_DOCKER_IMAGE={args.tag})"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli())
