"""Run the measured suite (7 end-to-end, 19 integration, 3 migration tests) as real pytest.

Each run copies the suite shipped in ``perfkit/lifecycle/suite`` to a temporary
directory and runs ``python -m pytest`` there under one isolation strategy,
serially or with ``-n N`` (pytest-xdist). While it runs, a sampler thread sums
the memory (PSS) of the pytest process tree (which includes local PostgreSQL
servers) and of every perfkit container owned by a process in that tree.
Afterwards the plugin's timing file gives per-test setup/teardown costs and the
number of servers started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from perfkit.dsn import mask
from perfkit.errors import ConfigError
from perfkit.lifecycle.registry import check_name
from perfkit.postgres.settings import BACKENDS

SUITE_DIR = Path(__file__).parent / "suite"
SUITE_FILES = ("conftest.py", "pytest.ini", "migrations.sql")
#: Test kinds by file, as the review counted them.
KINDS = {
    "test_end_to_end.py": "end_to_end",
    "test_integration_basic.py": "integration",
    "test_migrations.py": "migration",
}
FULL_COUNTS = {"end_to_end": 7, "integration": 19, "migration": 3}
QUICK_TESTS = 6


@dataclass(frozen=True, kw_only=True)
class SuiteSettings:
    """One run of the measured suite.

    ``workers`` = 1 runs serially; more uses ``pytest -n workers``. ``quick``
    runs the 6 tests marked ``quick`` (2 end-to-end, 3 integration, 1 migration).
    """

    strategy: str
    workers: int = 1
    backend: str = "local"
    quick: bool = False
    seed: int = 0
    dsn: str | None = field(default=None, repr=False)
    template_strategy: str | None = None
    pool_size: int = 3
    sample_interval: float = 0.1
    timeout: float = 900.0
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.strategy)
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend {self.backend!r} is unknown; choose one of {BACKENDS}")
        for name in ("workers", "pool_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.sample_interval <= 0 or self.timeout <= 0:
            raise ConfigError("sample_interval and timeout must be positive")
        if self.backend == "external" and not self.dsn:
            raise ConfigError("backend 'external' needs a dsn")


@dataclass(kw_only=True)
class SuiteResult:
    """What one run produced: a summary row, per-test rows, events and memory samples."""

    run: dict[str, Any]
    tests: list[dict[str, Any]]
    events: list[dict[str, Any]]
    memory: list[dict[str, Any]]
    output: str


def prepare_suite(dest: Path) -> Path:
    """Copy the shipped suite into ``dest`` (created) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in SUITE_DIR.iterdir():
        if path.suffix in (".py", ".sql", ".ini"):
            shutil.copy2(path, dest / path.name)
    return dest


def pytest_command(settings: SuiteSettings, suite: Path, timings: Path) -> list[str]:
    """The pytest command line for ``settings`` (the DSN goes via environment, not argv)."""
    args = [
        sys.executable,
        "-m",
        "pytest",
        str(suite),
        "-c",
        str(suite / "pytest.ini"),
        "--rootdir",
        str(suite),
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        f"--perfkit-isolation={settings.strategy}",
        f"--perfkit-backend={settings.backend}",
        f"--perfkit-timings={timings}",
        f"--perfkit-pool-size={settings.pool_size}",
    ]
    if settings.template_strategy:
        args.append(f"--perfkit-template-strategy={settings.template_strategy}")
    if settings.quick:
        args += ["-m", "quick"]
    if settings.workers > 1:
        args += ["-n", str(settings.workers)]
    return [*args, *settings.extra_args]


class MemorySampler:
    """Samples memory of a process tree (+ its perfkit containers) in a thread.

    Memory is PSS (shared pages split fairly), summed over processes, split
    into ``pytest`` (python), ``server`` (local postgres) and ``container``
    (processes of Docker containers whose owner label is a PID in the tree).
    """

    def __init__(
        self, root_pid: int, interval: float, *, clock: Callable[[], float] = time.monotonic
    ):
        self.root_pid = root_pid
        self.interval = interval
        self.clock = clock
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
        self._poll_containers(pids)
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


def _summarise(document: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-test rows (isolation cost + pytest phases) and other events from a timings file."""
    phases: dict[str, dict[str, float]] = {}
    outcome: dict[str, bool] = {}
    for p in document.get("phases", []):
        phases.setdefault(p["test"], {})[p["when"]] = p["seconds"]
        outcome[p["test"]] = outcome.get(p["test"], False) or bool(p["failed"])
    tests = []
    events = []
    for record in document.get("records", []):
        if record["event"] != "test":
            events.append(
                {k: record.get(k) for k in ("event", "worker", "seconds", "strategy", "purpose")}
            )
            continue
        test_id = record["test"]
        ph = phases.get(test_id, {})
        tests.append(
            {
                "test": test_id,
                "kind": _kind(test_id),
                "worker": record["worker"],
                "isolation": record["strategy"],
                "acquire_s": record["acquire_s"],
                "release_s": record["release_s"],
                "isolation_s": record["acquire_s"] + record["release_s"],
                "setup_s": ph.get("setup"),
                "call_s": ph.get("call"),
                "teardown_s": ph.get("teardown"),
                "failed": outcome.get(test_id, False),
            }
        )
    return tests, events


def run_suite(settings: SuiteSettings, *, workdir: Path | None = None) -> SuiteResult:
    """Run the suite once as a pytest subprocess and measure it."""
    run_id = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="perfkit-suite-", dir=workdir) as tmp:
        suite = prepare_suite(Path(tmp) / "suite")
        timings = Path(tmp) / "timings.json"
        env = {**os.environ, "PERFKIT_SUITE_SEED": str(settings.seed)}
        env.pop("PYTEST_XDIST_WORKER", None)
        env.pop("PYTEST_ADDOPTS", None)
        if settings.dsn:
            env["PERFKIT_DSN"] = settings.dsn
        cmd = pytest_command(settings, suite, timings)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        with MemorySampler(proc.pid, settings.sample_interval) as sampler:
            try:
                out, _ = proc.communicate(timeout=settings.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        output = mask(out.decode(errors="replace"))
        document = json.loads(timings.read_text()) if timings.exists() else {}
    tests, events = _summarise(document)
    workers = document.get("workers", [])
    samples = sampler.samples
    peak = max(samples, key=lambda s: s["total_bytes"]) if samples else {}
    failed = sum(1 for t in tests if t["failed"])
    run = {
        "run_id": run_id,
        "strategy": settings.strategy,
        "workers": settings.workers,
        "backend": settings.backend,
        "quick": settings.quick,
        "wall_s": wall,
        "session_s": document.get("session_s"),
        "exit_code": proc.returncode,
        "tests": len(tests),
        "tests_failed": failed,
        "servers_started": sum(int(w.get("servers_started", 0)) for w in workers),
        "containers_started": len(sampler.containers_seen),
        "databases_created": sum(int(w.get("databases_created", 0)) for w in workers),
        "peak_total_bytes": peak.get("total_bytes", 0),
        "peak_pytest_bytes": max((s["pytest_bytes"] for s in samples), default=0),
        "peak_server_bytes": max(
            (s["server_bytes"] + s["container_bytes"] for s in samples), default=0
        ),
        "isolation_total_s": sum(t["isolation_s"] for t in tests),
        "isolation_median_s": float(pd.Series([t["isolation_s"] for t in tests]).median())
        if tests
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
    """Every strategy x parallelism x repetition, in a seeded shuffled order."""
    for name in strategies:
        check_name(name)
    if repetitions < 1:
        raise ConfigError(f"repetitions must be at least 1, got {repetitions}")
    plan = [
        SuiteSettings(
            strategy=s, workers=w, backend=backend, quick=quick, seed=seed, dsn=dsn, **suite_kwargs
        )
        for _ in range(repetitions)
        for s in strategies
        for w in parallel
    ]
    random.Random(seed).shuffle(plan)
    runs, tests, events, memory = [], [], [], []
    outputs: dict[str, str] = {}
    for rep, settings in enumerate(plan):
        result = run_suite(settings)
        result.run["order"] = rep
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
