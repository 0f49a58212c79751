"""Run a measured pytest suite as a real subprocess, under a strategy or the native baseline.

Three suites can be measured (``SuiteSettings.suite``):

* ``"lab"``: the review-shaped suite shipped in ``perfkit/lifecycle/suite`` (7
  end-to-end, 19 integration, 3 migration tests, all on ``perfkit_db``);
* ``"short"``: ``perfkit/lifecycle/short_suite``, about 250 short tests on
  psycopg 3 and psycopg2 that receive a DSN, in ``perfkit`` mode (a fresh
  database per test from the plugin) or ``native`` mode (one shared database,
  isolated by the suite itself with temporary tables and per-test cleanup);
* a path: the user's own pytest suite, run in place.

Each run copies a shipped suite to a temporary directory (a user suite runs
where it is) and runs ``python -m pytest`` there, serially or with ``-n N``
(pytest-xdist), under one isolation strategy of the plugin, or under the
``native`` baseline (:data:`BASELINES`): no per-test isolation, perfkit only
starts one server (the kind the plugin would start) and hands its DSN to the
suite through an environment variable. While it runs, a sampler thread sums
the memory (PSS) of the pytest process tree (which includes local PostgreSQL
servers), of a server started for the baseline and of every perfkit container
owned by those processes. Afterwards the plugin's timing file gives per-test
setup/teardown costs and the number of servers started.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psutil

from perfkit import validate
from perfkit.dsn import mask
from perfkit.errors import ConfigError
from perfkit.lifecycle.registry import NAMES, VARIANTS, check_name
from perfkit.postgres import cleanup
from perfkit.postgres.settings import BACKENDS

if TYPE_CHECKING:
    from perfkit.postgres import PostgresServer

SUITE_DIR = Path(__file__).parent / "suite"
SHORT_SUITE_DIR = Path(__file__).parent / "short_suite"
#: The shipped suites by name; any other ``suite`` value is a path to the user's suite.
SUITES: dict[str, Path] = {"lab": SUITE_DIR, "short": SHORT_SUITE_DIR}
SUITE_FILES = ("conftest.py", "pytest.ini", "migrations.sql")
#: Pseudo-strategies that are not plugin isolation strategies: the suite's own baseline.
BASELINES: tuple[str, ...] = ("native",)
NATIVE = "native"
#: Test kinds by file, as the review counted them (and the short suite's two kinds).
KINDS = {
    "test_end_to_end.py": "end_to_end",
    "test_integration_basic.py": "integration",
    "test_migrations.py": "migration",
    "test_temp_tables.py": "temp_table",
    "test_orders.py": "shared_tables",
}
FULL_COUNTS = {"end_to_end": 7, "integration": 19, "migration": 3}
QUICK_TESTS = 6
SHORT_FULL_TESTS = 250
SHORT_QUICK_TESTS = 24
#: How the short suite is steered (see ``short_suite/conftest.py``).
SHORT_MODE_ENV = "PERFKIT_SUITE_MODE"
SHORT_DSN_ENV = "PERFKIT_SUITE_DSN"
SHORT_TESTS_ENV = "PERFKIT_SUITE_TESTS"
#: Variables never passed on from the caller's environment to a measured suite.
SCRUBBED_ENV = (
    "PYTEST_XDIST_WORKER",
    "PYTEST_ADDOPTS",
    "PERFKIT_DSN",
    SHORT_MODE_ENV,
    SHORT_DSN_ENV,
    SHORT_TESTS_ENV,
)
#: Seconds a suite gets to clean up after SIGINT (then SIGTERM, then SIGKILL + sweep).
INTERRUPT_GRACE_S = 60.0
TERMINATE_GRACE_S = 15.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_strategy(name: object) -> str:
    """``name`` if it is a plugin isolation strategy, a variant or a baseline, else ConfigError.

    A variant (:data:`~perfkit.lifecycle.registry.VARIANTS`, e.g. ``verified+stable-dsn``)
    runs its strategy with extra plugin options and keeps its own name in every table.
    """
    if isinstance(name, str) and (name in BASELINES or name in VARIANTS):
        return name
    if isinstance(name, str) and "+" in name:
        option = name.partition("+")[2]
        known = [v for v in VARIANTS if v.endswith(f"+{option}")]
        raise ConfigError(
            f"unknown variant {name!r}: "
            + (
                f"+{option} works only with {', '.join(known)}"
                if known
                else f"no strategy has a +{option} variant"
            )
            + f"; the variants are {', '.join(VARIANTS)}"
        )
    try:
        return check_name(name)
    except ConfigError:
        raise ConfigError(
            f"unknown isolation strategy {name!r}; choose one of {', '.join(NAMES)}, "
            f"a variant ({', '.join(VARIANTS)}) or the baseline {', '.join(BASELINES)}"
        ) from None


def resolve_suite(value: object) -> str | Path:
    """``"lab"``, ``"short"`` or the resolved path of an existing suite directory."""
    if isinstance(value, str) and value in SUITES:
        return value
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(
            f"suite must be 'lab', 'short' or the path of a pytest suite directory, got {value!r}"
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"suite directory {path} does not exist")
    if not path.is_dir():
        raise ConfigError(f"suite {path} is not a directory (give the suite's directory)")
    return path.resolve()


def _int_field(name: str, value: object, *, minimum: int | None = None) -> None:
    validate.integer(name, value, minimum=minimum)


@dataclass(frozen=True, kw_only=True)
class SuiteSettings:
    """One run of a measured suite.

    ``strategy`` is a plugin isolation strategy, a variant (``verified+stable-dsn``:
    the strategy with its plugin options, recorded under the variant's name) or
    ``"native"``; ``suite`` is
    ``"lab"``, ``"short"`` or the path of the user's own suite directory.
    ``workers`` = 1 runs serially; more uses ``pytest -n workers``. ``quick``
    runs the lab's 6 tests marked ``quick`` or :data:`SHORT_QUICK_TESTS` short
    tests; ``test_count`` sizes the short suite (default 250). ``pool_size``
    and ``template_strategy`` default to the plugin's own defaults.

    Under ``native``, perfkit starts one server (the kind the plugin would
    start on ``backend``; with ``dsn``, that server is used instead) and
    passes its DSN in the environment: ``PERFKIT_SUITE_DSN`` for the short
    suite, ``dsn_env`` (e.g. ``DATABASE_URL``) for a user suite. Under a
    plugin strategy the plugin's options go on the command line and
    ``dsn_env`` is removed from the suite's environment, so a user suite can
    take ``os.environ[dsn_env]`` when set and perfkit's ``perfkit_dsn``
    fixture otherwise. ``pytest_args`` are appended to the pytest command.
    """

    strategy: str
    suite: str | Path = "lab"
    workers: int = 1
    backend: str = "local"
    quick: bool = False
    seed: int = 0
    dsn: str | None = field(default=None, repr=False)
    template_strategy: str | None = None
    pool_size: int | None = None
    sample_interval: float = 0.1
    timeout: float = 900.0
    pytest_args: tuple[str, ...] = ()
    dsn_env: str | None = None
    test_count: int | None = None

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        object.__setattr__(self, "suite", resolve_suite(self.suite))
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is unknown; choose one of {BACKENDS}")
        _int_field("workers", self.workers, minimum=1)
        _int_field("seed", self.seed)
        if self.pool_size is not None:
            _int_field("pool_size", self.pool_size, minimum=1)
        if not isinstance(self.quick, bool):
            raise ConfigError(f"quick must be true or false, got {self.quick!r}")
        for name in ("sample_interval", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.backend == "external" and not self.dsn:
            raise ConfigError("backend 'external' needs a dsn")
        if self.dsn is not None and (not isinstance(self.dsn, str) or not self.dsn):
            raise ConfigError("dsn must be a non-empty string")
        if isinstance(self.pytest_args, str | bytes) or not isinstance(self.pytest_args, Sequence):
            raise ConfigError(
                f"pytest_args must be a list of arguments, got {self.pytest_args!r} "
                "(split a command line into its words)"
            )
        if not all(isinstance(a, str) for a in self.pytest_args):
            raise ConfigError(f"pytest_args must all be strings, got {self.pytest_args!r}")
        object.__setattr__(self, "pytest_args", tuple(self.pytest_args))
        if self.dsn_env is not None and (
            not isinstance(self.dsn_env, str) or not _ENV_NAME.fullmatch(self.dsn_env)
        ):
            raise ConfigError(
                f"dsn_env must be an environment variable name such as DATABASE_URL, "
                f"got {self.dsn_env!r}"
            )
        if self.test_count is not None:
            _int_field("test_count", self.test_count, minimum=1)
        self._check_suite()

    def _check_suite(self) -> None:
        suite = self.suite_name
        if self.is_user_suite:
            if self.quick:
                raise ConfigError(
                    "quick selects tests of the shipped suites; for your own suite pass "
                    "-k or -m in pytest_args"
                )
            if self.native and not self.dsn_env:
                raise ConfigError(
                    "the native baseline of your own suite needs dsn_env: the environment "
                    "variable through which the suite reads its database URL"
                )
        elif self.dsn_env is not None:
            raise ConfigError(f"dsn_env applies to your own suite, not the {suite} suite")
        if self.test_count is not None and suite != "short":
            raise ConfigError("test_count sizes the short suite only")
        if suite == "lab" and self.native:
            raise ConfigError(
                "the lab suite has no native mode (its tests use perfkit_db); "
                "use suite='short' or your own suite"
            )
        if suite == "short" and self.strategy == "rollback":
            raise ConfigError(
                "the short suite hands DSNs to two drivers, which 'rollback' cannot give; "
                "choose native, template, warm-pool, truncate or per-test-server"
            )

    @property
    def native(self) -> bool:
        """Whether this run is a baseline (no per-test isolation by perfkit)."""
        return self.strategy in BASELINES

    @property
    def isolation(self) -> str:
        """The plugin isolation strategy the run uses (a variant's strategy)."""
        return VARIANTS[self.strategy][0] if self.strategy in VARIANTS else self.strategy

    @property
    def variant_args(self) -> tuple[str, ...]:
        """The plugin options a variant adds (none for a plain strategy)."""
        return VARIANTS[self.strategy][1] if self.strategy in VARIANTS else ()

    @property
    def is_user_suite(self) -> bool:
        return isinstance(self.suite, Path)

    @property
    def suite_name(self) -> str:
        """``lab``, ``short`` or the user suite's path."""
        return str(self.suite)

    @property
    def short_tests(self) -> int:
        """How many tests the short suite is asked for."""
        if self.test_count is not None:
            return self.test_count
        return SHORT_QUICK_TESTS if self.quick else SHORT_FULL_TESTS

    @property
    def native_dsn_env(self) -> str:
        """The variable through which a native run's suite receives its server's DSN."""
        return self.dsn_env or SHORT_DSN_ENV


@dataclass(kw_only=True)
class SuiteResult:
    """What one run produced: a summary row, per-test rows, events and memory samples."""

    run: dict[str, Any]
    tests: list[dict[str, Any]]
    events: list[dict[str, Any]]
    memory: list[dict[str, Any]]
    output: str


def prepare_suite(dest: Path, source: Path = SUITE_DIR) -> Path:
    """Copy a shipped suite (default: the lab's) into ``dest`` (created) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.suffix in (".py", ".sql", ".ini"):
            shutil.copy2(path, dest / path.name)
    return dest


def suite_directory(settings: SuiteSettings, workdir: Path) -> Path:
    """Where the run's suite lives: a fresh copy in ``workdir``, or the user's directory."""
    if isinstance(settings.suite, Path):
        return settings.suite
    return prepare_suite(workdir / "suite", SUITES[settings.suite])


def pytest_command(
    settings: SuiteSettings, suite: Path, timings: Path, junit: Path | None = None
) -> list[str]:
    """The pytest command line for ``settings`` (a DSN goes via environment, never argv).

    ``junit`` (pytest's own JUnit XML report) counts tests and failures
    independently of the plugin, which only sees tests that use its fixtures.
    """
    args = [sys.executable, "-m", "pytest", str(suite)]
    if not settings.is_user_suite:
        args += ["-c", str(suite / "pytest.ini"), "--rootdir", str(suite)]
    args += [
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"--perfkit-timings={timings}",
    ]
    if junit is not None:
        args.append(f"--junitxml={junit}")
    if not settings.native:
        args.append(f"--perfkit-isolation={settings.isolation}")
        args += settings.variant_args
        if settings.backend != "external":  # external: implied by PERFKIT_DSN in the environment
            args.append(f"--perfkit-backend={settings.backend}")
        if settings.pool_size is not None:
            args.append(f"--perfkit-pool-size={settings.pool_size}")
        if settings.template_strategy:
            args.append(f"--perfkit-template-strategy={settings.template_strategy}")
    if settings.quick and settings.suite == "lab":
        args += ["-m", "quick"]
    if settings.workers > 1:
        args += ["-n", str(settings.workers)]
    return [*args, *settings.pytest_args]


def suite_environment(
    settings: SuiteSettings, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The suite's environment: the caller's, minus variables that would steer it elsewhere.

    A native run's server DSN is added by :func:`run_suite` once the server runs.
    """
    env = dict(os.environ if base is None else base)
    for key in (*SCRUBBED_ENV, settings.dsn_env):
        if key:
            env.pop(key, None)
    env["PERFKIT_SUITE_SEED"] = str(settings.seed)
    if settings.suite == "short":
        env[SHORT_MODE_ENV] = NATIVE if settings.native else "perfkit"
        env[SHORT_TESTS_ENV] = str(settings.short_tests)
    if settings.dsn and not settings.native:
        env["PERFKIT_DSN"] = settings.dsn
    return env


class MemorySampler:
    """Samples memory of a process tree (+ its perfkit containers) in a thread.

    Memory is PSS (shared pages split fairly), summed over processes, split
    into ``pytest`` (python), ``server`` (local postgres) and ``container``
    (processes of Docker containers whose owner label is a PID in the tree).
    ``server_pids`` are roots of further trees counted as ``server`` (a local
    server started outside the tree); ``owner_pids`` also own containers.
    """

    def __init__(
        self,
        root_pid: int,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        server_pids: Iterable[int] = (),
        owner_pids: Iterable[int] = (),
    ):
        self.root_pid = root_pid
        self.interval = interval
        self.clock = clock
        self.server_pids = tuple(server_pids)
        self.owner_pids = frozenset(owner_pids)
        self.samples: list[dict[str, Any]] = []
        self.containers_seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perfkit-memory", daemon=True)
        self._docker: Any = None
        self._container_pids: dict[str, int] = {}
        self._last_docker_poll = 0.0
        self.t0 = clock()

    def __enter__(self) -> MemorySampler:
        with contextlib.suppress(Exception):
            from perfkit.postgres.docker import docker_client

            self._docker = docker_client(timeout=2)
        self.t0 = self.clock()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.sample())
            self._stop.wait(self.interval)

    @staticmethod
    def _pss(proc: psutil.Process) -> int:
        try:
            info = proc.memory_full_info()
            return int(getattr(info, "pss", 0) or info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return 0

    def _tree(self, pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _poll_containers(self, pids: set[int]) -> None:
        if self._docker is None or self.clock() - self._last_docker_poll < 0.5:
            return
        self._last_docker_poll = self.clock()
        from perfkit.postgres import cleanup

        found: dict[str, int] = {}
        for container in self._docker.containers.list(filters={"label": cleanup.OWNER_LABEL}):
            owner = container.labels.get(cleanup.OWNER_LABEL, "")
            if owner.isdigit() and int(owner) in pids:
                pid = int(container.attrs.get("State", {}).get("Pid") or 0)
                if pid:
                    found[container.id] = pid
                    self.containers_seen.add(container.id)
        self._container_pids = found

    def sample(self) -> dict[str, Any]:
        tree = self._tree(self.root_pid)
        pids = {p.pid for p in tree}
        pytest_b = server_b = 0
        for proc in tree:
            try:
                name = proc.name()
            except psutil.Error:
                continue
            if name in ("postgres", "postmaster"):
                server_b += self._pss(proc)
            else:
                pytest_b += self._pss(proc)
        for pid in self.server_pids:
            server_b += sum(self._pss(p) for p in self._tree(pid))
        self._poll_containers(pids | self.owner_pids)
        container_b = sum(
            self._pss(p) for pid in self._container_pids.values() for p in self._tree(pid)
        )
        return {
            "t_s": self.clock() - self.t0,
            "pytest_bytes": pytest_b,
            "server_bytes": server_b,
            "container_bytes": container_b,
            "total_bytes": pytest_b + server_b + container_b,
            "processes": len(tree),
            "containers": len(self._container_pids),
        }


def _kind(test_id: str) -> str:
    return KINDS.get(test_id.split("::", 1)[0].rsplit("/", 1)[-1], "other")


def _summarize(
    document: dict[str, Any], baseline: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-test rows (isolation cost + pytest phases) and other events from a timings file.

    A test that ran without a database lease (every test of a ``native`` run)
    gets a row from its pytest phases, isolation ``baseline`` and no isolation cost.
    """
    phases: dict[str, dict[str, float]] = {}
    outcome: dict[str, bool] = {}
    workers: dict[str, str] = {}
    for p in document.get("phases", []):
        phases.setdefault(p["test"], {})[p["when"]] = p["seconds"]
        outcome[p["test"]] = outcome.get(p["test"], False) or bool(p["failed"])
        workers[p["test"]] = p.get("worker", "main")
    tests = []
    events = []
    leased: set[str] = set()

    def row(test_id: str, **fields: Any) -> dict[str, Any]:
        ph = phases.get(test_id, {})
        return {
            "test": test_id,
            "kind": _kind(test_id),
            **fields,
            "setup_s": ph.get("setup"),
            "call_s": ph.get("call"),
            "teardown_s": ph.get("teardown"),
            "failed": outcome.get(test_id, False),
        }

    for record in document.get("records", []):
        if record["event"] != "test":
            events.append(
                {k: record.get(k) for k in ("event", "worker", "seconds", "strategy", "purpose")}
            )
            continue
        leased.add(record["test"])
        tests.append(
            row(
                record["test"],
                worker=record["worker"],
                isolation=record["strategy"],
                acquire_s=record["acquire_s"],
                release_s=record["release_s"],
                isolation_s=record["acquire_s"] + record["release_s"],
            )
        )
    for test_id in phases:
        if test_id not in leased:
            tests.append(
                row(
                    test_id,
                    worker=workers[test_id],
                    isolation=baseline,
                    acquire_s=math.nan,
                    release_s=math.nan,
                    isolation_s=math.nan,
                )
            )
    return tests, events


def relabel(settings: SuiteSettings, rows: list[dict[str, Any]]) -> None:
    """Give a variant's per-test and event rows the variant's name (the plugin records its
    strategy's), so every table keeps the variant apart from the plain strategy."""
    if settings.strategy == settings.isolation:
        return
    for row in rows:
        for key in ("isolation", "strategy"):
            if row.get(key) == settings.isolation:
                row[key] = settings.strategy


def junit_counts(path: Path) -> tuple[int, int] | None:
    """(tests run, tests failed or errored) from a JUnit XML report; None without one."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    cases = list(root.iter("testcase"))
    ran = [c for c in cases if c.find("skipped") is None]
    failed = [c for c in ran if c.find("failure") is not None or c.find("error") is not None]
    return len(ran), len(failed)


def _server_processes(server: PostgresServer | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(server process roots, container owner pids) of a server this process started."""
    if server is None:
        return (), ()
    if server.backend == "docker":
        return (), (os.getpid(),)
    datadir = getattr(server, "datadir", None)
    with contextlib.suppress(Exception):
        if datadir is not None:  # postmaster.pid: the postmaster's PID on its first line
            return (int((Path(datadir) / "postmaster.pid").read_text().split()[0]),), ()
    return (), ()


def _start_native_server(
    settings: SuiteSettings, stack: contextlib.ExitStack
) -> tuple[str, PostgresServer | None, float]:
    """The baseline's server: ``settings.dsn``, else one started like the plugin's (DSN, server,
    seconds to start)."""
    if settings.dsn:
        return settings.dsn, None, 0.0
    from perfkit.lifecycle.settings import IsolationSettings
    from perfkit.postgres import create_server

    t0 = time.perf_counter()
    server = create_server(IsolationSettings(backend=settings.backend).server())
    stack.enter_context(server)
    return best_dsn(server), server, time.perf_counter() - t0


def best_dsn(server: PostgresServer) -> str:
    """The DSN the plugin would hand out: the unix socket where the server has one."""
    return server.socket_dsn_for(server.settings.dbname) or server.dsn


def _sweep_leftovers() -> None:
    """Remove servers/containers of killed suite processes (best effort)."""
    with contextlib.suppress(Exception):
        from perfkit.postgres import leaks

        leaks.sweep_dead_owners()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_suite(proc: subprocess.Popen[bytes]) -> bytes:
    """Stop a running suite so it cleans up: SIGINT (as Ctrl-C would), then SIGTERM, then SIGKILL.

    pytest answers SIGINT by tearing down, so the plugin stops its servers;
    only after a SIGKILL are leftovers swept. Returns the output read meanwhile.
    """
    for sig, grace in (
        (signal.SIGINT, INTERRUPT_GRACE_S),
        (signal.SIGTERM, TERMINATE_GRACE_S),
        (signal.SIGKILL, TERMINATE_GRACE_S),
    ):
        _signal_group(proc, sig)
        try:
            out, _ = proc.communicate(timeout=grace)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C escalates
            continue
        if sig == signal.SIGKILL:
            _sweep_leftovers()
        return out or b""
    _sweep_leftovers()
    return b""


def _communicate(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bool]:
    """The suite's output and whether it timed out; on any interruption the suite is stopped."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out or b"", False
    except subprocess.TimeoutExpired:
        return stop_suite(proc), True
    except BaseException:  # KeyboardInterrupt, SystemExit (SIGTERM): clean up, then re-raise
        stop_suite(proc)
        raise
    finally:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            _sweep_leftovers()


def _server_seconds(events: list[dict[str, Any]], strategy: str) -> float | None:
    """Seconds the slowest worker spent starting shared servers (None under per-test-server)."""
    if strategy == "per-test-server":
        return None
    per_worker: dict[str, float] = {}
    for e in events:
        if e["event"] == "server_start" and e.get("purpose") in (None, "shared"):
            per_worker[e["worker"]] = per_worker.get(e["worker"], 0.0) + float(e["seconds"])
    return max(per_worker.values(), default=0.0)


def run_suite(settings: SuiteSettings, *, workdir: Path | None = None) -> SuiteResult:
    """Run the suite once as a pytest subprocess and measure it.

    Everything the run made (temporary directory, a baseline's server, the
    suite's own servers) is removed on success, failure, timeout and Ctrl-C.
    """
    run_id = uuid.uuid4().hex[:12]
    with contextlib.ExitStack() as stack:
        tmp = cleanup.make_owned_tempdir("suite", root=workdir)  # swept if we are SIGKILLed
        stack.callback(cleanup.remove_owned, tmp)
        suite = suite_directory(settings, tmp)
        timings = tmp / "timings.json"
        env = suite_environment(settings)
        server: PostgresServer | None = None
        server_start_s: float | None = None
        if settings.native:
            dsn, server, server_start_s = _start_native_server(settings, stack)
            env[settings.native_dsn_env] = dsn
        server_pids, owner_pids = _server_processes(server)
        junit = tmp / "junit.xml"
        cmd = pytest_command(settings, suite, timings, junit)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=suite,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we forward one SIGINT (stop_suite)
        )
        with MemorySampler(
            proc.pid, settings.sample_interval, server_pids=server_pids, owner_pids=owner_pids
        ) as sampler:
            out, timed_out = _communicate(proc, settings.timeout)
        wall = time.perf_counter() - t0
        output = mask(out.decode(errors="replace"))
        document = json.loads(timings.read_text()) if timings.exists() else {}
        counts = junit_counts(junit)
    tests, events = _summarize(document, settings.strategy if settings.native else None)
    relabel(settings, [*tests, *events])
    workers = document.get("workers", [])
    samples = sampler.samples
    peak = max(samples, key=lambda s: s["total_bytes"]) if samples else {}
    ran, failed = counts or (len(tests), sum(1 for t in tests if t["failed"]))
    isolation = pd.Series([t["isolation_s"] for t in tests], dtype=float)
    run = {
        "run_id": run_id,
        "suite": settings.suite_name,
        "strategy": settings.strategy,
        "workers": settings.workers,
        "backend": settings.backend,
        "quick": settings.quick,
        "wall_s": wall,
        "session_s": document.get("session_s"),
        "exit_code": proc.returncode,
        "timed_out": timed_out,
        "tests": ran,
        "tests_failed": failed,
        "servers_started": sum(int(w.get("servers_started", 0)) for w in workers)
        + (1 if server is not None else 0),
        "server_start_s": server_start_s
        if settings.native
        else _server_seconds(events, settings.isolation),
        "containers_started": len(sampler.containers_seen),
        "databases_created": sum(int(w.get("databases_created", 0)) for w in workers),
        "peak_total_bytes": peak.get("total_bytes", 0),
        "peak_pytest_bytes": max((s["pytest_bytes"] for s in samples), default=0),
        "peak_server_bytes": max(
            (s["server_bytes"] + s["container_bytes"] for s in samples), default=0
        ),
        "isolation_total_s": float(isolation.sum()),
        "isolation_median_s": float(isolation.median())
        if isolation.notna().any()
        else float("nan"),
        "session_setup_s": sum(e["seconds"] for e in events if e["event"] == "session_setup"),
    }
    for row in (*tests, *events):
        row.update(run_id=run_id, strategy_run=settings.strategy, workers=settings.workers)
    memory = [{**s, "run_id": run_id} for s in samples]
    return SuiteResult(run=run, tests=tests, events=events, memory=memory, output=output)


@dataclass(kw_only=True)
class MatrixResult:
    """Frames from :func:`run_matrix`: ``runs``, ``tests``, ``events``, ``memory``."""

    frames: dict[str, pd.DataFrame]
    outputs: dict[str, str]


def run_matrix(
    strategies: Sequence[str],
    parallel: Sequence[int],
    *,
    repetitions: int = 1,
    backend: str = "local",
    quick: bool = False,
    seed: int = 0,
    dsn: str | None = None,
    progress: Callable[[SuiteSettings, SuiteResult], None] | None = None,
    **suite_kwargs: Any,
) -> MatrixResult:
    """Every strategy x parallelism x repetition, in a seeded shuffled order.

    Every setting is checked (ConfigError) before the first run starts.
    ``strategies`` may include the ``native`` baseline (not for the lab suite).
    """
    for name in strategies:
        check_strategy(name)
    _int_field("repetitions", repetitions, minimum=1)
    plan = [
        (
            repetition,
            SuiteSettings(
                strategy=s,
                workers=w,
                backend=backend,
                quick=quick,
                seed=seed,
                dsn=dsn,
                **suite_kwargs,
            ),
        )
        for repetition in range(repetitions)
        for s in strategies
        for w in parallel
    ]
    random.Random(seed).shuffle(plan)
    runs, tests, events, memory = [], [], [], []
    outputs: dict[str, str] = {}
    for order, (repetition, settings) in enumerate(plan):
        result = run_suite(settings)
        result.run["order"] = order
        result.run["repetition"] = repetition
        runs.append(result.run)
        tests += result.tests
        events += result.events
        memory += result.memory
        outputs[result.run["run_id"]] = result.output
        if progress:
            progress(settings, result)
    frames = {
        "runs": pd.DataFrame(runs),
        "tests": pd.DataFrame(tests),
        "events": pd.DataFrame(events),
        "memory": pd.DataFrame(memory),
    }
    return MatrixResult(frames=frames, outputs=outputs)
