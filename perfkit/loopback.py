"""The loopback guard: refuse any DSN that libpq would send anywhere but this machine.

perfkit only talks to servers on loopback addresses (127.0.0.0/8, ::1,
``localhost``) or unix sockets. libpq chooses where to connect from more than
a DSN's ``host``, and the guard reads every one of those inputs, in libpq's
own order of precedence (``conninfo_add_defaults`` in libpq's fe-connect.c):

1. the DSN itself, parsed by libpq (``host`` and ``hostaddr`` lists, a URL's
   authority and its ``?host=`` / ``?hostaddr=`` query, which win over the
   authority);
2. the connection service (``service=`` in the DSN, else ``PGSERVICE``), read
   from ``PGSERVICEFILE`` or ``~/.pg_service.conf``, then
   ``$PGSYSCONFDIR/pg_service.conf``; it fills only what the DSN left out;
3. the environment: ``PGHOST``, ``PGHOSTADDR``, ``PGPORT`` fill what is still
   missing.

When ``hostaddr`` is set libpq connects to it and uses ``host`` only to check
certificates and find passwords, so both must be local. Host names other than
``localhost`` are refused without being resolved (resolving one is already
traffic). A service the guard cannot find is refused: its target is unknown.

The guard never connects, and it raises from a frame that holds no password,
so a refused DSN's secret cannot reach a traceback (see
:class:`perfkit.dsn.SecretDsn`).
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from perfkit.dsn import SecretDsn, mask
from perfkit.errors import ConfigError

__all__ = ["Targets", "check_environment", "check_loopback", "targets"]

#: Host names accepted without resolving them ("" is libpq's default: a unix socket).
LOOPBACK_NAMES = frozenset({"localhost", ""})
#: The connection parameters that choose where libpq connects, and their variables.
ROUTING = {"host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT"}
SERVICE_FILE = ".pg_service.conf"


@dataclass(frozen=True)
class Targets:
    """Where libpq would connect for one DSN, and which input named each value."""

    host: str
    hostaddr: str
    port: str
    #: ``{"host": "the DSN" | "service 'x' in <file>" | "PGHOST", ...}``
    sources: Mapping[str, str]

    def describe(self) -> str:
        """``host:port`` (``via hostaddr``) for messages; never includes a secret."""
        where = f"{self.host or 'localhost'}:{self.port or '5432'}"
        return f"{where} via hostaddr {self.hostaddr}" if self.hostaddr else where


def _parse(dsn: str) -> dict[str, str]:
    import psycopg  # here, not at the top: settings without a DSN never load it
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = mask(str(exc))
    else:
        # Only what routes the connection: no password stays in this or a caller's frame.
        return {k: str(params[k]) for k in (*ROUTING, "service") if params.get(k) is not None}
    raise ConfigError(f"invalid DSN {mask(dsn)!r}: {reason}")


def _service_files(environ: Mapping[str, str]) -> list[Path]:
    files = []
    if environ.get("PGSERVICEFILE"):
        files.append(Path(environ["PGSERVICEFILE"]))
    elif environ.get("HOME"):
        files.append(Path(environ["HOME"]) / SERVICE_FILE)
    if environ.get("PGSYSCONFDIR"):
        files.append(Path(environ["PGSYSCONFDIR"]) / "pg_service.conf")
    return files


def _service(name: str, environ: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The ``[name]`` section of the first service file that has it, and where it was."""
    files = _service_files(environ)
    for path in files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        except configparser.Error as exc:
            raise ConfigError(f"service file {path} cannot be read: {exc.message}") from None
        if parser.has_section(name):
            return dict(parser.items(name)), f"service {name!r} in {path}"
    looked = ", ".join(str(p) for p in files) or "no service file (HOME and PGSERVICEFILE unset)"
    raise ConfigError(
        f"connection service {name!r} is not defined in {looked}; perfkit cannot tell where it "
        "points, so it refuses it (give host and port in the DSN instead)"
    )


def targets(dsn: str, environ: Mapping[str, str] | None = None) -> Targets:
    """Resolve where libpq would connect for ``dsn`` in ``environ`` (default: this process)."""
    dsn = SecretDsn(dsn)  # shown masked if a traceback lists this frame's arguments
    env = os.environ if environ is None else environ
    given = _parse(dsn)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key in ROUTING:
        if key in given:
            values[key], sources[key] = given[key], "the DSN"
    service = given.get("service") or env.get("PGSERVICE")
    if service:
        found, where = _service(service, env)
        for key in ROUTING:
            if key not in values and found.get(key):
                values[key], sources[key] = found[key], where
    for key, var in ROUTING.items():
        if key not in values and env.get(var):
            values[key], sources[key] = env[var], var
    return Targets(
        host=values.get("host", ""),
        hostaddr=values.get("hostaddr", ""),
        port=values.get("port", ""),
        sources=sources,
    )


def _is_local_host(host: str) -> bool:
    host = host.strip()
    if host in LOOPBACK_NAMES or host.startswith(("/", "@")):  # socket dir, abstract socket
        return True
    return _is_loopback_ip(host.strip("[]"))


def _is_loopback_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip()).is_loopback
    except ValueError:
        return False


def _refusal(found: Targets) -> str | None:
    """Why ``found`` is not local, or None when every target is."""
    for host in found.host.split(","):
        if not _is_local_host(host):
            return (
                f"host {host.strip()!r} (from {found.sources['host']}) is not a loopback "
                "address, 'localhost' or a unix socket directory"
            )
    for addr in found.hostaddr.split(","):
        if addr.strip() and not _is_loopback_ip(addr):
            return (
                f"hostaddr {addr.strip()!r} (from {found.sources['hostaddr']}) is not a "
                "loopback address; libpq would connect there whatever host says"
            )
    return None


def check_loopback(dsn: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise ConfigError unless every place libpq would connect to for ``dsn`` is local.

    ``environ`` defaults to this process's environment (the ``PG*`` variables
    libpq reads). Nothing is contacted.
    """
    dsn = SecretDsn(dsn)  # this frame's argument shows masked in any traceback
    reason = _refusal(targets(dsn, environ))
    if reason is not None:
        raise ConfigError(
            f"{reason}; perfkit only sends traffic to 127.0.0.1, ::1, localhost or a unix "
            f"socket (DSN {mask(dsn)!r})"
        )


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse a ``PGHOSTADDR`` or ``PGSERVICE`` that would redirect perfkit's own servers.

    perfkit's DSNs always name a local ``host`` and ``port``; libpq would still
    take ``hostaddr`` from the environment or a service and connect there.
    """
    reason = _refusal(targets("host=127.0.0.1 port=5432", environ))
    if reason is not None:
        raise ConfigError(
            f"{reason}: it would redirect the connections to perfkit's own servers; unset it "
            "(perfkit only sends traffic to 127.0.0.1, ::1, localhost or a unix socket)"
        )
