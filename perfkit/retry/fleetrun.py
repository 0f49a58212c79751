"""The fleet recommendation run for real, next to the named strategies.

:func:`perfkit.retry.fleet.recommend_for_fleet` picks a schedule (and maybe a
shared retry budget) in the contention model. :func:`run_fleet_check` runs it
on real herds (:func:`perfkit.retry.bigherd.run_big_herd`, the
recommendation's :class:`~perfkit.retry.strategies.Strategy` object itself),
``reps`` herds each, interleaved with the named strategies' herds so drift on a
shared machine spreads over all of them, and reports the time until all were
connected (from the server being ready) per strategy: the median over the herds
with its interval (the range of the herds when there are fewer than 6, with
the coverage that range has), n, and a verdict from :func:`perfkit.decide`
(a winner only when the herds separate it).

A shared retry budget is a fleet-wide token bucket in the model. Real client
loops run in separate processes, so each gets ``capacity / P`` tokens at once
and ``refill / P`` per second (:func:`perfkit.retry.herdproc.share_budget`):
the same total rate, without lending between loops.

The scenario the search assumes (outage, boot, hang window, notice spread,
``max_connections``, backlog, timeouts) is taken from a pilot herd of the
first named strategy on the same server (:func:`scenario_from`); the pilot is
not counted.

Run it: ``python -m perfkit.retry.fleetrun --clients 1000 --reps 3 --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.postgres import PostgresServer, create_server
from perfkit.retry.bigherd import (
    DEFAULT_STRATEGIES,
    BigHerdSettings,
    herd_server_settings,
    run_big_herd,
    sim_settings_for,
)
from perfkit.retry.fleet import FleetRecommendation, recommend_for_fleet
from perfkit.retry.herdproc import ensure_fd_limit
from perfkit.retry.setupcost import measure_setup_costs
from perfkit.retry.simulate import SimSettings
from perfkit.retry.validation import VALIDATED_MODEL, herd_side, median_interval
from perfkit.verdicts import Verdict, decide

RECOMMENDED = "recommended"
#: Per-herd metrics reported per strategy.
METRICS = (
    "all_connected_after_ready_s",
    "median_connected_after_ready_s",
    "p90_connected_after_ready_s",
    "timeouts",
    "attempts",
)


def scenario_from(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The model scenario of a real herd (:func:`sim_settings_for` without the costs and N),
    with the model's validated choices (:data:`~perfkit.retry.validation.VALIDATED_MODEL`)."""
    sim = sim_settings_for(dict(summary), {"connect_s": 0.0, "refused_s": 0.0, "capacity_per_s": 1})
    skip = {"n_clients", "capacity_per_s", "latency_s", "refused_s", "reject_s"}
    out = {f.name: getattr(sim, f.name) for f in fields(SimSettings) if f.name not in skip}
    return {**out, **herd_side(summary), **VALIDATED_MODEL}


def _settings(
    rec: FleetRecommendation, named: Sequence[str], herd: Mapping[str, Any]
) -> list[BigHerdSettings]:
    mine = BigHerdSettings(strategy=rec.strategy, name=RECOMMENDED, retry_budget=rec.budget, **herd)
    return [mine, *(BigHerdSettings(strategy=s, **herd) for s in named)]


def summarise(runs: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """One row per strategy: each metric's median over the herds, its interval and n."""
    rows = []
    for strategy, cell in runs.groupby("strategy", sort=False):
        row: dict[str, Any] = {"strategy": strategy, "herds": len(cell)}
        row["gave_up"] = int(cell["gave_up"].sum())
        for metric in METRICS:
            est = median_interval(cell[metric].astype(float), level=level)
            row.update({metric: est["value"], f"{metric}_low": est["low"],
                        f"{metric}_high": est["high"], f"{metric}_n": est["n"]})  # fmt: skip
            row["coverage"] = est["coverage"]
        rows.append(row)
    return pd.DataFrame(rows)


def _seconds(row: Mapping[str, Any]) -> str:
    m = "all_connected_after_ready_s"
    if math.isnan(row[m]):
        return "not all connected"
    return (
        f"{row[m]:.1f} s [{row[f'{m}_low']:.1f}, {row[f'{m}_high']:.1f}] "
        f"(n={int(row[f'{m}_n'])} herds)"
    )


def sentence(rec: FleetRecommendation, table: pd.DataFrame, against: str = "naive") -> str:
    """``for 1,000 clients against this server use …; all connected after X s [lo, hi]
    vs Y s [lo, hi] for naive``, from the real herds (intervals: the herds' range)."""
    rows = table.set_index("strategy")
    text = (
        f"for {rec.n_clients:,} clients against this server use {rec.describe()}; "
        f"all connected after {_seconds(rows.loc[RECOMMENDED])}"
    )
    if against in rows.index:
        text += f" vs {_seconds(rows.loc[against])} for {against}"
    named = rows.drop(index=[RECOMMENDED])
    if len(named):
        best = named["all_connected_after_ready_s"].idxmin()
        if best != against:
            text += f" ({_seconds(rows.loc[best])} for {best}, the best named)"
    return text + "; measured on real herds"


def all_connected_verdict(runs: pd.DataFrame) -> Verdict | None:
    """:func:`perfkit.decide` on the time until all connected, per strategy (a herd where
    someone gave up has no such time and is left out); None with fewer than two."""
    samples = {
        str(name): cell["all_connected_after_ready_s"].dropna().tolist()
        for name, cell in runs.groupby("strategy", sort=False)
    }
    samples = {name: values for name, values in samples.items() if values}
    return decide(samples) if len(samples) > 1 else None


def run_fleet_check(
    server: PostgresServer,
    rec: FleetRecommendation,
    *,
    reps: int = 3,
    named: Sequence[str] = DEFAULT_STRATEGIES,
    outage_s: float = 1.0,
    connect_timeout: float | None = 2.0,
    deadline: float | None = 60.0,
    client_processes: int | None = None,
    client_nice: int | None = None,
    seed: int = 0,
    progress: Callable[[Mapping[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Real herds of ``rec.n_clients``: the recommendation and each named strategy, ``reps``
    each, interleaved. Returns ``runs`` (one summary per herd), ``table``
    (:func:`summarise`), ``verdict`` (:func:`perfkit.decide` on the time until all
    connected) and ``sentence``. Every setting is checked before a herd starts."""
    validate.integer("reps", reps, minimum=1)
    herd = dict(n_clients=rec.n_clients, outage_s=outage_s, connect_timeout=connect_timeout,
                deadline=deadline, client_processes=client_processes,
                client_nice=client_nice)  # fmt: skip
    settings = _settings(rec, named, herd)
    ensure_fd_limit(rec.n_clients, processes=settings[0].processes)
    rows = []
    for rep in range(reps):
        for bs in settings:
            summary = {**run_big_herd(server, bs, seed=seed + rep)["summary"], "rep": rep}
            summary["backend"] = server.backend
            rows.append(summary)
            if progress is not None:
                progress(summary)
    runs = pd.DataFrame(rows)
    table = summarise(runs)
    verdict = all_connected_verdict(runs)
    return {"runs": runs, "table": table,
            "verdict": "" if verdict is None else verdict.text(unit="s"),
            "winner": None if verdict is None else verdict.winner,
            "sentence": sentence(rec, table)}  # fmt: skip


# -- the script ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perfkit.retry.fleetrun", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES))
    parser.add_argument("--backend", choices=["local", "docker"], default="local")
    parser.add_argument("--objective", choices=["all_connected", "p90"], default="all_connected")
    parser.add_argument("--attempt-weight", type=float, default=0.0)
    parser.add_argument("--seeds", type=int, default=3, help="model seeds for the evaluation")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _progress(s: Mapping[str, Any]) -> None:
    print(
        f"{s['strategy']:>20} rep {s['rep']}: all connected after "
        f"{s['all_connected_after_ready_s']:.2f} s, "
        f"median {s['median_connected_after_ready_s']:.2f} s, "
        f"timeouts {s['timeouts']}, gave up {s['gave_up']}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Costs, a pilot herd for the scenario, the search, then the real herds."""
    args = _parser().parse_args(argv)
    started = time.monotonic()
    named = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        for s in named:
            BigHerdSettings(strategy=s, n_clients=args.clients)
        validate.integer("--reps", args.reps, minimum=1)
        ensure_fd_limit(args.clients, processes=BigHerdSettings(strategy=named[0],
                        n_clients=args.clients).processes)  # fmt: skip
    except (ConfigError, IndexError) as exc:
        print(f"error: {exc or 'no strategies'}", file=sys.stderr)
        return 2
    with create_server(herd_server_settings(args.backend, args.clients)) as server:
        costs = measure_setup_costs(server, seed=args.seed)
        print(costs.summary(), flush=True)
        pilot = run_big_herd(server, BigHerdSettings(strategy=named[0], n_clients=args.clients))
        scenario = scenario_from({**pilot["summary"], "backend": server.backend})
        rec = recommend_for_fleet(args.clients, costs.to_dict(), objective=args.objective,
                                  attempt_weight=args.attempt_weight, seeds=args.seeds,
                                  **scenario)  # fmt: skip
        print("model:", rec.sentence(), flush=True)
        out = run_fleet_check(server, rec, reps=args.reps, named=named, seed=args.seed,
                              progress=_progress)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    out["runs"].to_csv(args.out / "fleet_runs.csv", index=False)
    out["table"].to_csv(args.out / "fleet_table.csv", index=False)
    wall = time.monotonic() - started
    report = {"sentence": out["sentence"], "verdict": out["verdict"], "model": rec.sentence(),
              "recommendation": rec.to_dict(), "scenario": scenario, "costs": costs.to_dict(),
              "wall_s": wall}  # fmt: skip
    (args.out / "fleet.json").write_text(json.dumps(report, indent=1, default=str))
    print(out["table"].round(3).to_string())
    print(out["sentence"])
    print(out["verdict"])
    print(f"wall time {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
