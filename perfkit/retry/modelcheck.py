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

import pandas as pd

from perfkit.postgres import PostgresServer
from perfkit.retry import contention, fleetrun, validation
from perfkit.retry.bigherd import BigHerdSettings, default_client_processes, run_big_herd
from perfkit.retry.contention import ContentionSettings, simulate_contended
from perfkit.retry.fleet import FleetRecommendation, recommend_for_fleet
from perfkit.retry.fleetrun import RECOMMENDED
from perfkit.retry.setupcost import measure_setup_costs, model_costs

Frames = dict[str, pd.DataFrame]
Say = Callable[[str], None]

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


def _recommended_herds(
    server: PostgresServer, rec: FleetRecommendation, plan: CheckPlan
) -> pd.DataFrame:
    """``plan.reps`` real herds of the recommendation (its Strategy and retry budget)."""
    settings = BigHerdSettings(
        strategy=rec.strategy,
        name=RECOMMENDED,
        retry_budget=rec.budget,
        n_clients=rec.n_clients,
        outage_s=plan.outage_s,
        connect_timeout=plan.connect_timeout,
        deadline=plan.deadline,
    )
    rows = []
    for rep in range(plan.reps):
        summary = run_big_herd(server, settings, seed=plan.seed + rep)["summary"]
        rows.append({**summary, "rep": rep, "backend": server.backend})
    return pd.DataFrame(rows)


def run_check(server: PostgresServer, plan: CheckPlan, say: Say, *, level: float = 0.95) -> Frames:
    """The stage (module docstring) on a running ``server`` with room for the largest herd."""
    say(f"setup costs: {plan.cost_samples} connects ...")
    costs = measure_setup_costs(server, n=plan.cost_samples, seed=plan.seed)
    cost_map = costs.to_dict()
    say(
        f"real herds: {', '.join(plan.strategies)} x {plan.sizes} clients x {plan.reps} "
        "(and the contention model's view of each) ..."
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
    size = plan.fleet_size
    largest = real[real["n_clients"] == size]
    say(f"fleet recommendation for {size:,} clients (contention model) ...")
    rec = recommend_for_fleet(
        size,
        cost_map,
        attempt_weight=plan.attempt_weight_s,
        **fleetrun.scenario_from(largest.iloc[0].to_dict()),
    )
    say(f"the recommendation, for real: {size:,} clients x {plan.reps} ...")
    mine = _recommended_herds(server, rec, plan)
    at_size = pd.concat([mine, largest], ignore_index=True)
    table = fleetrun.summarise(at_size, level=level)
    row = {**rec.to_dict(), "describe": rec.describe()}
    row["measured_sentence"] = fleetrun.sentence(rec, table)
    verdict = fleetrun.all_connected_verdict(at_size)
    row["verdict"] = "" if verdict is None else verdict.text(unit="s")
    return {
        "setup_costs": pd.DataFrame([costs.row()]),
        "validation_real": pd.concat([real, mine], ignore_index=True),
        "validation_sim": checked["sim"],
        "validation": checked["agreement"],
        "fleet": rec.comparison.assign(n_clients=size),
        "fleet_recommendation": pd.DataFrame([row]),
        "fleet_real": table.assign(n_clients=size),
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
    costs = model_costs(setup_costs.iloc[0])
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
            **validation.VALIDATED_MODEL,
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
    "run_check",
    "validated_up_to",
]
