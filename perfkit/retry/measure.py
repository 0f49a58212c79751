"""The retry lab's measurements: every scenario against real servers, in named steps.

:func:`run_lab` times fresh boots, runs the first round of outages and cold
starts (the cold start with a schedule fitted to the boots), spends the time
budget on extra rounds (:mod:`perfkit.retry.adaptive`), then hangs, the
calibration and the herds; the frames are computed from what it measured
(:mod:`perfkit.retry.analysis`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit.lab import Progress
from perfkit.postgres import FAST_SERVER_SETTINGS, PostgresServer, ServerSettings, create_server
from perfkit.retry import (
    adaptive,
    analysis,
    evidence,
    experiments,
    herd,
    model,
    modelcheck,
    readiness,
)
from perfkit.retry.bigherd import MAX_CONNECTIONS_MARGIN
from perfkit.retry.conclusions import FITTED
from perfkit.retry.probe import LOG_CONNECTION_SETTINGS
from perfkit.serverprofile.profiler import FRAME_NAMES as PROFILE_FRAMES

if TYPE_CHECKING:
    from perfkit.retry.lab import Params

Frames = dict[str, pd.DataFrame]


def server_settings(params: Params, **gucs: Any) -> ServerSettings:
    """The lab's server: fast settings plus ``gucs``, on the chosen backend."""
    return ServerSettings(backend=params.backend, server_settings={**FAST_SERVER_SETTINGS, **gucs})


def hang_specs(params: Params) -> list[experiments.ClientSpec]:
    """With and without a connect timeout, for naive and the review's backoff."""
    specs = []
    for name in ("naive", "review"):
        for timeout in (None, params.connect_timeout):
            specs.append(
                experiments.ClientSpec(
                    strategy=name,
                    connect_timeout=timeout,
                    deadline=params.deadline,
                    label=f"{name} / {'no timeout' if timeout is None else f'{timeout:g} s'}",
                )
            )
    if "grpc" in params.strategies:
        specs.append(
            experiments.ClientSpec(
                strategy="grpc",
                connect_timeout=None,
                deadline=params.deadline,
                label="grpc / own (>= 20 s)",
            )
        )
    return specs


def fit_schedule(params: Params, ready: np.ndarray, costs: model.AttemptCosts) -> model.Fit:
    """The schedule fitted to this run's ready times (labelled :data:`FITTED`)."""
    return model.fit(
        ready,
        costs=costs,
        weight_attempts=params.attempt_weight_s,
        connect_timeout=params.connect_timeout,
        deadline=params.deadline,  # max_attempts from the deadline: long outages still stop
        n=analysis.MODEL_CLIENTS,
        rng=params.seed,
        label=FITTED,
    )


def round_overheads(result: experiments.ScenarioResult, seconds: float) -> list[float]:
    """Per run: wall time beyond the slowest client (server start, probe, restart)."""
    runs = result.runs
    if runs.empty:
        return []
    per_rep = runs.groupby("rep")["time_to_connect_s"].max().fillna(0.0)
    each = (seconds - float(per_rep.sum())) / len(per_rep)
    return [max(0.0, each)] * len(per_rep)


@dataclass
class Rounds:
    """The cold starts and outages of one run: a first round, then the budget's extra rounds."""

    params: Params
    server: PostgresServer | None  # None when no selected stage needs the lab's server
    say: Progress
    started: float = field(default_factory=time.monotonic)
    runs: list[pd.DataFrame] = field(default_factory=list)
    attempts: list[pd.DataFrame] = field(default_factory=list)
    budget_rows: list[dict[str, Any]] = field(default_factory=list)
    overheads: dict[adaptive.Key, list[float]] = field(default_factory=dict)
    next_rep: dict[adaptive.Key, int] = field(default_factory=dict)
    specs: dict[str, experiments.ClientSpec] = field(default_factory=dict)

    def record_first(self, key: adaptive.Key, result: experiments.ScenarioResult, t: float) -> None:
        """Keep a first-round result, its per-run overhead and its ``budget`` row (round 0)."""
        seconds = time.monotonic() - t
        self.runs.append(result.runs)
        self.attempts.append(result.attempts)
        self.overheads[key] = round_overheads(result, seconds)
        self.next_rep[key] = self.params.repetitions
        labels = list(dict.fromkeys(result.runs["label"])) if not result.runs.empty else []
        spent = time.monotonic() - self.started
        self.budget_rows.append(
            adaptive.budget_row(0, key, labels, seconds, spent, self.params.time_budget)
        )

    def run_round(self, key: adaptive.Key, labels: Sequence[str], rnd: int) -> pd.DataFrame:
        """One extra run of scenario ``key`` with ``labels`` (:data:`adaptive.RunRound`)."""
        p = self.params
        scenario, length = key
        specs = [self.specs[label] for label in labels]
        self.say(
            f"extra round {rnd}: {scenario} {'' if length is None else f'{length:g} s '}"
            f"[{', '.join(labels)}]"
        )
        first = self.next_rep[key]
        self.next_rep[key] += 1
        if scenario == "cold_start":
            result = experiments.cold_start(
                server_settings(p), specs, reps=1, seed=p.seed, first_rep=first
            )
        else:
            assert length is not None and self.server is not None
            result = experiments.outage(
                self.server, specs, outage_s=[length], reps=1, seed=p.seed, first_rep=first
            )
        self.attempts.append(result.attempts)
        return result.runs


def analytic_frames(params: Params) -> Frames:
    """``worst_case`` and ``review_claim``: computed, no server."""
    return {
        "worst_case": analysis.worst_case_table(
            params.strategies,
            connect_timeout=params.connect_timeout,
            samples=params.worst_case_samples,
            seed=params.seed,
        ),
        "review_claim": analysis.review_claim(
            connect_timeout=params.connect_timeout,
            samples=params.worst_case_samples,
            seed=params.seed,
        ),
    }


def outage_round(rounds: Rounds) -> model.AttemptCosts:
    """Outages of every length (first round); the attempt costs they show for the fit."""
    p, say = rounds.params, rounds.say
    named = experiments.specs_for(
        p.strategies, connect_timeout=p.connect_timeout, deadline=p.deadline
    )
    assert rounds.server is not None
    for length in p.outage_s:
        say(f"outage {length:g} s x {p.repetitions} ...")
        t = time.monotonic()
        out = experiments.outage(
            rounds.server, named, outage_s=[length], reps=p.repetitions, seed=p.seed
        )
        rounds.record_first(("outage", length), out, t)
    outage_attempts = pd.concat(rounds.attempts, ignore_index=True)
    outage_runs = pd.concat(rounds.runs, ignore_index=True)
    # An attempt during a boot fails at once on both backends (local: refused; docker:
    # the proxy closes it while the new container's port is shut), unlike an attempt
    # during a restart of a running container, which the proxy may hold.
    return dataclasses.replace(
        model.estimate_costs(outage_attempts, outage_runs), hang_window_s=0.0
    )


def cold_start_round(
    rounds: Rounds, boot_ready: np.ndarray, costs: model.AttemptCosts, keep: Callable[[Any], None]
) -> model.Fit:
    """A schedule fitted to the boots, then the cold start with it next to the named ones."""
    p, say = rounds.params, rounds.say
    say(f"fitting a schedule to {len(boot_ready)} boots ...")
    fitted = fit_schedule(p, boot_ready, costs)
    cold_specs = experiments.specs_for(
        {**{name: name for name in p.strategies}, FITTED: fitted.strategy},
        connect_timeout=p.connect_timeout,
        deadline=p.deadline,
    )
    say(f"cold start x {p.repetitions} (with the fitted schedule) ...")
    t = time.monotonic()
    cold = experiments.cold_start(
        server_settings(p), cold_specs, reps=p.repetitions, seed=p.seed, on_server=keep
    )
    rounds.record_first(("cold_start", None), cold, t)
    rounds.specs = {s.label: s for s in cold_specs}
    return fitted


def first_round(
    rounds: Rounds, boot_ready: np.ndarray | None, keep: Callable[[Any], None]
) -> model.Fit | None:
    """The selected outages, then (with boots) the cold start with a fitted schedule.

    Without outages the fit assumes :class:`~perfkit.retry.model.AttemptCosts`' defaults.
    """
    p = rounds.params
    costs = outage_round(rounds) if p.ran("outages") else model.AttemptCosts()
    if boot_ready is None:
        return None
    return cold_start_round(rounds, boot_ready, costs, keep)


def extra_rounds(rounds: Rounds) -> pd.DataFrame:
    """Spend the time budget on undecided comparisons; return the ``budget`` frame."""
    runs = pd.concat(rounds.runs, ignore_index=True)
    runs, extra, stop = adaptive.spend_budget(
        runs,
        evidence.comparisons_of(runs, fitted=FITTED),
        rounds.run_round,
        budget_s=rounds.params.time_budget,
        spent_s=time.monotonic() - rounds.started,
        overheads=rounds.overheads,
        seed=rounds.params.seed,
    )
    rounds.say(f"budget: {len(extra)} extra runs, stopped: {stop}")
    rounds.runs = [runs]
    return adaptive.budget_frame([*rounds.budget_rows, *extra], stop)


def hang_round(rounds: Rounds) -> None:
    """The hang scenario on the lab's server (its runs join the others)."""
    p = rounds.params
    rounds.say(f"hang {p.hang_s} s ...")
    assert rounds.server is not None
    hung = experiments.hang(rounds.server, hang_specs(p), hang_s=p.hang_s, seed=p.seed)
    rounds.runs.append(hung.runs)
    rounds.attempts.append(hung.attempts)


def herds(rounds: Rounds, limit: int) -> tuple[dict[str, float], dict[str, pd.DataFrame] | None]:
    """The calibration (for the herd and the simulation), then the herd sweep if selected."""
    p, say, server = rounds.params, rounds.say, rounds.server
    assert server is not None
    say("calibration ...")
    calibration = herd.calibrate(server, burst=min(100, limit - 10), seed=p.seed)
    if not p.ran("herd"):
        return calibration, None
    say(f"herd {p.herd_strategies} x {p.client_counts} clients ...")
    rate = p.herd_token_rate
    herd_frames = herd.herd_sweep(
        server,
        p.herd_strategies,
        p.client_counts,
        outage_s=p.herd_outage_s,
        connect_timeout=p.connect_timeout,
        deadline=p.deadline,
        seed=p.seed,
        token_bucket_runs=[("naive", max(p.client_counts), rate)]
        if rate is not None and "naive" in p.herd_strategies
        else [],
    )
    return calibration, herd_frames


def herd_result_frames(
    herd_frames: dict[str, pd.DataFrame], calibration: dict[str, float]
) -> Frames:
    """``herd``, ``herd_rates`` (client traces, server log), ``herd_backends``, ``calibration``
    and the herd's server profile (``wait_profile``, ``top_statements``, ``server_counters``)."""
    client_rates = herd.rate_frame(herd_frames["herd_attempts"])
    client_rates["source"] = "client"
    server_rates = herd.rate_frame(herd_frames["herd_server_attempts"])
    server_rates["source"] = "server_log"
    return {
        "herd": herd_frames["herd"],
        "herd_rates": pd.concat([client_rates, server_rates], ignore_index=True),
        "herd_backends": herd_frames["herd_backends"],
        "calibration": pd.DataFrame([calibration]),
    } | {name: herd_frames[name] for name in PROFILE_FRAMES if name in herd_frames}


#: Stages that need the lab's own long-lived server (the cold start boots its own).
SERVER_STAGES = ("outages", "budget", "hang", "herd", "fleet", "simulation")


def check_plan(params: Params) -> modelcheck.CheckPlan:
    """The ``fleet`` stage's plan from the lab's parameters."""
    p = params
    return modelcheck.CheckPlan(
        strategies=tuple(p.fleet_strategies),
        sizes=tuple(p.fleet_sizes),
        reps=p.fleet_reps,
        outage_s=p.herd_outage_s,
        connect_timeout=p.connect_timeout,
        deadline=p.deadline,
        attempt_weight_s=p.attempt_weight_s,
        cost_samples=p.cost_samples,
        seed=p.seed,
    )


def max_connections_for(params: Params) -> int:
    """The lab server's max_connections: the largest herd or checked size, plus room."""
    sizes = [*params.client_counts]
    if params.ran("fleet"):
        sizes += params.fleet_sizes
    return max(sizes) + MAX_CONNECTIONS_MARGIN


def run_lab(params: Params, *, progress: Progress = print) -> tuple[Frames, dict[str, Any]]:
    """Run the selected stages (``params.stages``; all by default); return (frames, server
    description for the metadata). Frames of stages not run are absent."""
    p = params
    described: dict[str, Any] = {}
    t_lab = time.perf_counter()

    def say(message: str) -> None:
        progress(f"[{time.perf_counter() - t_lab:6.1f} s] {message}")

    def keep(server: Any) -> None:
        if not described:
            described.update(server.describe())

    frames: Frames = {}
    if p.ran("analytic"):
        say("analytic worst case ...")
        frames.update(analytic_frames(p))
    boot_ready = None
    if p.ran("cold_start"):
        # Fresh boots set up and timed exactly as the cold start's (a new container on docker:
        # restarting one is several times faster than booting a new one, 0.2 s vs 1.2 s here).
        say(f"ready times: {p.ready_boots} fresh boots ...")
        boot_ready = readiness.ready_time_samples(
            p.ready_boots, settings=server_settings(p), fresh=True
        )
    limit = max_connections_for(p)
    lab_settings = server_settings(p, max_connections=limit, **LOG_CONNECTION_SETTINGS)
    needs_server = any(p.ran(stage) for stage in SERVER_STAGES)
    server_or_none = create_server(lab_settings) if needs_server else contextlib.nullcontext()
    with server_or_none as server:
        rounds = Rounds(params=p, server=server, say=say)
        if server is not None and not p.ran("cold_start"):
            keep(server)
        fitted = first_round(rounds, boot_ready, keep)
        if p.ran("budget"):
            frames["budget"] = extra_rounds(rounds)
        if p.ran("hang"):
            hang_round(rounds)
        needs_calibration = p.ran("herd") or p.ran("simulation")
        calibration, herd_frames = herds(rounds, limit) if needs_calibration else ({}, None)
        if p.ran("fleet"):
            assert server is not None
            frames.update(modelcheck.run_check(server, check_plan(p), say))
        if p.ran("simulation") and "setup_costs" not in frames:
            assert server is not None
            say("setup costs for the large simulation ...")
            frames["setup_costs"] = modelcheck.costs_frame(server, check_plan(p))
    if rounds.runs:
        runs = pd.concat(rounds.runs, ignore_index=True)
        attempts = pd.concat(rounds.attempts, ignore_index=True)
        frames.update(
            measured_frames(p, runs, attempts, boot_ready, fitted, frames.get("worst_case"), say)
        )
    frames.update(simulated_frames(p, calibration, herd_frames, say, frames))
    samples = (
        evidence.samples_frame(frames["runs"], analysis.HEADLINE_LABELS)
        if "runs" in frames
        else analysis.empty_samples()
    )
    frames["headline"] = analysis.headline_frame(frames.get("review_claim"), samples)
    frames["samples"] = samples
    say("lab done")
    return frames, described


def simulated_frames(
    p: Params,
    calibration: dict[str, float],
    herd_frames: dict[str, pd.DataFrame] | None,
    say: Progress,
    measured: Frames,
) -> Frames:
    """The herd's frames and the simulation checked against it; the large simulation (the
    contention model on the measured setup costs, flagged beyond the largest checked N)."""
    frames: Frames = {}
    if calibration:
        frames["calibration"] = pd.DataFrame([calibration])
    if herd_frames is not None:
        frames.update(herd_result_frames(herd_frames, calibration))
        say("simulation vs real herd ...")
        frames["sim_vs_real"], frames["sim_rates"] = analysis.sim_compare(
            herd_frames, calibration, deadline=p.deadline, seed=p.seed
        )
    if p.ran("simulation"):
        say(f"simulation of {p.sim_clients:,} clients (contention model) ...")
        frames["simulation"] = modelcheck.large_simulation(
            measured["setup_costs"],
            p.strategies,
            n_clients=p.sim_clients,
            outage_s=p.herd_outage_s,
            connect_timeout=p.connect_timeout,
            deadline=p.deadline,
            seed=p.seed,
            validated_up_to=modelcheck.validated_up_to(measured),
        )
    return frames


def measured_frames(
    p: Params,
    runs: pd.DataFrame,
    attempts: pd.DataFrame,
    boot_ready: np.ndarray | None,
    fitted: model.Fit | None,
    worst_case: pd.DataFrame | None,
    say: Progress,
) -> Frames:
    """``runs``, ``attempts``, ``summary``, ``connect_time``, ``verdicts`` and (after a cold
    start) the model's frames, from the cold starts, outages and hangs."""
    frames: Frames = {"runs": runs, "attempts": attempts}
    frames["summary"] = experiments.summarize(
        runs, by=("scenario", "param_s", "label"), seed=p.seed
    )
    frames["connect_time"] = analysis.connect_time_table(runs, worst_case)
    frames["verdicts"] = evidence.verdict_frame(runs, fitted=FITTED, seed=p.seed)
    if boot_ready is None or fitted is None:
        return frames
    say("model: predicted vs measured ...")
    frames.update(
        analysis.model_frames(
            runs,
            attempts,
            boot_ready,
            fitted,
            strategies=p.strategies,
            connect_timeout=p.connect_timeout,
            deadline=p.deadline,
            seed=p.seed,
        )
    )
    return frames
