"""The lifecycle lab's closing text (Markdown), from a run's frames alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from perfkit.lifecycle.analysis import (
    NATIVE_GOAL,
    SUITE_REUSE_GOAL,
    SUITE_SPEEDUP_GOAL,
    NaiveRatio,
    best_shared,
    parallel_gain,
    versus_naive,
)
from perfkit.lifecycle.registry import ISOLATING_SHARED, VARIANTS
from perfkit.verdicts import decide


def conclusions(frames: Mapping[str, pd.DataFrame], not_measured: Sequence[str] = ()) -> str:
    """The closing text (Markdown) from a lifecycle run's frames alone; ``not_measured``
    names the stages the run skipped."""
    skipped = [f"- Not measured in this run: {', '.join(not_measured)}."] if not_measured else []
    if "runs" not in frames:  # the suites stage did not run
        return "\n".join(_micro_lines(frames) + skipped)
    return "\n".join([_suite_text(frames), *skipped])


def _micro_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The warm pool's hand-out against its clones (micro-benchmarks)."""
    micro = frames.get("micro_summary")
    if micro is None or "pool_handout" not in set(micro["case"]):
        return []
    m = micro.set_index("case")["median_s"]
    return [
        f"- warm pool: hand-out median {m['pool_handout'] * 1e3:.3f} ms while each clone "
        f"takes {m.get('pool_clone', float('nan')) * 1e3:.0f} ms in the background"
    ]


def _ratio_text(found: NaiveRatio) -> str:
    """``12.3x, 95% interval 11.0-13.1 (n=5 and 5 runs)``."""
    return (
        f"{found.ratio:.1f}x, 95% interval {found.low:.1f}-{found.high:.1f} "
        f"(n={found.n_naive} and {found.n_improved} runs)"
    )


def _naive_lines(ok: pd.DataFrame, serial: int, best: str | None) -> list[str]:
    """Per-test server / shared+rollback and / the best shared strategy, each with its
    interval and n; on the lab suite with the review's 20x goal (rollback) and issue 17's
    30x (the best shared strategy, reuse included, by process wall time)."""
    lab = "suite" not in ok.columns or (ok["suite"] == "lab").any()
    measured = [s for s in ISOLATING_SHARED if s in set(ok["strategy"])]
    lines = []
    for value, label in (("wall_s", "process wall time"), ("session_s", "pytest session time")):
        for improved in dict.fromkeys(["rollback", best]):
            found = versus_naive(ok, improved, workers=serial, value=value) if improved else None
            if found is None:
                continue
            name = f"shared+{improved}"
            goals = [SUITE_SPEEDUP_GOAL] if improved == "rollback" else []
            if improved == best:
                name += f" (the best shared of {', '.join(measured)})"
                goals += [SUITE_REUSE_GOAL] if value == "wall_s" else []
            said = "".join(f"; goal >= {g:g}x: {found.verdict(g)}" for g in goals if lab)
            lines.append(f"- {label}: per-test server / {name} = {_ratio_text(found)}{said}")
    return lines


def _suite_text(frames: Mapping[str, pd.DataFrame]) -> str:
    """The suites' findings (and the micro-benchmarks' when they ran)."""
    runs, tests = frames["runs"], frames["tests"]
    ok = runs[runs["exit_code"] == 0]
    if ok.empty:
        return "No suite run passed; see the runs table."
    serial = int(ok["workers"].min())
    best = best_shared(ok, serial)
    lines = [
        f"Suite of {int(ok['tests'].median())} tests, backend {ok['backend'].iloc[0]}, "
        f"workers={serial}:"
    ]
    versus = frames.get("versus_native")
    if versus is not None and not versus.empty:
        for row in versus[versus["strategy"] != "native"].itertuples():
            lines.append(
                f"- {row.strategy} / native (one shared database), workers={row.workers}: "
                f"{row.ratio:.2f}x, 95% interval {row.ratio_low:.2f}-{row.ratio_high:.2f} "
                f"(n={row.n}; goal <= {NATIVE_GOAL:g}x: {'met' if row.met else 'not met'})"
            )
    lines += _naive_lines(ok, serial, best)
    shared = ok[(ok["workers"] == serial) & ok["strategy"].isin(ISOLATING_SHARED)]
    walls = {name: list(g["wall_s"]) for name, g in shared.groupby("strategy")}
    if len(walls) >= 2:
        verdict = decide(walls, lower_is_better=True)
        lines.append(f"- fastest shared strategy (suite wall time): {verdict.text(unit='s')}")
    spent = frames.get("budget")
    if spent is not None and not spent.empty:
        extra = spent[spent["round"] > 0]
        lines.append(
            f"- time budget {float(spent['budget_s'].iloc[0]):g} s: {len(extra)} extra round(s) "
            f"in {float(extra['seconds'].sum()) if len(extra) else 0.0:.0f} s; "
            f"stopped: {spent['stop_reason'].iloc[0]}"
        )
    top = int(ok["workers"].max())
    if top > 1:
        for strategy in ok["strategy"].unique():
            gain = parallel_gain(ok, strategy, top)
            if gain is not None:
                lines.append(f"- {strategy}: serial / -n {top}: x{gain:.2f}")
    lines += _micro_lines(frames)
    variants = [name for name in ok["strategy"].unique() if name in VARIANTS]
    if variants and "micro_summary" in frames:
        lines.append(
            f"- {', '.join(variants)}: not in the micro-benchmarks, which time fixed cases "
            "(template clone, rollback, warm-pool hand-out); its per-test acquire and release "
            "are in the suites' per-test table and the median wait below"
        )
    if not tests.empty and "acquire_s" in tests.columns:
        waits = tests.groupby("isolation")["acquire_s"].median().mul(1e3)
        parts = [f"{name} {ms:.2f} ms" for name, ms in waits.items()]
        lines.append("- median wait for a clean database per test: " + ", ".join(parts))
    return "\n".join(lines)
