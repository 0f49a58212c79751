"""pytest plugin: clean PostgreSQL databases for each test, under a chosen isolation strategy.

Registered as the ``perfkit`` entry point (``pytest11``), so it is active in any
project that installs perfkit; it starts nothing unless a test requests one of
its fixtures, and importing it costs only pytest and the standard library.

Fixtures: ``perfkit_db`` (a psycopg connection to the test's clean database),
``perfkit_dsn`` (that database's DSN) and ``perfkit_session`` (the per-process
:class:`~perfkit.lifecycle.session.IsolationSession`). Options (each also an ini
key with ``-`` -> ``_``, e.g. ``perfkit_isolation = template``)::

    --perfkit-isolation=template|warm-pool|rollback|truncate|per-test-server|none
    --perfkit-backend=auto|docker|local|external
    --perfkit-dsn=postgresql://...        (backend external; or env PERFKIT_DSN)
    --perfkit-migrations=schema.sql       (repeatable; applied once to the template)
    --perfkit-template-strategy=file_copy|wal_log
    --perfkit-pool-size=3                 (warm-pool)
    --perfkit-timings=timings.json        (write per-test setup/teardown records)

Marker: ``@pytest.mark.perfkit_isolation("template")`` overrides the strategy
for one test. Under pytest-xdist each worker has its own server and database
names carry the worker id; the controller merges the workers' timing records.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
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
OPTION_KEYS = (
    "perfkit_isolation",
    "perfkit_backend",
    "perfkit_dsn",
    "perfkit_migrations",
    "perfkit_template_strategy",
    "perfkit_pool_size",
)


class PluginState:
    """Per-process plugin state: settings, the lazily opened session, timing records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: IsolationSession | None = None
        self.phases: list[dict[str, Any]] = []
        self.worker_payloads: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self._settings: IsolationSettings | None = None

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

    def open(self) -> IsolationSession:
        if self.session is None:
            from perfkit.lifecycle.session import IsolationSession

            self.session = IsolationSession(self.settings(), worker=self.worker)
        return self.session

    def close(self) -> None:
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
        }


_STATE = pytest.StashKey[PluginState]()


def _option(config: pytest.Config, name: str) -> Any:
    """CLI value, else ini value, else None (``name`` like ``perfkit_isolation``)."""
    value = config.getoption(name, default=None)
    if value not in (None, [], ""):
        return value
    value = config.getini(name)
    return value if value not in (None, [], "") else None


def settings_from_config(config: pytest.Config) -> IsolationSettings:
    """Build (and validate) IsolationSettings from options, ini keys and PERFKIT_DSN."""
    from perfkit.errors import ConfigError
    from perfkit.lifecycle.settings import DEFAULT_ISOLATION, IsolationSettings

    dsn = _option(config, "perfkit_dsn") or os.environ.get(DSN_ENV) or None
    backend = _option(config, "perfkit_backend") or ("external" if dsn else "auto")
    migrations = config.getoption("perfkit_migrations", default=None) or [
        str(p) for p in config.getini("perfkit_migrations")
    ]
    pool_size = _option(config, "perfkit_pool_size")
    try:
        pool = int(pool_size) if pool_size is not None else 3
    except ValueError:
        raise ConfigError(f"perfkit_pool_size must be an integer, got {pool_size!r}") from None
    return IsolationSettings(
        isolation=_option(config, "perfkit_isolation") or DEFAULT_ISOLATION,
        backend=backend,
        dsn=dsn,
        migrations=tuple(migrations),
        template_strategy=_option(config, "perfkit_template_strategy"),
        pool_size=pool,
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfkit", "perfkit PostgreSQL test isolation")
    group.addoption(
        "--perfkit-isolation",
        dest="perfkit_isolation",
        metavar="NAME",
        help="isolation strategy: template (default), warm-pool, rollback, truncate, "
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
        help="CREATE DATABASE ... STRATEGY for clones (PostgreSQL 15+; default: server's)",
    )
    group.addoption(
        "--perfkit-pool-size",
        dest="perfkit_pool_size",
        metavar="N",
        help="warm-pool: number of databases kept ready (default 3)",
    )
    group.addoption(
        "--perfkit-timings",
        dest="perfkit_timings",
        metavar="PATH",
        help="write per-test setup/teardown timing records to this JSON file",
    )
    parser.addini("perfkit_isolation", "perfkit isolation strategy", default=None)
    parser.addini("perfkit_backend", "perfkit server backend", default=None)
    parser.addini("perfkit_dsn", "perfkit DSN for backend external", default=None)
    parser.addini(
        "perfkit_migrations", "SQL files applied to the template", type="paths", default=[]
    )
    parser.addini("perfkit_template_strategy", "CREATE DATABASE STRATEGY", default=None)
    parser.addini("perfkit_pool_size", "warm-pool size", default=None)
    parser.addini("perfkit_timings", "timing records JSON file", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(name): run this test under perfkit isolation strategy `name` "
        "(template, warm-pool, rollback, truncate, per-test-server, none)",
    )
    state = config.stash[_STATE] = PluginState(config)
    name = _option(config, "perfkit_isolation")
    if name is not None:
        from perfkit.errors import ConfigError
        from perfkit.lifecycle.registry import check_name

        try:
            check_name(name)
        except ConfigError as exc:
            raise pytest.UsageError(f"--perfkit-isolation: {exc}") from None
    if any(_option(config, key) is not None for key in OPTION_KEYS):
        # Configured, so in use: check every setting now, before any test or server runs.
        from perfkit.errors import ConfigError

        try:
            state.settings()
        except ConfigError as exc:
            raise pytest.UsageError(f"perfkit: {exc}") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Reject unknown marker names before any test (or server) runs."""
    for item in items:
        for marker in item.iter_markers(MARKER):
            from perfkit.errors import ConfigError
            from perfkit.lifecycle.registry import check_name

            try:
                check_name(marker.args[0] if marker.args else None)
            except ConfigError as exc:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{MARKER}: {exc}") from None


def _isolation_for(request: pytest.FixtureRequest, state: PluginState) -> str:
    marker = request.node.get_closest_marker(MARKER)
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
    lease = perfkit_session.acquire(_isolation_for(request, state), request.node.nodeid)
    try:
        yield lease
    finally:
        perfkit_session.release(lease)


@pytest.fixture
def perfkit_db(perfkit_lease: Lease) -> psycopg.Connection:
    """A psycopg connection to a database no other test has changed."""
    assert perfkit_lease.connection is not None
    return perfkit_lease.connection


@pytest.fixture
def perfkit_dsn(perfkit_lease: Lease) -> str:
    """The DSN of the test's clean database (not available under ``rollback``)."""
    return perfkit_lease.require_dsn()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    state = item.config.stash.get(_STATE, None)
    if state is None or state.is_xdist_controller:
        return
    if state.config.getoption("perfkit_timings", default=None) or state.config.getini(
        "perfkit_timings"
    ):
        state.phases.append(
            {
                "test": item.nodeid,
                "worker": state.worker,
                "when": call.when,
                "seconds": call.duration,
                "failed": call.excinfo is not None,
            }
        )


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
        state.close()  # normally done by the fixture finalizer already
    finally:
        target = _option(config, "perfkit_timings")
        if target:
            payload = state.payload()
            workerinput = getattr(config, "workerinput", None)
            if workerinput is not None:
                config.workeroutput[WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
            else:
                payloads = state.worker_payloads or [payload]
                if state.worker_payloads and payload["records"]:
                    payloads.append(payload)
                write_timings(
                    Path(target),
                    payloads,
                    exitstatus=int(exitstatus),
                    session_s=time.perf_counter() - state.started,
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
