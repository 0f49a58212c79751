"""The container-lifecycle lab behind notebooks/03_container_lifecycle.ipynb.

:class:`Params` holds the notebook's parameters and checks their values (before
any server starts); :func:`run` measures the leak check, the micro-benchmarks
and the suite matrix (:mod:`~perfkit.lifecycle.measure`) and returns tidy frames
(numbers from :mod:`~perfkit.lifecycle.analysis`); :data:`LAB` exposes it through
the lab contract (:mod:`perfkit.lab`), its text from :mod:`~perfkit.lifecycle.conclusions`.
``suite`` picks what the matrix runs: the review-shaped ``lab`` suite, the
``short`` suite (about 250 short tests on two drivers, which also runs
``native``: on one shared database, isolated by itself) or the path of the
user's own pytest suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from perfkit import headlines
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Progress, Results, param
from perfkit.lifecycle import analysis, bench, budget, conclusions, measure, micro
from perfkit.lifecycle.registry import VARIANTS
from perfkit.lifecycle.settings import AUTO, TEMPLATE_STRATEGIES, IsolationSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Strategies measured when the notebook's ``strategies`` is None, by suite. The lab suite's
#: goal of 30x over per-test servers counts reuse, so both reusing strategies are in.
LAB_STRATEGIES = (
    "per-test-server",
    "rollback",
    "truncate",
    "template",
    "warm-pool",
    "verified",
    "verified+stable-dsn",
)
SHORT_STRATEGIES = ("native", "template", "warm-pool", "verified", "verified+stable-dsn")
#: ... and for a user suite (``native`` first when ``dsn_env`` is given).
USER_STRATEGIES = ("template", "warm-pool", "verified", "verified+stable-dsn")


#: The lab's stages (``stages`` picks some): the leak check of every strategy, the
#: micro-benchmarks against the raw SQL underneath, and the suite under each strategy (with
#: the time budget's extra runs).
STAGES = ("leaks", "micro", "suites")


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The lifecycle notebook's parameters: the only place their defaults and help live.

    ``strategies`` None means: every plugin strategy and verified+stable-dsn for the lab
    suite;
    native, template, warm-pool, verified and verified+stable-dsn for the short
    suite; the same without native (unless ``dsn_env`` is given) for a user suite.
    A variant (``verified+stable-dsn``: verified with ``--perfkit-stable-dsn``) is
    measured under its own name in the suites stage and the leak check; the
    micro-benchmarks time fixed cases (clone, rollback, pool hand-out) and skip
    it, which the conclusions say.
    """

    STAGES: ClassVar[tuple[str, ...]] = STAGES

    quick: bool = param(False, "lab: the 6 `quick` tests instead of 29; short: 24 tests (CI)")
    seed: int = param(0, "test data and run order")
    suite: str = param("lab", '"lab" (29 tests) | "short" (~250 short tests) | your suite\'s path')
    strategies: tuple[str, ...] | None = param(
        None, 'None: by suite; "native": the suite without perfkit'
    )
    parallel: tuple[int, ...] | None = param(
        None, "pytest-xdist worker counts (1: serial)", full=(1, 2), quick=(1,)
    )
    repetitions: int = param(1, "suite runs per (strategy, workers), in a seeded shuffled order")
    time_budget_s: float | None = param(
        None, "s of extra runs to settle the fastest (0: off)", full=30.0, quick=0.0
    )
    micro_iterations: int | None = param(None, "micro-benchmark iterations", full=60, quick=10)
    pool_think_ms: float = param(100.0, "warm-pool benchmark: how long a test holds its database")
    template_strategy: str | None = param(
        AUTO, 'clone STRATEGY: "auto" (timed) | "file_copy" | "wal_log" | None'
    )
    dsn_env: str | None = param(
        None, 'your suite under "native": variable that gets the DSN ("DATABASE_URL")'
    )
    pytest_args: tuple[str, ...] = param(
        (), 'extra arguments for every suite run: ["-k", "not slow"]'
    )

    def derived(self) -> dict[str, Any]:
        """``suite`` resolved (a user suite's absolute path), ``strategies`` chosen by suite."""
        suite = str(bench.resolve_suite(self.suite))
        strategies = self.strategies
        return {
            "suite": suite,
            "strategies": self.default_strategies(suite) if strategies is None else strategies,
        }

    def check(self) -> None:
        if not self.strategies:
            raise ConfigError("strategies must name at least one strategy")
        for name in self.strategies:  # every suite run's settings, checked before any server
            try:
                bench.check_strategy(name)
                self.suite_settings(name, workers=1, backend="local")
            except ConfigError as exc:
                raise ConfigError(f"strategies: {exc}") from None
        if self.parallel is not None and (
            not self.parallel
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.parallel)
        ):
            raise ConfigError(
                f"parallel must be a list of worker counts >= 1, got {self.parallel!r}"
            )
        if self.repetitions < 1:
            raise ConfigError(f"repetitions must be at least 1, got {self.repetitions}")
        if self.micro_iterations is not None and self.micro_iterations < 1:
            raise ConfigError(f"micro_iterations must be at least 1, got {self.micro_iterations}")
        if self.pool_think_ms < 0:
            raise ConfigError(f"pool_think_ms must be >= 0, got {self.pool_think_ms}")
        if self.template_strategy not in (*TEMPLATE_STRATEGIES, AUTO, None):
            raise ConfigError(
                f"template_strategy {self.template_strategy!r} is unknown; choose one of "
                f"{', '.join((*TEMPLATE_STRATEGIES, AUTO))} or None (the server's default)"
            )

    def default_strategies(self, suite: str) -> tuple[str, ...]:
        """The strategies ``strategies=None`` stands for with ``suite`` (resolved)."""
        if suite == "lab":
            return LAB_STRATEGIES
        if suite == "short":
            return SHORT_STRATEGIES
        return (*(("native",) if self.dsn_env else ()), *USER_STRATEGIES)

    def suite_kwargs(self) -> dict[str, Any]:
        """The suite's part of :class:`bench.SuiteSettings` (quick only for shipped suites)."""
        user = self.suite not in bench.SUITES
        return {
            "suite": Path(self.suite) if user else self.suite,
            "quick": self.quick and not user,
            "template_strategy": self.template_strategy,
            "dsn_env": self.dsn_env,
            "pytest_args": self.pytest_args,
        }

    def suite_settings(self, strategy: str, *, workers: int, backend: str) -> bench.SuiteSettings:
        return bench.SuiteSettings(
            strategy=strategy,
            workers=workers,
            backend=backend,
            seed=self.seed,
            **self.suite_kwargs(),
        )

    @property
    def worker_counts(self) -> tuple[int, ...]:
        """pytest-xdist worker counts to run the suite with (1 = serial)."""
        return tuple(self.parallel)

    @property
    def iterations(self) -> int:
        return int(self.micro_iterations)

    def resolved_backend(self) -> str:
        """``auto`` resolved once, so every run of the matrix uses the same backend."""
        if self.backend != "auto":
            return self.backend
        from perfkit.postgres import ServerSettings, choose_backend

        return choose_backend(ServerSettings(backend="auto")).backend

    def isolation_settings(self, backend: str) -> IsolationSettings:
        return IsolationSettings(
            backend=backend,
            migrations=(bench.SUITE_DIR / "migrations.sql",),
            template_strategy=self.template_strategy,
        )


def run(cfg: Params, *, progress: Callable[[str], None] | None = None) -> dict[str, pd.DataFrame]:
    """The selected stages (all by default): leak check, micro-benchmarks and the suite
    matrix; returns the frames to save (none of the stages not run)."""
    say = progress or (lambda _msg: None)
    backend = cfg.resolved_backend()
    say(f"backend: {backend}")
    settings = cfg.isolation_settings(backend)
    frames: dict[str, pd.DataFrame] = {}
    if cfg.ran("leaks"):
        variants = [name for name in cfg.strategies if name in VARIANTS]
        say("leak check of every strategy" + "".join(f", {v}" for v in variants))
        frames["leaks"] = measure.leak_check(settings, variants)
    if cfg.ran("micro"):
        say(f"micro-benchmarks ({cfg.iterations} iterations)")
        frames["micro"] = measure.micro_benchmarks(settings, cfg)
        frames["micro_summary"] = micro.summarize(frames["micro"])
    if cfg.ran("suites"):
        frames |= suite_frames(cfg, backend, say)
        frames["goals"] = analysis.goals(frames["runs"], frames.get("micro_summary"))
    return frames


def suite_frames(cfg: Params, backend: str, say: Callable[[str], None]) -> dict[str, pd.DataFrame]:
    """The suite under each strategy, extra runs within the time budget, and the frames
    computed from them (headline, samples, versus_native)."""
    on_run = measure.suite_progress(say)
    matrix = measure.suite_matrix(cfg, backend, on_run)
    frames = dict(matrix.frames)
    outputs = dict(matrix.outputs)
    serial = min(cfg.worker_counts)
    extra: list[dict[str, pd.DataFrame]] = []

    def run_round(names: Sequence[str], number: int) -> pd.DataFrame:
        say(f"budget round {number}: {', '.join(names)}")
        more = bench.run_matrix(
            names,
            (serial,),
            backend=backend,
            seed=cfg.seed + number,
            progress=on_run,
            **cfg.suite_kwargs(),
        )
        more.frames["runs"]["repetition"] = cfg.repetitions - 1 + number
        extra.append(more.frames)
        outputs.update(more.outputs)
        return more.frames["runs"]

    frames["runs"], frames["budget"], _ = budget.spend_budget(
        frames["runs"],
        budget_s=float(cfg.time_budget_s),
        workers=serial,
        run_round=run_round,
    )
    for name in ("tests", "events", "memory"):
        frames[name] = pd.concat([frames[name], *(f[name] for f in extra)], ignore_index=True)
    workers = min(cfg.worker_counts)
    frames.update(
        headline=analysis.headline(frames["runs"], frames["events"], workers=workers),
        samples=analysis.samples_frame(frames["runs"], frames["events"], workers=workers),
        versus_native=analysis.versus_native(frames["runs"], seed=cfg.seed),
    )
    measure.raise_on_failure(frames["runs"], outputs)
    return frames


# -- the lab contract -------------------------------------------------------------------


class LifecycleLab:
    """Container lifecycle and test isolation: a real pytest suite under each strategy."""

    name = "lifecycle"
    title = "Container lifecycle and isolation"
    notebook = "03_container_lifecycle.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> None:
        return None  # each suite run starts what its strategy needs

    def run(self, params: Params, server: object, progress: Progress) -> Results:
        return Results(frames=run(params, progress=progress), server=None)

    def headlines(self, results: Results) -> pd.DataFrame:
        samples = results.samples
        if not samples.empty:
            return headlines.from_samples(samples.dropna(subset=["value"]), analysis.SPEC)
        if "headline" in results.frames:  # saved before the lab kept its samples
            return headlines.from_wide(results["headline"], analysis.HEADLINE_KEYS, analysis.SPEC)
        return headlines.headline_frame([])  # the suites stage did not run

    def headline_specs(self) -> Mapping[str, headlines.HeadlineSpec]:
        return analysis.SPEC

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.lifecycle import plots

        runs = results.get("runs")
        if runs is None:  # the suites stage did not run
            return
        yield "Suite wall time by strategy", plots.suite_time(runs)
        yield "Isolation cost per test", plots.isolation_cost(results["tests"])
        yield "Peak memory", plots.peak_memory(runs)
        versus = results.get("versus_native")
        if versus is not None and not versus.empty:
            yield (
                "Versus the suite's native setup",
                plots.versus_native(versus, goal=analysis.NATIVE_GOAL),
            )

    def conclusions(self, results: Results) -> str:
        skipped = [stage for stage in STAGES if not results.ran(stage)]
        return conclusions.conclusions(results.frames, not_measured=skipped)


LAB = LifecycleLab()
