"""The retry lab's ``fleet`` stage: does the herd model hold here, and what should a fleet use?

On the lab's own server, in this order:

1. the costs of one connection (:func:`perfkit.retry.setupcost.measure_setup_costs`:
   server and client CPU per connect, cores), measured on the idle server and
   never fitted to the herds they are checked against;
2. the backoff recommended for a fleet of the largest checked size
   (:func:`perfkit.retry.fleet.recommend_for_fleet`, searched in the contention
   model on those costs);
3. real herds of every checked strategy and size, repeated and interleaved,
   each next to the contention model's prediction of the same herd
   (:func:`perfkit.retry.validation.run_validation`), and the recommendation's
   real herds at the largest size.

Frames: ``setup_costs`` (one row), ``validation_real`` / ``validation_sim`` (one
row per herd), ``validation`` (the agreement table: real vs simulated medians
over the herds with intervals, per strategy, size and metric), ``fleet`` (the
recommendation's predicted numbers next to the named strategies') and
``fleet_real`` (measured time until all connected per strategy at the largest
size, with intervals over the herds). :func:`assumptions` lists the model's
assumptions for the notebook, from :mod:`perfkit.retry.contention`'s docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from perfkit.postgres import PostgresServer
from perfkit.retry import contention, validation
from perfkit.retry.bigherd import default_client_processes
from perfkit.retry.contention import ContentionSettings, simulate_contended
from perfkit.retry.fleet import FleetRecommendation, recommend_for_fleet
from perfkit.retry.setupcost import COST_KEYS, measure_setup_costs

Frames = dict[str, pd.DataFrame]
Say = Callable[[str], None]

#: The label of the recommended schedule in the herds and tables.
RECOMMENDED = "recommended"
#: The metric the fleet recommendation is judged on, measured.
FLEET_METRIC = "all_connected_after_ready_s"
#: The large simulation's second connect timeout: gRPC's MIN_CONNECT_TIMEOUT.
LONG_TIMEOUT_S = 20.0


@dataclass(frozen=True, kw_only=True)
class CheckPlan:
    """What the stage runs (the lab's parameters, resolved)."""

    strategies: tuple[str, ...]
    sizes: tuple[int, ...]
    reps: int
    outage_s: float
    connect_timeout: float
    deadline: float
    attempt_weight_s: float
    cost_samples: int
    seed: int

    @property
    def fleet_size(self) -> int:
        return max(self.sizes)


def assumptions() -> list[str]:
    """The contention model's numbered assumptions, one string each, from its docstring."""
    lines = (contention.__doc__ or "").split("Assumptions", 1)[-1].splitlines()
    items: list[list[str]] = []
    for line in lines[1:]:
        if re.match(r"^\d+\. ", line):
            items.append([re.sub(r"^\d+\.\s*", "", line)])
        elif items and line.startswith(" "):
            items[-1].append(line.strip())
        elif items and line.strip():
            break  # the first paragraph after the list
    return [_markdown(" ".join(item)) for item in items]


def _markdown(text: str) -> str:
    """reStructuredText's roles and double backticks as Markdown code."""
    text = re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    return text.replace("``", "`")


def _measured_fleet(real: pd.DataFrame, size: int, level: float) -> pd.DataFrame:
    """Per strategy at ``size``: median time until all connected over the herds, interval."""
    rows = []
    at = real[real["n_clients"] == size]
    for name, cell in at.groupby("strategy", sort=False):
        est = validation.median_interval(cell[FLEET_METRIC].astype(float), level=level)
        gave_up = int(cell["gave_up"].sum()) if "gave_up" in cell else 0
        rows.append(
            {
                "strategy": str(name),
                "n_clients": size,
                "herds": len(cell),
                "all_connected_s": est["value"],
                "all_connected_s_low": est["low"],
                "all_connected_s_high": est["high"],
                "n": est["n"],
                "interval": est["interval"],
                "coverage": est["coverage"],
                "gave_up": gave_up,
            }
        )
    return pd.DataFrame(rows)


def measured_sentence(fleet_real: pd.DataFrame, recommendation: Mapping[str, Any]) -> str:
    """``for N clients against this server use …; all connected after X s [lo, hi] vs Y s
    for naive`` from the real herds (the recommendation's words, measured numbers)."""
    rows = fleet_real.set_index("strategy")
    if RECOMMENDED not in rows.index:
        return ""

    def seconds(name: str) -> str:
        r = rows.loc[name]
        if pd.isna(r["all_connected_s"]):
            return f"not all connected in {int(r['herds'])} herds"
        return (
            f"{r['all_connected_s']:.2f} s [{r['all_connected_s_low']:.2f}, "
            f"{r['all_connected_s_high']:.2f}]"
        )

    mine = rows.loc[RECOMMENDED]
    text = (
        f"for {int(mine['n_clients']):,} clients against this server use "
        f"{recommendation['describe']}; all connected after {seconds(RECOMMENDED)}"
    )
    if "naive" in rows.index:
        text += f" vs {seconds('naive')} for naive"
    coverage = float(mine["coverage"])
    return text + f" (measured: median of {int(mine['herds'])} herds each, {coverage:.0%} interval)"


def recommendation_row(rec: FleetRecommendation) -> dict[str, Any]:
    """The recommendation as one frame row (its settings, prediction and sentence)."""
    return {**rec.to_dict(), "describe": rec.describe()}


def run_check(
    server: PostgresServer,
    plan: CheckPlan,
    say: Say,
    *,
    run_recommended: Callable[..., pd.DataFrame] | None = None,
    level: float = 0.95,
) -> Frames:
    """The stage (module docstring) on a running ``server`` with room for the largest herd."""
    say(f"setup costs: {plan.cost_samples} connects ...")
    costs = measure_setup_costs(server, n=plan.cost_samples, seed=plan.seed)
    cost_map = costs.to_dict()
    size = plan.fleet_size
    say(f"fleet recommendation for {size:,} clients (contention model) ...")
    rec = recommend_for_fleet(
        size,
        cost_map,
        attempt_weight=plan.attempt_weight_s,
        outage_s=plan.outage_s,
        connect_timeout=plan.connect_timeout,
        deadline=plan.deadline,
    )
    say(
        f"real herds: {', '.join(plan.strategies)} x {plan.sizes} clients x {plan.reps} "
        "(and the model's view of each) ..."
    )
    checked = validation.run_validation(
        server,
        list(plan.strategies),
        list(plan.sizes),
        plan.reps,
        validation.contended_simulate,
        cost_map,
        outage_s=plan.outage_s,
        connect_timeout=plan.connect_timeout,
        deadline=plan.deadline,
        seed=plan.seed,
        level=level,
    )
    real = checked["real"]
    if run_recommended is not None:
        say(f"the recommendation, for real: {size:,} clients x {plan.reps} ...")
        mine = run_recommended(server, rec, size, plan.reps, seed=plan.seed)
        real = pd.concat([real, mine.assign(strategy=RECOMMENDED)], ignore_index=True)
    row = recommendation_row(rec)
    fleet_real = _measured_fleet(real, size, level)
    row["measured_sentence"] = measured_sentence(fleet_real, row)
    fleet = rec.comparison.assign(n_clients=size)
    return {
        "setup_costs": pd.DataFrame([costs.row()]),
        "validation_real": real,
        "validation_sim": checked["sim"],
        "validation": checked["agreement"],
        "fleet": fleet,
        "fleet_recommendation": pd.DataFrame([row]),
        "fleet_real": fleet_real,
    }


def costs_frame(server: PostgresServer, plan: CheckPlan) -> pd.DataFrame:
    """``setup_costs`` alone (for the large simulation when the check did not run)."""
    return pd.DataFrame([measure_setup_costs(server, n=plan.cost_samples, seed=plan.seed).row()])


def large_simulation(
    setup_costs: pd.DataFrame,
    strategies: Sequence[str],
    *,
    n_clients: int,
    outage_s: float,
    connect_timeout: float,
    deadline: float,
    seed: int,
    validated_up_to: int | None,
) -> pd.DataFrame:
    """Every strategy in the contention model on the measured costs, at the lab's connect
    timeout and gRPC's 20 s, flagged beyond the largest N the model was shown to hold at.

    The herd is configured as the checked ones were: clients on this machine, spread over
    client processes as :class:`~perfkit.retry.bigherd.BigHerdSettings` spreads them.
    """
    row = setup_costs.iloc[0]
    costs = {key: float(row[key]) for key in COST_KEYS}
    postmaster = row.get("postmaster_cpu_per_connect_s")
    if postmaster is not None and pd.notna(postmaster):
        costs["postmaster_cpu_per_connect_s"] = min(
            float(postmaster), costs["server_cpu_per_connect_s"]
        )
    rows = []
    for timeout in dict.fromkeys([connect_timeout, LONG_TIMEOUT_S]):
        settings = ContentionSettings.from_costs(
            costs,
            n_clients=n_clients,
            outage_s=outage_s,
            connect_timeout=timeout,
            deadline=deadline,
            start_spread_s=0.1,
            client_processes=default_client_processes(n_clients, int(costs["cores"])),
        )
        for name in strategies:
            rows.append({**simulate_contended(name, settings, seed=seed).summary(),
                         "model": "contention"})  # fmt: skip
    return flag_beyond(pd.DataFrame(rows), validated_up_to)


def validated_up_to(frames: Mapping[str, pd.DataFrame]) -> int | None:
    """The largest N at which the model agreed with every checked strategy (None: none)."""
    table = frames.get("validation")
    if table is None or table.empty:
        return None
    named = [s for s in dict.fromkeys(table["strategy"]) if s != RECOMMENDED]
    return validation.largest_agreeing_n(table, strategies=named)


def flag_beyond(simulation: pd.DataFrame, largest: int | None) -> pd.DataFrame:
    """``simulation`` with ``validated_up_to`` and ``beyond_validated`` (True past ``largest``)."""
    out = simulation.copy()
    out["validated_up_to"] = largest
    out["beyond_validated"] = True if largest is None else out["n_clients"] > largest
    return out


__all__: Sequence[str] = [
    "RECOMMENDED",
    "CheckPlan",
    "assumptions",
    "costs_frame",
    "flag_beyond",
    "large_simulation",
    "measured_sentence",
    "run_check",
    "validated_up_to",
]
