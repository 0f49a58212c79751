"""Make sure every server perfkit starts is removed: on exit, on SIGTERM and on SIGINT.

Live servers register themselves here. ``atexit`` stops whatever is still
registered, and SIGTERM/SIGHUP are turned into :class:`Terminated` (a
``SystemExit`` with code 128 + the signal number) in the main thread, so that
``finally`` blocks and context managers run (SIGINT already raises
``KeyboardInterrupt``). Python runs signal handlers only in the main thread
and only the main thread can install them: a program that starts servers in
other threads calls :func:`install_signal_handlers` from the main thread
first (the pytest plugin and the ``perfkit`` command do).

What a hard kill (SIGKILL) leaves behind is found by
:func:`perfkit.postgres.leaks.sweep`: containers carry labels naming the owning process, local data
directories a marker file with the owner's PID.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
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
_atexit_registered = False
#: The signals turned into an exception in the main thread (SIGINT raises KeyboardInterrupt).
SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM or SIGHUP; ``code`` is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


#: What the handler raises (the pytest plugin's exception makes pytest end the session).
_exception: Callable[[int], BaseException] = Terminated


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


def _handle_signal(signum: int, frame: FrameType | None) -> None:
    raise _exception(signum)


def install_signal_handlers(exception: Callable[[int], BaseException] | None = None) -> bool:
    """Make SIGTERM and SIGHUP raise an exception in the main thread, so that everything is removed.

    Call it from the main thread before anything that must be removed starts:
    a signal then unwinds the main thread (``finally`` blocks, context
    managers, ``atexit``) wherever it is, also while it waits for a thread
    that starts a server. ``exception(signum)`` is what is raised (default
    :class:`Terminated`; a later call without ``exception`` keeps the last
    one given). Handlers that someone else installed are left alone. Off the
    main thread no handler can be installed; only ``exception`` is recorded.
    Returns whether perfkit's handler is in place for both signals.
    """
    global _exception
    _register_atexit()
    if exception is not None:
        _exception = exception
    if threading.current_thread() is not threading.main_thread():
        return all(signal.getsignal(sig) is _handle_signal for sig in SIGNALS)
    for sig in SIGNALS:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _handle_signal)
    return all(signal.getsignal(sig) is _handle_signal for sig in SIGNALS)


def _register_atexit() -> None:
    global _atexit_registered
    with _lock:
        if not _atexit_registered:
            _atexit_registered = True
            atexit.register(stop_all)


def _install_handlers() -> None:
    """atexit, and the signal handlers when called in the main thread (see above)."""
    install_signal_handlers()


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


def make_owned_tempdir(kind: str, *, root: Path | None = None) -> Path:
    """A new ``perfkit-pg-<kind>-*`` directory with this process as its owner.

    If the process dies without removing it (SIGKILL), the next perfkit run's
    sweep (:func:`perfkit.postgres.leaks.sweep`) finds its dead owner and removes it.
    """
    path = Path(tempfile.mkdtemp(prefix=f"{TEMPDIR_PREFIX}{kind}-", dir=root))
    (path / OWNER_FILE).write_text(str(os.getpid()))
    return path


def remove_owned(tempdir: Path) -> None:
    """Remove a perfkit temp directory, its owner file last.

    An interrupted removal (a second signal, SIGKILL) then still leaves a
    directory whose owner a later sweep can read, never an orphan without one.
    """
    for child in tempdir.iterdir() if tempdir.is_dir() else ():
        if child.name == OWNER_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    shutil.rmtree(tempdir, ignore_errors=True)


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
