"""pytest plugin: clean PostgreSQL databases for each test, under a chosen isolation strategy.

Registered as the ``perfkit`` entry point (``pytest11``), so it is active in any
project that installs perfkit; it starts nothing unless a test requests one of
its fixtures, and importing it costs only pytest and the standard library.

Fixtures: ``perfkit_db`` (a psycopg connection to the test's clean database),
``perfkit_dsn`` (that database's DSN), ``perfkit_session_dsn`` (one migrated
database for the whole session, for suites that isolate themselves) and
``perfkit_session`` (the per-process
:class:`~perfkit.lifecycle.session.IsolationSession`). Options (each also an ini
key with ``-`` -> ``_``, e.g. ``perfkit_isolation = template``)::

    --perfkit-isolation=template|warm-pool|verified|rollback|truncate|per-test-server|none
    --perfkit-backend=auto|docker|local|external
    --perfkit-dsn=postgresql://...        (backend external; or env PERFKIT_DSN)
    --perfkit-migrations=schema.sql       (repeatable; applied once to the template)
    --perfkit-template-strategy=auto|file_copy|wal_log
    --perfkit-pool-size=8                 (warm-pool: most databases kept ready)
    --perfkit-clone-workers=2             (warm-pool: concurrent cloners)
    --perfkit-ram=on|off                  (data directory in memory; default on if room)
    --perfkit-reuse                       (keep server + template for the next run)
    --perfkit-keep-failed                 (keep a failed test's database, print its DSN)
    --perfkit-rollback-guard=warn|fail|off
    --perfkit-unix-socket=on|off          (local backend: socket DSNs, no password)
    --perfkit-timings=timings.json        (write per-test setup/teardown records)
    --perfkit-export-pg-env               (PGHOST, PGPORT, ... for suites that read them)
    --perfkit-stable-dsn                  (verified: one database name per worker, reset
                                           between tests; kept idle connections survive)

Marker: ``@pytest.mark.perfkit_isolation("template")`` overrides the strategy
for one test. Under pytest-xdist each worker has its own server (or, with
reuse, they share the reused one) and database names carry the worker id;
the controller merges the workers' timing records. Only when a selected test
asks for one of the fixtures (decided after collection) are the server,
template and warm pool prepared, in the background from the end of
collection on, while pytest gets ready to run the first test; a run whose
tests need no database starts and probes nothing. A strategy that cannot
serve a fixture a test asks for (``rollback`` and ``perfkit_dsn``) is one
usage error at collection naming the tests, before anything starts.

Before it starts anything the plugin makes SIGTERM and SIGHUP end the session
like Ctrl-C does (:class:`SessionTerminated`, raised in the main thread even
while it waits for the background preparation): fixtures are torn down, every
server, container and data directory is removed, and pytest exits with
128 + the signal number (143 for SIGTERM, 129 for SIGHUP).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg

    from perfkit.lifecycle.session import IsolationSession
    from perfkit.lifecycle.settings import IsolationSettings
    from perfkit.lifecycle.strategies import Lease

MARKER = "perfkit_isolation"
DSN_ENV = "PERFKIT_DSN"
WORKER_OUTPUT_KEY = "perfkit_timings"
TIMINGS_FORMAT = "perfkit-lifecycle-timings/1"
#: Fixtures that lease a database per test (counted at collection to fill ahead).
LEASE_FIXTURES = frozenset({"perfkit_lease", "perfkit_db", "perfkit_dsn", "postgresql"})
#: Fixtures that use the lease's ready-made connection (the warm pool opens it ahead).
CONNECTION_FIXTURES = frozenset({"perfkit_lease", "perfkit_db", "postgresql"})
#: Fixtures that hand the test its database's DSN (a strategy in NO_DSN cannot).
DSN_FIXTURES = frozenset({"perfkit_dsn"})
#: Session fixtures that need the shared server (and, the first, the session database).
SESSION_FIXTURES = frozenset({"perfkit_session_dsn", "postgresql_proc", "perfkit_session"})
#: How many test ids a collection-time usage error lists before "and N more".
LISTED_TESTS = 10
#: ini/option name -> IsolationSettings field, with the value's kind.
OPTIONS: dict[str, tuple[str, str]] = {
    "perfkit_isolation": ("isolation", "str"),
    "perfkit_backend": ("backend", "str"),
    "perfkit_dsn": ("dsn", "str"),
    "perfkit_migrations": ("migrations", "paths"),
    "perfkit_template_strategy": ("template_strategy", "str"),
    "perfkit_pool_size": ("pool_size", "int"),
    "perfkit_clone_workers": ("clone_workers", "int"),
    "perfkit_ram": ("ram", "bool"),
    "perfkit_reuse": ("reuse", "bool"),
    "perfkit_keep_failed": ("keep_failed", "bool"),
    "perfkit_rollback_guard": ("rollback_guard", "str"),
    "perfkit_unix_socket": ("unix_socket", "bool"),
    "perfkit_export_pg_env": ("export_pg_env", "bool"),
    "perfkit_stable_dsn": ("stable_dsn", "bool"),
}
OPTION_KEYS = tuple(OPTIONS)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SessionTerminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP during a session that uses perfkit.

    A ``KeyboardInterrupt`` so that pytest stops the session (a ``SystemExit``
    in a test would only fail that test), tears the fixtures down and calls
    the session-finish hooks; the plugin then sets the exit code to
    128 + ``signum``.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} received: the session was stopped")
        self.signum = signum


class PluginState:
    """Per-process plugin state: settings, the lazily opened session, timing records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: IsolationSession | None = None
        self.phases: list[dict[str, Any]] = []
        self.worker_payloads: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        #: --perfkit-timings / perfkit_timings: read once, not on every test phase.
        self.timings_path: str | None = _option(config, "perfkit_timings")
        self._settings: IsolationSettings | None = None
        self._prewarm: threading.Thread | None = None
        self._sweep: threading.Thread | None = None
        self.summary_payloads: list[dict[str, Any]] = []
        self._open_lock = threading.Lock()
        #: The SIGTERM/SIGHUP that stopped the session, if one did.
        self.signum: int | None = None
        self._guarding = False
        #: Set after collection when a selected test asks for a perfkit fixture.
        self.needs_server = False

    @property
    def worker(self) -> str:
        return os.environ.get("PYTEST_XDIST_WORKER") or "main"

    @property
    def is_xdist_controller(self) -> bool:
        return self.config.pluginmanager.getplugin("dsession") is not None

    def settings(self) -> IsolationSettings:
        if self._settings is None:
            self._settings = settings_from_config(self.config)
        return self._settings

    def _terminated(self, signum: int) -> SessionTerminated:
        self.signum = signum
        return SessionTerminated(signum)

    def guard_signals(self) -> None:
        """From the main thread, before any server starts: SIGTERM/SIGHUP stop the session.

        (Servers start in the prewarm thread, where no signal handler can be
        installed, and Python runs handlers in the main thread only.)
        """
        if self._guarding or threading.current_thread() is not threading.main_thread():
            return
        from perfkit.postgres import cleanup

        self._guarding = cleanup.install_signal_handlers(self._terminated)

    def unguard_signals(self) -> None:
        """After the session: the signals raise perfkit's plain ``Terminated`` again."""
        if self._guarding:
            from perfkit.postgres import cleanup

            cleanup.install_signal_handlers(cleanup.Terminated)
            self._guarding = False

    def open(self, *, sweep: bool = True) -> IsolationSession:
        """The session (created on first call); ``sweep`` starts the sweep of dead runs."""
        self.guard_signals()
        with self._open_lock:
            if self.session is None:
                from perfkit.lifecycle.session import IsolationSession

                self.session = IsolationSession(self.settings(), worker=self.worker)
                if sweep:
                    self._sweep = threading.Thread(
                        target=_sweep_dead_owners, name="perfkit-sweep", daemon=True
                    )
                    self._sweep.start()
            return self.session

    def prewarm(
        self, demand: Counter[str], *, connections: bool = True, session_db: bool = False
    ) -> None:
        """Start server, template and strategies in the background for the collected tests.

        ``session_db``: also the session database (``perfkit_session_dsn``). Then,
        still in the background, remove what killed runs left behind (after the
        preparation, so the sweep is not on the way to the first test).
        """
        session = self.open(sweep=False)

        def run() -> None:
            try:
                if not demand:
                    session.shared_server  # noqa: B018 - started for the session fixtures
                for name, tests in demand.items():
                    session.strategy(name).expect(tests, connections=connections)
                if session_db:
                    session.session_database()
            except BaseException:  # kept by the session; the first test raises it
                pass
            _sweep_dead_owners()

        self._prewarm = threading.Thread(target=run, name="perfkit-prewarm", daemon=True)
        self._prewarm.start()

    def close(self) -> None:
        try:
            for thread in (self._prewarm, self._sweep):
                if thread is not None:
                    thread.join()
        finally:  # also when Ctrl-C interrupts the wait: remove what the session made
            if self.session is not None:
                self.session.close()

    def payload(self) -> dict[str, Any]:
        session = self.session
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "records": list(session.records) if session else [],
            "phases": self.phases,
            "servers_started": session.servers_started if session else 0,
            "databases_created": session.databases_created if session else 0,
            "settings": self.settings().describe() if session else None,
            "kept": list(session.kept) if session else [],
        }


def _sweep_dead_owners() -> None:
    """Remove what killed perfkit runs left behind (never a live run's servers); best effort."""
    from perfkit.postgres import leaks

    with contextlib.suppress(Exception):  # a sweep must never fail the user's tests
        leaks.sweep_dead_owners()


_STATE = pytest.StashKey[PluginState]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@dataclass(frozen=True)
class OptionValue:
    """A configured value and where it came from (for error messages)."""

    value: Any
    source: str


def _lookup(config: pytest.Config, name: str) -> OptionValue | None:
    """Command-line value, else ini value, else None (``name`` like ``perfkit_isolation``)."""
    value = config.getoption(name, default=None)
    if value not in (None, [], ""):
        return OptionValue(value, f"--{name.replace('_', '-')} (command line)")
    value = config.getini(name)
    if value in (None, [], ""):
        return None
    where = config.inipath.name if config.inipath else "the ini file"
    return OptionValue(value, f"{name} in {where}")


def _option(config: pytest.Config, name: str) -> Any:
    found = _lookup(config, name)
    return None if found is None else found.value


def _convert(found: OptionValue, kind: str) -> Any:
    from perfkit.errors import ConfigError

    value = found.value
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{found.source}: must be an integer, got {value!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{found.source}: must be true or false (on/off), got {value!r}")
    if kind == "paths":
        return tuple(str(p) for p in value) if isinstance(value, list) else (str(value),)
    return str(value)


def settings_from_config(config: pytest.Config, *, check_only: bool = False) -> IsolationSettings:
    """Build (and validate) IsolationSettings from options, ini keys and PERFKIT_DSN.

    A bad value is reported with where it came from: the command line or the ini file.
    ``check_only``: validate, but leave unset defaults that cost a look at the machine
    (whether /dev/shm has room) at a placeholder; for the check at configuration.
    """
    from perfkit.errors import ConfigError
    from perfkit.lifecycle.settings import IsolationSettings

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, (field_name, kind) in OPTIONS.items():
        found = _lookup(config, name)
        if found is None:
            continue
        values[field_name] = _convert(found, kind)
        sources[field_name] = found.source
        alone = {"ram": False, field_name: values[field_name]}  # ram: no look at the machine
        if field_name == "backend" and values[field_name] == "external":
            alone["dsn"] = "postgresql://127.0.0.1/checked-below"  # whether a DSN is given: below
        if field_name in ("reuse", "dsn", "stable_dsn"):
            continue  # only meaningful together with the backend; checked below
        try:
            IsolationSettings(**alone)
        except ConfigError as exc:
            raise ConfigError(f"{found.source}: {exc}") from None
    if "dsn" not in values and os.environ.get(DSN_ENV):
        values["dsn"] = os.environ[DSN_ENV]
        sources["dsn"] = f"environment variable {DSN_ENV}"
    if "dsn" in values and "backend" not in values:
        values["backend"] = "external"
    if check_only:
        values.setdefault("ram", False)
    try:
        return IsolationSettings(**values)
    except ConfigError as exc:
        involved = ", ".join(sorted(set(sources.values()))) or "defaults"
        raise ConfigError(f"{exc} (settings from {involved})") from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfkit", "perfkit PostgreSQL test isolation")
    _add_isolation_options(group)
    _add_pool_options(group)
    _add_run_options(group)
    _add_ini_options(parser)


def _add_isolation_options(group: pytest.OptionGroup) -> None:
    """Which strategy, where servers come from, what the template holds."""
    group.addoption(
        "--perfkit-isolation",
        dest="perfkit_isolation",
        metavar="NAME",
        help="isolation strategy: template (default), warm-pool, verified, rollback, truncate, "
        "per-test-server or none",
    )
    group.addoption(
        "--perfkit-backend",
        dest="perfkit_backend",
        metavar="auto|docker|local|external",
        help="where servers come from (default auto: docker if usable, else local binaries)",
    )
    group.addoption(
        "--perfkit-dsn",
        dest="perfkit_dsn",
        metavar="DSN",
        help=f"server for backend 'external' (or set {DSN_ENV}); passwords are never shown",
    )
    group.addoption(
        "--perfkit-migrations",
        dest="perfkit_migrations",
        action="append",
        metavar="PATH",
        help="SQL file applied once to the template database (repeatable, in order)",
    )
    group.addoption(
        "--perfkit-template-strategy",
        dest="perfkit_template_strategy",
        metavar="file_copy|wal_log",
        help="CREATE DATABASE ... STRATEGY for clones (PostgreSQL 15+; default auto: "
        "both are timed on the template and the faster is kept)",
    )


def _add_pool_options(group: pytest.OptionGroup) -> None:
    """The warm pool's size and cloners."""
    group.addoption(
        "--perfkit-pool-size",
        dest="perfkit_pool_size",
        metavar="N",
        help="warm-pool, verified: most databases kept ready (default 8)",
    )
    group.addoption(
        "--perfkit-clone-workers",
        dest="perfkit_clone_workers",
        metavar="N",
        help="warm-pool, verified: databases cloned concurrently (default 2)",
    )


def _add_run_options(group: pytest.OptionGroup) -> None:
    """Server placement, reuse, failed tests, the rollback guard, sockets, timing records."""
    group.addoption(
        "--perfkit-stable-dsn",
        dest="perfkit_stable_dsn",
        action="store_const",
        const="true",
        help="verified only: every test of a worker gets the same database, checked and "
        "reset in place between tests, so connections the application keeps survive",
    )
    group.addoption(
        "--perfkit-ram",
        dest="perfkit_ram",
        metavar="on|off",
        help="keep the server's data directory in memory (default: on when /dev/shm has room)",
    )
    group.addoption(
        "--perfkit-reuse",
        dest="perfkit_reuse",
        action="store_const",
        const="true",
        help="keep the server and migrated template alive for the next run "
        "(list/stop them with `perfkit servers`)",
    )
    group.addoption(
        "--perfkit-keep-failed",
        dest="perfkit_keep_failed",
        action="store_const",
        const="true",
        help="keep a failed test's database for inspection and print its DSN (masked)",
    )
    group.addoption(
        "--perfkit-rollback-guard",
        dest="perfkit_rollback_guard",
        metavar="warn|fail|off",
        help="rollback isolation: what to do when other connections reach the test database",
    )
    group.addoption(
        "--perfkit-unix-socket",
        dest="perfkit_unix_socket",
        metavar="on|off",
        help="local backend: DSNs over a private unix socket (default on; off: host, port "
        "and password over 127.0.0.1)",
    )
    group.addoption(
        "--perfkit-export-pg-env",
        dest="perfkit_export_pg_env",
        action="store_const",
        const="true",
        help="set PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE to the session's "
        "database before the suite's fixtures run (to the test's own database in tests "
        "that lease one); unset what the DSN does not carry",
    )
    group.addoption(
        "--perfkit-timings",
        dest="perfkit_timings",
        metavar="PATH",
        help="write per-test setup/teardown timing records to this JSON file",
    )


def _add_ini_options(parser: pytest.Parser) -> None:
    """Every option's ini key (the ``perfkit_*`` names the command-line options also use)."""
    parser.addini("perfkit_isolation", "perfkit isolation strategy", default=None)
    parser.addini("perfkit_backend", "perfkit server backend", default=None)
    parser.addini("perfkit_dsn", "perfkit DSN for backend external", default=None)
    parser.addini(
        "perfkit_migrations", "SQL files applied to the template", type="paths", default=[]
    )
    parser.addini("perfkit_template_strategy", "CREATE DATABASE STRATEGY", default=None)
    parser.addini("perfkit_pool_size", "warm-pool size", default=None)
    parser.addini("perfkit_clone_workers", "warm-pool concurrent cloners", default=None)
    parser.addini("perfkit_ram", "data directory in memory (true/false)", default=None)
    parser.addini("perfkit_reuse", "keep server and template between runs", default=None)
    parser.addini("perfkit_keep_failed", "keep failed tests' databases", default=None)
    parser.addini("perfkit_rollback_guard", "warn, fail or off", default=None)
    parser.addini("perfkit_unix_socket", "unix-socket DSNs on the local backend", default=None)
    parser.addini("perfkit_timings", "timing records JSON file", default=None)
    parser.addini("perfkit_export_pg_env", "export PG* variables (true/false)", default=None)
    parser.addini(
        "perfkit_stable_dsn", "verified: one database per worker (true/false)", default=None
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name): run this test under perfkit isolation strategy `name` "
        "(template, warm-pool, verified, rollback, truncate, per-test-server, none)",
    )
    config.stash[_STATE] = PluginState(config)
    if _configured(config):
        # Configured, so in use: check every setting now, before any test or server runs.
        from perfkit.errors import ConfigError

        try:
            settings = settings_from_config(config, check_only=True)  # state.settings(): later
        except ConfigError as exc:
            raise pytest.UsageError(f"perfkit: {exc}") from None
        if settings.export_pg_env:
            from perfkit.lifecycle.pgenv import PgEnvFixtures

            config.pluginmanager.register(PgEnvFixtures(LEASE_FIXTURES), "perfkit-pg-env")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.unguard_signals()


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only the selected tests count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reject unknown marker names and unservable fixtures before any test (or server) runs;
    then, if a selected test needs a database, start preparing it in the background."""
    from perfkit.errors import ConfigError
    from perfkit.lifecycle.registry import check_name

    for item in items:
        for marker in item.iter_markers(MARKER):
            try:
                check_name(marker.args[0] if marker.args else None)
            except ConfigError as exc:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}: {exc}") from None
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    unservable = _unservable(items, state)
    if unservable:
        _refuse(config, items, unservable)
        return
    try:
        if state.is_xdist_controller or config.option.collectonly:
            return
        _start_what_is_needed(items, state)
    except ConfigError as exc:
        raise pytest.UsageError(f"perfkit: {exc}") from None


def _fixtures(item: pytest.Item) -> set[str]:
    return set(getattr(item, "fixturenames", ()))


def _needs_perfkit(item: pytest.Item) -> bool:
    return bool((LEASE_FIXTURES | SESSION_FIXTURES | {"perfkit_pg_env"}) & _fixtures(item))


def _refuse(config: pytest.Config, items: list[pytest.Item], message: str) -> None:
    """Stop before any test runs with ``message``, once.

    A usage error; in an xdist worker (where a usage error would crash the
    worker) a collection error instead, which the controller reports and
    stops on.
    """
    if getattr(config, "workerinput", None) is None:
        raise pytest.UsageError(message)
    report = pytest.CollectReport("", "failed", message, [])
    config.hook.pytest_collectreport(report=report)
    items[:] = []


def _unservable(items: list[pytest.Item], state: PluginState) -> str | None:
    """A message naming every test whose strategy cannot give it a fixture it asks for."""
    from perfkit.lifecycle.registry import NO_DSN

    unservable: dict[str, list[str]] = {}
    for item in items:
        wanted = DSN_FIXTURES & _fixtures(item)
        if not wanted:
            continue
        strategy = _isolation_name(item, state)
        if strategy in NO_DSN:
            unservable.setdefault(strategy, []).append(
                f"{item.nodeid} ({', '.join(sorted(wanted))})"
            )
    if not unservable:
        return None
    parts = []
    for strategy, tests in unservable.items():
        listed = "\n  ".join(tests[:LISTED_TESTS])
        more = f"\n  ... and {len(tests) - LISTED_TESTS} more" if len(tests) > LISTED_TESTS else ""
        parts.append(
            f"isolation {strategy!r} isolates one connection and cannot hand out a DSN "
            f"({', '.join(sorted(DSN_FIXTURES))}), which {len(tests)} test(s) ask for:\n  "
            f"{listed}{more}"
        )
    return (
        "perfkit: "
        + "\n".join(parts)
        + "\nuse perfkit_db in these tests, or choose template, warm-pool, verified, truncate or "
        "per-test-server (--perfkit-isolation, or @pytest.mark.perfkit_isolation on the tests)"
    )


def _start_what_is_needed(items: list[pytest.Item], state: PluginState) -> None:
    """Nothing when no selected test asks for a perfkit fixture; else prepare in the background."""
    needing = [i for i in items if _needs_perfkit(i)]
    if not needing:
        return
    leasing = [i for i in needing if LEASE_FIXTURES & _fixtures(i)]
    demand = Counter(_isolation_name(item, state) for item in leasing)
    connections = any(CONNECTION_FIXTURES & _fixtures(i) for i in leasing)
    session_db = state.settings().export_pg_env or any(
        "perfkit_session_dsn" in _fixtures(i) for i in needing
    )
    state.needs_server = True
    # Under xdist each worker gets an unknown share: the whole count is the upper bound.
    state.prewarm(demand, connections=connections, session_db=session_db)


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """The header line once a selected test needs a database: backend, version, isolation."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.needs_server or config.option.no_header:
        return []
    from perfkit.lifecycle.header import header_line

    return [header_line(state.settings())]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Under xdist the controller collects nothing: it names the configured settings."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.is_xdist_controller or not _configured(config):
        return []
    from perfkit.lifecycle.header import configured_line

    return [configured_line(state.settings())]


def _configured(config: pytest.Config) -> bool:
    """Whether perfkit is set up for this run (an option, an ini key or PERFKIT_DSN)."""
    return bool(os.environ.get(DSN_ENV)) or any(
        _lookup(config, key) is not None for key in OPTION_KEYS
    )


def _isolation_name(node: pytest.Item, state: PluginState) -> str:
    marker = node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        return str(marker.args[0])
    return state.settings().isolation


@pytest.fixture(scope="session")
def perfkit_session(request: pytest.FixtureRequest) -> Iterator[IsolationSession]:
    """This process's isolation session (shared server, template, strategies)."""
    state = request.config.stash[_STATE]
    try:
        yield state.open()
    finally:
        state.close()


@pytest.fixture
def perfkit_lease(
    request: pytest.FixtureRequest, perfkit_session: IsolationSession
) -> Iterator[Lease]:
    """The test's database lease under the chosen (or marked) strategy."""
    state = request.config.stash[_STATE]
    lease = perfkit_session.acquire(_isolation_name(request.node, state), request.node.nodeid)
    try:
        yield lease
    finally:
        reports = request.node.stash.get(_REPORTS, {})
        failed = any(r.failed for r in reports.values())
        perfkit_session.release(lease, failed=failed)


@pytest.fixture
def perfkit_db(perfkit_lease: Lease, perfkit_session: IsolationSession) -> psycopg.Connection:
    """A psycopg connection to a database no other test has changed."""
    return perfkit_session.connection(perfkit_lease)


@pytest.fixture
def perfkit_dsn(perfkit_lease: Lease) -> str:
    """The DSN of the test's clean database (not available under ``rollback``)."""
    return perfkit_lease.require_dsn()


@pytest.fixture(scope="session")
def perfkit_session_dsn(perfkit_session: IsolationSession) -> str:
    """The DSN of one migrated database for the whole session (per xdist worker).

    For suites that share a database per session and isolate tests themselves
    (transactions, temporary tables, their own cleanup).
    """
    from perfkit.dsn import SecretDsn

    return SecretDsn(perfkit_session.session_database())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's outcome (a lease's release needs to know if its test failed)."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    state = item.config.stash.get(_STATE, None)
    if state is not None and not state.is_xdist_controller and state.timings_path:
        state.phases.append(
            {
                "test": item.nodeid,
                "worker": state.worker,
                "when": call.when,
                "seconds": call.duration,
                "failed": call.excinfo is not None,
            }
        )
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's timing payload."""
    output = getattr(node, "workeroutput", None) or {}
    payload = output.get(WORKER_OUTPUT_KEY)
    if payload:
        node.config.stash[_STATE].worker_payloads.append(json.loads(payload))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    try:
        # normally done by the fixture finalizer already; a signal that comes while
        # close() waits for the prewarm does not stop it from removing everything
        with contextlib.suppress(SessionTerminated):
            state.close()
    finally:
        if state.signum is not None:
            exitstatus = session.exitstatus = 128 + state.signum
        payload = state.payload()
        if getattr(config, "workerinput", None) is not None:
            config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
        else:
            payloads = state.worker_payloads or [payload]
            if state.worker_payloads and payload["records"]:
                payloads.append(payload)
            state.summary_payloads = payloads
            target = state.timings_path
            if target:
                write_timings(
                    Path(target),
                    payloads,
                    exitstatus=int(exitstatus),
                    session_s=time.perf_counter() - state.started,
                )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line per strategy used: waits, clones, refill vs consumption; kept databases."""
    state = config.stash.get(_STATE, None)
    payloads = getattr(state, "summary_payloads", None)
    if not payloads or not any(p["records"] or p.get("kept") for p in payloads):
        return
    from perfkit.lifecycle.timing_summary import summary_lines

    records = [r for p in payloads for r in p["records"]]
    lines = summary_lines(records)
    kept = [k for p in payloads for k in p.get("kept", [])]
    if not lines and not kept:
        return
    terminalreporter.write_sep("-", "perfkit")
    for line in lines:
        terminalreporter.write_line(line)
    for k in kept:
        terminalreporter.write_line(
            f"kept database {k['dbname']} of failed test {k['test']} ({k['until']}): {k['dsn']}",
            yellow=True,
        )


def write_timings(
    path: Path, payloads: list[dict[str, Any]], *, exitstatus: int, session_s: float
) -> None:
    """Write the merged timing file atomically.

    ``session_s`` is the pytest session's duration in this (controller) process:
    from configure to session finish, so without interpreter start-up.
    """
    document = {
        "format": TIMINGS_FORMAT,
        "exitstatus": exitstatus,
        "session_s": session_s,
        "workers": [
            {k: p[k] for k in ("worker", "pid", "servers_started", "databases_created", "settings")}
            for p in payloads
        ],
        "records": [r for p in payloads for r in p["records"]],
        "phases": [r for p in payloads for r in p["phases"]],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1))
    tmp.replace(path)
