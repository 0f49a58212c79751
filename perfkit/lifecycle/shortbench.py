"""Benchmark: the short suite with a fresh database per test vs on one shared database.

    python -m perfkit.lifecycle.shortbench [--backend local|docker]
        [--strategies warm-pool,template,verified+stable-dsn] [--repeat N] [--tests N]
        [--workers N]

The short suite (about 250 tests of 10-30 ms on psycopg 3 and psycopg2) runs
``native`` (its own conftest makes one database per session and isolates tests
with temporary tables and per-test cleanup) and under each plugin strategy, as
real pytest subprocesses, ``--repeat`` times, in alternating order (native
first, then last, ...). One server, started as the plugin would start it, serves
every run (the plugin reaches it as backend ``external``), so runs differ only
in isolation; ``--own-servers`` lets the plugin start its own server per run
instead (its start-up then counts in the strategy's time).

Printed per strategy: n, median wall time, the ratio to native with a 95%
bootstrap interval (seeded, paired by repetition) and the plugin's per-test
acquire/release p50/p99 from its timing files. A variant
(:data:`~perfkit.lifecycle.registry.VARIANTS`: ``verified+stable-dsn``) runs
its strategy with its plugin options (``--perfkit-stable-dsn``).
Goal: a fresh database per test within 1.25x of native. The server and every
temporary directory are removed on success, failure and Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pandas as pd

from perfkit.errors import ConfigError, PerfkitError, SuiteFailed
from perfkit.lifecycle import analysis, bench

DEFAULT_STRATEGIES = ("warm-pool", "template")
PLACEHOLDER_DSN = "postgresql://perfkit@127.0.0.1:5432/perfkit"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What to run: checked settings per name (``native`` first), repetitions, backend."""

    settings: dict[str, bench.SuiteSettings]
    repeat: int
    backend: str
    own_servers: bool
    seed: int

    def order(self, repetition: int) -> list[str]:
        """Names in run order for ``repetition``: native first on even, last on odd ones."""
        names = list(self.settings)
        return names if repetition % 2 == 0 else names[::-1]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m perfkit.lifecycle.shortbench",
        description="The short suite: fresh database per test (perfkit) vs one shared database "
        "(native). Goal: within 1.25x.",
    )
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument(
        "--strategies",
        default=",".join(DEFAULT_STRATEGIES),
        help="comma-separated plugin strategies (default: %(default)s); native always runs",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per strategy (default 3)")
    parser.add_argument(
        "--tests", type=int, default=None, help="short suite size (default 250 tests)"
    )
    parser.add_argument("--workers", type=int, default=1, help="pytest -n workers (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="test data and bootstrap seed")
    parser.add_argument(
        "--own-servers",
        action="store_true",
        help="let the plugin start its own server in every strategy run",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per suite run")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """Every run's settings, checked (ConfigError) before any server starts."""
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    if not names:
        raise ConfigError("--strategies must name at least one plugin strategy")
    if isinstance(args.repeat, bool) or args.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {args.repeat}")
    settings: dict[str, bench.SuiteSettings] = {}
    for name in dict.fromkeys([bench.NATIVE, *names]):
        try:
            bench.check_strategy(name)
        except ConfigError as exc:
            raise ConfigError(f"--strategies: {exc}") from None
        own = args.own_servers and name != bench.NATIVE
        settings[name] = bench.SuiteSettings(
            strategy=name,
            suite="short",
            backend=args.backend if own else "external",
            dsn=None if own else PLACEHOLDER_DSN,
            workers=args.workers,
            seed=args.seed,
            test_count=args.tests,
            timeout=args.timeout,
        )
    return Plan(
        settings=settings,
        repeat=args.repeat,
        backend=args.backend,
        own_servers=args.own_servers,
        seed=args.seed,
    )


def run(plan: Plan, *, say: Callable[[str], None] = print) -> dict[str, pd.DataFrame]:
    """Start the shared server, run the plan, return ``runs`` and ``tests`` frames.

    Raises :class:`SuiteFailed` at the first failing run (after cleaning up).
    """
    from perfkit.lifecycle import walcheck
    from perfkit.lifecycle.settings import IsolationSettings
    from perfkit.postgres import create_server

    runs: list[dict[str, object]] = []
    tests: list[dict[str, object]] = []
    with create_server(IsolationSettings(backend=plan.backend).server()) as server:
        walcheck.install(server.dsn)  # as the plugin does on servers it starts
        say(
            f"server: {plan.backend} PostgreSQL {server.server_version()}, started in "
            f"{(server.ready_at or 0) - (server.started_at or 0):.2f} s; "
            + (
                "the plugin starts its own server in each strategy run"
                if plan.own_servers
                else "every run uses it"
            )
        )
        total = plan.repeat * len(plan.settings)
        done = 0
        for repetition in range(plan.repeat):
            for name in plan.order(repetition):
                settings = plan.settings[name]
                if settings.dsn is not None:
                    settings = replace(settings, dsn=bench.best_dsn(server))
                result = bench.run_suite(settings)
                done += 1
                run_row = {**result.run, "strategy": name, "repetition": repetition}
                run_row["order"] = done
                runs.append(run_row)
                tests.extend(result.tests)  # a variant's rows carry its name (bench)
                say(
                    f"run {done:>2}/{total} {name:<16} wall {run_row['wall_s']:6.2f} s  "
                    f"exit {run_row['exit_code']}  tests {run_row['tests']}"
                )
                if run_row["exit_code"] != 0:
                    raise SuiteFailed(
                        f"the short suite failed under {name}:\n{result.output[-3000:]}"
                    )
    return {"runs": pd.DataFrame(runs), "tests": pd.DataFrame(tests)}


def _ms(values: pd.Series, q: float) -> float:
    values = values.dropna()
    return float(values.quantile(q) * 1e3) if len(values) else float("nan")


def summary(frames: dict[str, pd.DataFrame], *, seed: int = 0) -> pd.DataFrame:
    """Per strategy: n, median wall, ratio to native (95% interval), acquire/release p50/p99."""
    table = analysis.versus_native(frames["runs"], seed=seed)
    tests = frames["tests"]
    rows = []
    for _, row in table.iterrows():
        own = tests[tests["isolation"] == row["strategy"]] if not tests.empty else tests
        acquire = own["acquire_s"] if "acquire_s" in own else pd.Series(dtype=float)
        release = own["release_s"] if "release_s" in own else pd.Series(dtype=float)
        rows.append(
            {
                "strategy": row["strategy"],
                "n": int(row["n"]),
                "median_wall_s": row["median_s"],
                "ratio": row["ratio"],
                "ratio_low": row["ratio_low"],
                "ratio_high": row["ratio_high"],
                "acquire_p50_ms": _ms(acquire, 0.5),
                "acquire_p99_ms": _ms(acquire, 0.99),
                "release_p50_ms": _ms(release, 0.5),
                "release_p99_ms": _ms(release, 0.99),
                "met": row["met"],
            }
        )
    return pd.DataFrame(rows)


def format_summary(table: pd.DataFrame, tests: int, goal: float = analysis.NATIVE_GOAL) -> str:
    lines = [
        f"short suite, {tests} tests per run; ratio = median wall / native median wall "
        "(95% bootstrap interval)",
        f"{'strategy':<16} {'n':>3} {'median s':>9} {'ratio':>6} {'95% interval':>15} "
        f"{'acquire p50/p99 ms':>19} {'release p50/p99 ms':>19}",
    ]
    for _, r in table.iterrows():
        native = r["strategy"] == bench.NATIVE
        interval = "" if native else f"[{r['ratio_low']:.2f}, {r['ratio_high']:.2f}]"
        timing = (
            ""
            if native
            else f"{r['acquire_p50_ms']:8.2f} /{r['acquire_p99_ms']:7.2f}  "
            f"{r['release_p50_ms']:8.2f} /{r['release_p99_ms']:7.2f}"
        )
        lines.append(
            f"{r['strategy']:<16} {r['n']:>3} {r['median_wall_s']:>9.2f} {r['ratio']:>6.2f} "
            f"{interval:>15}  {timing}"
        )
    verdicts = [
        f"{r['strategy']} {r['ratio']:.2f}x ({'met' if r['met'] else 'not met'})"
        for _, r in table.iterrows()
        if r["strategy"] != bench.NATIVE
    ]
    lines.append(
        f"goal: fresh database per test within {goal:g}x of native: " + ", ".join(verdicts)
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = make_plan(args)
    except ConfigError as exc:
        print(f"shortbench: {exc}", file=sys.stderr)
        return 2
    try:
        frames = run(plan)
    except KeyboardInterrupt:
        print("shortbench: interrupted; server and temporary files removed", file=sys.stderr)
        return 130
    except SystemExit as exc:  # SIGTERM/SIGHUP, turned into SystemExit by perfkit's cleanup
        print("shortbench: terminated; server and temporary files removed", file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else 1
    except PerfkitError as exc:
        print(f"shortbench: {exc}", file=sys.stderr)
        return 1
    tests = int(frames["runs"]["tests"].median())
    print(format_summary(summary(frames, seed=plan.seed), tests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
