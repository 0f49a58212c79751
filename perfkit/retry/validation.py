"""Real herds vs the simulation: an agreement table over repeated herds, and where it holds.

:func:`agreement` is pure: from one summary row per real herd and one per
simulated herd (columns ``strategy``, ``n_clients`` and the metrics), it gives
one row per (strategy, n_clients, metric) with the median over the repeated
herds on each side and its interval, the ratio real / sim, and whether they
agree: within ±25 % of the simulated value, or their intervals overlap.

The intervals are the exact distribution-free ones for a median
(:func:`perfkit.stats.exact_median_interval`, order statistics): they need at
least 6 herds at 95 %. With fewer, the interval is the range of the herds
(``interval = "range"``) and ``coverage`` says what that range covers
(1 - 2·½ⁿ: 75 % for 3 herds), so a table of few herds says how weak its
overlap test is instead of claiming 95 %.

:func:`largest_agreeing_n` is the largest N at which every checked strategy
agrees on the checked metrics: the simulation's numbers beyond it (10,000+
clients) are extrapolations to flag. :func:`run_validation` runs the real
herds (repetitions interleaved, so drift on a shared machine spreads over all
cells) and asks a model for the same herds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perfkit import stats, validate
from perfkit.errors import ConfigError
from perfkit.postgres import PostgresServer, create_server
from perfkit.retry.bigherd import (
    DEFAULT_STRATEGIES,
    BigHerdSettings,
    check_room,
    herd_server_settings,
    ratio,
    run_big_herd,
    sim_settings_for,
)
from perfkit.retry.contention import ContentionSettings, simulate_contended
from perfkit.retry.herdproc import ensure_fd_limit
from perfkit.retry.setupcost import measure_setup_costs
from perfkit.retry.simulate import simulate

#: Metrics compared, per herd (names of the real and the simulated summary's keys).
AGREEMENT_METRICS = (
    "median_connected_after_ready_s",
    "p90_connected_after_ready_s",
    "timeouts",
    "peak_rate_after_restart_per_100ms",
    "all_connected_after_ready_s",
)
#: The issue's benchmark: these must agree for a size to count as checked.
HEADLINE_METRICS = ("median_connected_after_ready_s", "timeouts")
#: Relative difference (real vs sim) within which two medians agree outright.
TOLERANCE = 0.25

_FRAMES = ("attempts", "backends", "processes")
#: The contention model's choices the real herds support (assumption 3 of its docstring:
#: with processor sharing a lockstep herd's burst timed out as a whole, which the real
#: herds of 1,000 did not; their event loops finish one attempt's callbacks before the next).
VALIDATED_MODEL: dict[str, Any] = {"client_discipline": "fifo"}

SimulateFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]


def median_interval(values: Sequence[float], *, level: float = 0.95) -> dict[str, Any]:
    """Median of ``values`` (NaN dropped) with the exact interval, or the range when too few.

    Returns ``value, low, high, n, interval ("exact" | "range"), coverage``.
    """
    data = np.asarray(values, dtype=float)
    data = data[~np.isnan(data)]
    n = int(data.size)
    if n == 0:
        nan = math.nan
        return {"value": nan, "low": nan, "high": nan, "n": 0, "interval": "none", "coverage": nan}
    exact = stats.exact_median_interval(data, level=level)
    if exact is not None:
        return {
            "value": exact.value,
            "low": exact.low,
            "high": exact.high,
            "n": n,
            "interval": "exact",
            "coverage": level,
        }
    return {
        "value": float(np.median(data)),
        "low": float(data.min()),
        "high": float(data.max()),
        "n": n,
        "interval": "range",
        "coverage": 1.0 - 2.0 * 0.5**n,
    }


def _overlap(r: Mapping[str, Any], s: Mapping[str, Any]) -> bool:
    ends = (r["low"], r["high"], s["low"], s["high"])
    if any(math.isnan(x) for x in ends):
        return False
    return bool(r["low"] <= s["high"] and s["low"] <= r["high"])


def _row(
    key: tuple[str, int], metric: str, r: dict[str, Any], s: dict[str, Any], tol: float
) -> dict[str, Any]:
    real_to_sim = ratio(r["value"], s["value"])
    within = bool(not math.isnan(real_to_sim) and abs(real_to_sim - 1.0) <= tol)
    overlap = _overlap(r, s)
    return {
        "strategy": key[0],
        "n_clients": key[1],
        "metric": metric,
        "real": r["value"],
        "real_low": r["low"],
        "real_high": r["high"],
        "real_n": r["n"],
        "sim": s["value"],
        "sim_low": s["low"],
        "sim_high": s["high"],
        "sim_n": s["n"],
        "ratio": real_to_sim,
        "within_tolerance": within,
        "intervals_overlap": overlap,
        "agrees": within or overlap,
        "interval": r["interval"] if r["interval"] == s["interval"] else "mixed",
        "coverage": min(r["coverage"], s["coverage"]),
    }


def agreement(
    real: pd.DataFrame,
    sim: pd.DataFrame,
    *,
    level: float = 0.95,
    metrics: Sequence[str] = AGREEMENT_METRICS,
    tolerance: float = TOLERANCE,
) -> pd.DataFrame:
    """One row per (strategy, n_clients, metric) of ``real``: medians over the herds, agreement.

    ``real`` and ``sim`` hold one summary row per herd (``strategy``,
    ``n_clients`` and the ``metrics``; a ``rep`` column is not needed). A cell
    with no simulated herd gets NaN on the sim side and does not agree.
    Metrics missing from a frame are NaN (a time until all connected is NaN
    where a client gave up: such herds drop out of that metric's n).
    """
    if isinstance(tolerance, bool) or not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0, got {tolerance!r}")
    rows = []
    keys = list(dict.fromkeys(zip(real["strategy"], real["n_clients"], strict=True)))
    for strategy, n in keys:
        key = (str(strategy), int(n))
        r_cell = real[(real["strategy"] == strategy) & (real["n_clients"] == n)]
        s_cell = sim[(sim["strategy"] == strategy) & (sim["n_clients"] == n)]
        for metric in metrics:
            r_vals = r_cell[metric] if metric in r_cell else pd.Series(dtype=float)
            s_vals = s_cell[metric] if metric in s_cell else pd.Series(dtype=float)
            r_est = median_interval(r_vals.astype(float), level=level)
            s_est = median_interval(s_vals.astype(float), level=level)
            rows.append(_row(key, metric, r_est, s_est, tolerance))
    return pd.DataFrame(rows)


def largest_agreeing_n(
    table: pd.DataFrame,
    *,
    strategies: Sequence[str] | None = None,
    metrics: Sequence[str] | None = HEADLINE_METRICS,
) -> int | None:
    """The largest N at which every checked strategy agrees on every checked metric.

    ``strategies``/``metrics`` None: all in ``table``. None when no N agrees.
    Each N is judged on its own: N = 1,000 agreeing with N = 300 not does not
    lower the answer (the table shows the 300).
    """
    rows = table
    if strategies is not None:
        rows = rows[rows["strategy"].isin(list(strategies))]
    if metrics is not None:
        rows = rows[rows["metric"].isin(list(metrics))]
    if rows.empty:
        return None
    agreeing = [int(n) for n, cell in rows.groupby("n_clients") if bool(cell["agrees"].all())]
    return max(agreeing) if agreeing else None


def fcfs_simulate(summary: Mapping[str, Any], costs: Mapping[str, Any]) -> dict[str, Any]:
    """The kit's first-come-first-served model of one real herd (``costs``: a
    :func:`perfkit.retry.herd.calibrate` row); the baseline the contention model replaces."""
    calibration = {str(k): float(v) for k, v in costs.items()}
    settings = sim_settings_for(dict(summary), calibration)
    return simulate(str(summary["strategy"]), settings, seed=int(summary.get("rep", 0))).summary()


def herd_side(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the contention model takes from a real herd beyond the FIFO model's scenario:
    its client processes, whether they had sessions of their own, whether the server ran
    in a container (its processes then share one cgroup: ``server_groups=1``), and how
    long the old server took to exit after the first client noticed (loss to restart
    minus the outage)."""
    shared = not bool(summary.get("client_own_sessions", True))  # one session for all loops
    shutdown = float(summary["loss_to_restart_s"]) - float(summary["outage_s"])
    return {
        "client_processes": int(summary["client_processes"]),
        "client_sessions": 1 if shared else None,
        "server_groups": 1 if summary.get("backend") == "docker" else None,
        "shutdown_s": max(0.0, shutdown),
    }


def contended_simulate(
    summary: Mapping[str, Any], costs: Mapping[str, Any], **model: Any
) -> dict[str, Any]:
    """The contention model's view of one real herd (``costs``: :meth:`SetupCosts.to_dict`).

    The constants (cores, server and client CPU per attempt, the postmaster's
    part, connect latency) come only from ``costs``, measured on the same
    server before the herds; the scenario from what the herd itself recorded
    (:func:`~perfkit.retry.bigherd.sim_settings_for`: notice spread, boot, hang
    window, refusal cost, ``max_connections``, backlog) and :func:`herd_side`.
    ``model``: further :class:`ContentionSettings` fields, over
    :data:`VALIDATED_MODEL` (e.g. ``client_discipline="ps"``). Seeded by the herd's ``rep``.
    """
    cost = {str(k): float(v) for k, v in costs.items()}
    scenario = sim_settings_for(
        dict(summary),
        {"connect_s": cost["connect_s"], "refused_s": cost["refused_s"], "capacity_per_s": 1.0},
    )
    settings = ContentionSettings.from_sim(
        scenario, cost, **{**herd_side(summary), **VALIDATED_MODEL, **model}
    )
    seed = int(summary.get("rep", 0))
    return simulate_contended(str(summary["strategy"]), settings, seed=seed).summary()


def run_validation(
    server: PostgresServer,
    strategies: Sequence[str],
    sizes: Sequence[int],
    reps: int,
    simulate_fn: SimulateFn,
    costs: Mapping[str, Any],
    *,
    outage_s: float = 1.0,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    client_processes: int | None = None,
    client_nice: int | None = None,
    own_sessions: bool = True,
    seed: int = 0,
    level: float = 0.95,
    progress: Callable[[Mapping[str, Any], Mapping[str, Any]], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Real herds (``reps`` per strategy and size, interleaved) and the model's view of each.

    For every real herd, ``simulate_fn(summary, costs)`` returns the simulated
    summary of the same herd (a ``SimResult.summary()``; ``costs`` is handed
    through, e.g. the measured setup costs for the contention model). Checked
    before anything runs: strategies, sizes, max_connections and open files
    for the largest size. Returns ``real`` and ``sim`` (one row per herd, with
    ``rep`` and the machine's 1-minute load before and after it) and
    ``agreement`` (:func:`agreement`), and the herds' ``attempts``, ``backends``
    (sampled over time) and ``processes`` (client loops' CPU and lag) frames.
    ``progress(real_summary, sim_summary)`` is called after each herd.
    ``own_sessions=False`` keeps the client processes in this process's session
    (:class:`~perfkit.retry.bigherd.BigHerdSettings`).
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ConfigError(f"reps must be an int >= 1, got {reps!r}")
    plan = [
        (
            rep,
            BigHerdSettings(
                strategy=s,
                n_clients=n,
                outage_s=outage_s,
                connect_timeout=connect_timeout,
                deadline=deadline,
                client_processes=client_processes,
                client_nice=client_nice,
                own_sessions=own_sessions,
            ),
        )
        for rep in range(reps)
        for n in sizes
        for s in strategies
    ]
    if not plan:
        raise ConfigError("run_validation needs at least one strategy and one size")
    check_room(server, max(bs.n_clients for _, bs in plan))  # before the first herd
    for _, bs in plan:
        ensure_fd_limit(bs.n_clients, processes=bs.processes)
    real_rows, sim_rows, frames = [], [], []
    for rep, bs in plan:
        load_before = os.getloadavg()[0]
        run = run_big_herd(server, bs, seed=seed + rep)
        summary = {**run["summary"], "rep": rep, "load_1m_before": load_before}
        summary["backend"] = server.backend
        summary["load_1m_after"] = os.getloadavg()[0]
        real_rows.append(summary)
        simulated = simulate_fn(summary, costs)
        same = {"strategy": bs.label, "n_clients": bs.n_clients, "rep": rep}
        sim_rows.append({**simulated, **same})
        frames.append({k: run[k].assign(rep=rep) for k in _FRAMES})
        if progress is not None:
            progress(summary, sim_rows[-1])
    real, sim = pd.DataFrame(real_rows), pd.DataFrame(sim_rows)
    out = {k: pd.concat([f[k] for f in frames], ignore_index=True) for k in _FRAMES}
    return {"real": real, "sim": sim, "agreement": agreement(real, sim, level=level), **out}


# -- the script ----------------------------------------------------------------------------

#: Metric names in the Markdown table.
_SHORT = {
    "median_connected_after_ready_s": "median reconnect after ready (s)",
    "p90_connected_after_ready_s": "p90 reconnect after ready (s)",
    "timeouts": "timeouts",
    "peak_rate_after_restart_per_100ms": "peak attempts / 100 ms",
    "all_connected_after_ready_s": "all connected after ready (s)",
}


def _cell(value: float, low: float, high: float, n: int) -> str:
    if math.isnan(value):
        return f"– (n={n})"
    return f"{value:.3g} [{low:.3g}, {high:.3g}] (n={n})"


def markdown_table(table: pd.DataFrame) -> str:
    """The agreement table as Markdown: one row per strategy, N and metric."""
    lines = [
        "| strategy | N | metric | real | sim | real/sim | agrees |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples(index=False):
        real = _cell(r.real, r.real_low, r.real_high, r.real_n)
        sim = _cell(r.sim, r.sim_low, r.sim_high, r.sim_n)
        how = "within 25 %" if r.within_tolerance else "overlap" if r.intervals_overlap else ""
        agrees = f"yes ({how})" if r.agrees else "**no**"
        lines.append(
            f"| {r.strategy} | {r.n_clients:,} | {_SHORT.get(r.metric, r.metric)} | {real} | "
            f"{sim} | {r.ratio:.2f} | {agrees} |"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sizes must be comma-separated integers >= 2, got {text!r}") from None
    if not sizes or any(n < 2 for n in sizes):
        raise ConfigError(f"--sizes must be comma-separated integers >= 2, got {text!r}")
    return sorted(set(sizes))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perfkit.retry.validation", description=__doc__)
    parser.add_argument("--sizes", default="100,300,1000", help="herd sizes, e.g. 100,300,1000")
    parser.add_argument("--reps", type=int, default=3, help="herds per strategy and size")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--out", type=Path, required=True, help="directory for the tables")
    parser.add_argument("--outage", type=float, default=1.0)
    parser.add_argument("--connect-timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--client-processes", type=int, default=None)
    parser.add_argument("--client-nice", type=int, default=None)
    parser.add_argument(
        "--shared-session",
        action="store_true",
        help="client processes in this process's session (with autogroups they then weigh "
        "as one entity against the backends: the model's client_sessions=1)",
    )
    parser.add_argument("--costs-n", type=int, default=200, help="connects to measure costs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resimulate",
        action="store_true",
        help="no herds: the model again for the herds in --out (real.csv, costs.json)",
    )
    return parser


def _check(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    """Every check before a server starts (ConfigError)."""
    sizes = _sizes(args.sizes)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if isinstance(args.reps, bool) or args.reps < 1:
        raise ConfigError(f"--reps must be >= 1, got {args.reps!r}")
    validate.integer("--costs-n", args.costs_n, minimum=40)
    for n in sizes:
        for s in strategies:
            bs = BigHerdSettings(
                strategy=s,
                n_clients=n,
                client_processes=args.client_processes,
                client_nice=args.client_nice,
                outage_s=args.outage,
            )
        ensure_fd_limit(n, processes=bs.processes)
    return strategies, sizes


def write_outputs(out: Mapping[str, pd.DataFrame], directory: Path, header: str) -> list[Path]:
    """real/sim/agreement CSVs, the herds' frames (gzip CSV) and agreement.md."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("real", "sim", "agreement", "processes"):
        if name in out:
            written.append(directory / f"{name}.csv")
            out[name].to_csv(written[-1], index=False)
    for name in ("attempts", "backends"):
        if name in out:
            written.append(directory / f"{name}.csv.gz")
            out[name].to_csv(written[-1], index=False)
    table = out["agreement"]
    largest = largest_agreeing_n(table)
    md = (
        f"{header}\n\nLargest N at which every strategy agrees on the median reconnect and "
        f"the timeouts: {largest if largest is not None else 'none'}\n\n{markdown_table(table)}\n"
    )
    written.append(directory / "agreement.md")
    written[-1].write_text(md)
    return written


def _resimulate(directory: Path) -> dict[str, pd.DataFrame]:
    real = pd.read_csv(directory / "real.csv")
    costs = json.loads((directory / "costs.json").read_text())["costs"]
    sim = pd.DataFrame(
        [
            {**contended_simulate(row, costs), **{k: row[k] for k in _SAME}}
            for row in real.to_dict("records")
        ]
    )
    return {"real": real, "sim": sim, "agreement": agreement(real, sim)}


_SAME = ("strategy", "n_clients", "rep")


def _progress(real: Mapping[str, Any], sim: Mapping[str, Any]) -> None:
    print(
        f"{real['strategy']:>20} N={real['n_clients']:>5} rep {real['rep']}: median "
        f"{real['median_connected_after_ready_s']:.2f} s "
        f"(sim {sim['median_connected_after_ready_s']:.2f})"
        f", timeouts {real['timeouts']} (sim {sim['timeouts']}), load {real['load_1m_before']:.2f}"
        f"->{real['load_1m_after']:.2f}, busiest loop peak {real['client_peak_cpu_util']:.2f}, "
        f"lag {real['client_loop_lag_max_s']:.2f} s",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perfkit.retry.validation``: costs, herds, the model, the tables."""
    args = _parser().parse_args(argv)
    started = time.monotonic()
    if args.resimulate:
        out = _resimulate(args.out)
        header = f"Re-simulated from {args.out}/real.csv"
    else:
        try:
            strategies, sizes = _check(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        with create_server(herd_server_settings(args.backend, max(sizes))) as server:
            costs = measure_setup_costs(server, n=args.costs_n, seed=args.seed)
            print(costs.summary(), flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "costs.json").write_text(
                json.dumps({"costs": costs.to_dict(), "measured": costs.row()}, default=str)
            )
            out = run_validation(
                server, strategies, sizes, args.reps, contended_simulate, costs.to_dict(),
                outage_s=args.outage, connect_timeout=args.connect_timeout,
                deadline=args.deadline, client_processes=args.client_processes,
                client_nice=args.client_nice, own_sessions=not args.shared_session,
                seed=args.seed, progress=_progress,
            )  # fmt: skip
        header = (
            f"{args.backend} backend, sizes {sizes}, {args.reps} herds each, strategies "
            f"{', '.join(strategies)}; wall time {time.monotonic() - started:.0f} s"
        )
    written = write_outputs(out, args.out, header)
    print(markdown_table(out["agreement"]))
    print(f"largest agreeing N: {largest_agreeing_n(out['agreement'])}")
    print(f"wall time {time.monotonic() - started:.1f} s; wrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
