"""Make sure every server perfkit starts is removed: on exit, on SIGTERM and on SIGINT.

Live servers register themselves here. ``atexit`` stops whatever is still
registered, and SIGTERM/SIGHUP are turned into ``SystemExit`` so that
``finally`` blocks and context managers run (SIGINT already raises
``KeyboardInterrupt``). What a hard kill (SIGKILL) leaves behind is found by
:func:`perfkit.postgres.leaks.sweep`: containers carry labels naming the owning process, local data
directories a marker file with the owner's PID.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from perfkit.postgres.base import PostgresServer

log = logging.getLogger(__name__)

#: Docker label set on every container perfkit starts; its value is the owning PID.
OWNER_LABEL = "perfkit.owner-pid"
#: Prefix of every temporary directory a local server lives in.
TEMPDIR_PREFIX = "perfkit-pg-"
OWNER_FILE = "perfkit-owner.pid"
#: Prefix of a PgBouncer's private directory; it starts with TEMPDIR_PREFIX so that
#: :func:`owned_tempdirs` (and so every sweep and leak check) finds it too.
BOUNCER_PREFIX = TEMPDIR_PREFIX + "bouncer-"
#: Where in-memory data directories go (``ServerSettings.ram``) when the machine has it.
RAM_ROOT = Path("/dev/shm")


class Stoppable(Protocol):
    """Anything perfkit runs beside a server (e.g. a PgBouncer) that must be stopped too."""

    def stop(self) -> None: ...


_live: dict[int, PostgresServer] = {}
#: Components in front of servers; stopped before the servers on exit.
_components: dict[int, Stoppable] = {}
_lock = threading.Lock()
_installed = False


def register(server: PostgresServer) -> None:
    _install_handlers()
    with _lock:
        _live[id(server)] = server


def unregister(server: PostgresServer) -> None:
    with _lock:
        _live.pop(id(server), None)


def register_component(component: Stoppable) -> None:
    """Stop ``component`` on exit and on SIGTERM/SIGHUP, like a server (before the servers)."""
    _install_handlers()
    with _lock:
        _components[id(component)] = component


def unregister_component(component: Stoppable) -> None:
    with _lock:
        _components.pop(id(component), None)


def live_components() -> list[Stoppable]:
    with _lock:
        return list(_components.values())


def live_servers() -> list[PostgresServer]:
    with _lock:
        return list(_live.values())


def stop_all() -> None:
    """Stop every component, then every server still registered (best effort, logged)."""
    for server in [*live_components(), *live_servers()]:
        try:
            server.stop()
        except Exception:  # keep going: the others must be stopped too
            log.exception("could not stop %r", server)


def _raise_system_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(stop_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _raise_system_exit)


def ram_root() -> Path | None:
    """``/dev/shm`` when it is a writable directory here, else None."""
    return RAM_ROOT if RAM_ROOT.is_dir() and os.access(RAM_ROOT, os.W_OK) else None


def temp_roots() -> list[Path]:
    """Every directory perfkit puts server data directories in."""
    roots = [Path(tempfile.gettempdir())]
    ram = ram_root()
    if ram is not None and ram.resolve() != roots[0].resolve():
        roots.append(ram)
    return roots


def owned_tempdirs() -> list[Path]:
    """perfkit's temporary data directories (``perfkit-pg-*``) in every root."""
    return [path for root in temp_roots() for path in root.glob(TEMPDIR_PREFIX + "*")]


def owner_of(tempdir: Path) -> int | None:
    """The PID in a data directory's owner file, or None when there is none to read."""
    try:
        return int((tempdir / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
