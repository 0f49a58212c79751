"""The connection-retry lab behind ``notebooks/01_connection_retry.ipynb``.

:class:`Params` holds the notebook's parameters (their defaults live only there),
:meth:`LabConfig.from_params` resolves them into the plan (ConfigError naming the
parameter, before any server starts), :func:`run_lab` runs every scenario and
:data:`LAB` exposes it all through the lab contract (:mod:`perfkit.lab`).

Frames (saved as ``experiment="retry"``; columns in ``/work/notes/retry.md``):
``worst_case``, ``review_claim``, ``runs``, ``attempts``, ``summary``,
``connect_time``, ``herd``, ``herd_rates``, ``herd_backends``, ``calibration``,
``sim_vs_real``, ``sim_rates``, ``simulation``, ``headline``; and ``verdicts``
(:mod:`perfkit.retry.evidence`), ``budget`` (:mod:`perfkit.retry.adaptive`),
``ready_times``, ``model``, ``model_vs_real``, ``fitted`` (the model and the fitted
schedule) and ``samples`` (per-run values behind the measured headlines).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit import headlines, validate
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Progress, Results, param
from perfkit.postgres import FAST_SERVER_SETTINGS, ServerSettings, create_server
from perfkit.retry import adaptive, analysis, evidence, experiments, herd, model, readiness
from perfkit.retry.conclusions import FITTED, conclusions
from perfkit.retry.probe import LOG_CONNECTION_SETTINGS, PROBE_INTERVAL_S
from perfkit.retry.simulate import SimSettings, simulate
from perfkit.retry.strategies import STRATEGIES, get_strategy
from perfkit.stats import Estimate, quantile_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALL_STRATEGIES = tuple(STRATEGIES)
QUICK_STRATEGIES = ("naive", "exponential", "full_jitter", "review")
SIM_LONG_TIMEOUT_S = 20.0
HERD_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter", "review", "grpc")
#: Label of the schedule fitted to this run's ready times (not in the STRATEGIES registry).
#: Simulated clients per model prediction.
MODEL_CLIENTS = 10_000
#: Headline variant -> the cold-start label behind it.
HEADLINE_LABELS = {"naive": "naive", "improved": "review"}
#: An attempt before ready that neither failed nor ended sooner than this hung (a port proxy).
HANG_MIN_S = 0.1


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The retry notebook's parameters: the only place their defaults and help live."""

    strategies: tuple[str, ...] | None = param(
        None, "names from perfkit.retry.STRATEGIES", full=ALL_STRATEGIES, quick=QUICK_STRATEGIES
    )
    repetitions: int | None = param(
        None, "first round of cold starts and outages per setting", full=3, quick=2
    )
    time_budget_s: float | None = param(
        None, "time for cold starts + outages, s (0: fixed reps)", full=75.0, quick=20.0
    )
    outage_s: tuple[float, ...] | None = param(
        None, "outage lengths in s", full=(1.0, 5.0), quick=(1.0,)
    )
    client_counts: tuple[int, ...] | None = param(None, "herd sizes", full=(10, 100), quick=(20,))
    herd_strategies: tuple[str, ...] | None = param(
        None, "strategies in the herd", full=HERD_STRATEGIES, quick=("naive", "full_jitter")
    )
    herd_outage_s: float | None = param(
        None, "outage before the herd reconnects, s", full=1.0, quick=0.5
    )
    hang_s: float | None = param(None, "how long the server stays frozen, s", full=3.0, quick=2.5)
    connect_timeout: float = param(2.0, "per-attempt connect timeout, s (libpq: whole s, min 2)")
    deadline: float = param(60.0, "hard limit on one client's retrying, in s")
    ready_boots: int | None = param(
        None, "fresh boots timed for the ready-time model", full=8, quick=3
    )
    attempt_weight_s: float = param(
        0.01, "fitted schedule: seconds of overshoot one attempt is worth"
    )
    sim_clients: int = param(10_000, "clients in the large simulation")
    worst_case_samples: int | None = param(
        None, "jitter samples per strategy", full=2000, quick=300
    )
    herd_budget_per_s: float | None = param(
        None, "naive + shared retry budget, retries/s (0: off)", full=50.0, quick=0.0
    )

    def check(self) -> None:
        LabConfig.from_params(self)


def _names(value: Sequence[Any], parameter: str) -> tuple[str, ...]:
    if not value:
        raise ConfigError(f"parameter {parameter!r} must not be empty")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"parameter {parameter!r}: {item!r} is not a strategy name")
        try:
            get_strategy(item)
        except ConfigError as exc:
            raise ConfigError(f"parameter {parameter!r}: {exc}") from None
    return tuple(value)


def _numbers(value: Sequence[Any], parameter: str, *, integer: bool = False) -> tuple[Any, ...]:
    label = f"parameter {parameter!r}"
    return tuple(validate.numbers(label, value, integers=integer, minimum=1 if integer else 0))


@dataclass(frozen=True, kw_only=True)
class LabConfig:
    """The lab's plan: :class:`Params` with every ``None`` resolved (no defaults of its own)."""

    backend: str
    quick: bool
    seed: int
    strategies: tuple[str, ...]
    repetitions: int
    time_budget_s: float | None
    outage_s: tuple[float, ...]
    client_counts: tuple[int, ...]
    herd_strategies: tuple[str, ...]
    herd_outage_s: float
    hang_s: float
    connect_timeout: float
    deadline: float
    ready_boots: int
    attempt_weight_s: float
    sim_clients: int
    worst_case_samples: int
    herd_budget_per_s: float | None

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ConfigError(f"parameter 'repetitions' must be >= 1, got {self.repetitions!r}")
        for name in ("connect_timeout", "deadline", "hang_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"parameter {name!r} must be > 0, got {getattr(self, name)!r}")
        if self.ready_boots < 1:
            raise ConfigError(f"parameter 'ready_boots' must be >= 1, got {self.ready_boots!r}")
        if self.attempt_weight_s < 0:
            raise ConfigError(
                f"parameter 'attempt_weight_s' must be >= 0, got {self.attempt_weight_s!r}"
            )
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ConfigError(
                f"parameter 'time_budget_s' must be >= 0 or None, got {self.time_budget_s!r}"
            )
        if self.herd_outage_s < 0:
            raise ConfigError(f"parameter 'herd_outage_s' must be >= 0, got {self.herd_outage_s}")
        if self.sim_clients < 1:
            raise ConfigError(f"parameter 'sim_clients' must be >= 1, got {self.sim_clients!r}")
        if self.herd_budget_per_s is not None and not self.herd_budget_per_s > 0:
            raise ConfigError(
                "parameter 'herd_budget_per_s' must be >= 0 or None, "
                f"got {self.herd_budget_per_s!r}"
            )
        if self.worst_case_samples < 1:
            raise ConfigError(
                f"parameter 'worst_case_samples' must be >= 1, got {self.worst_case_samples!r}"
            )

    @classmethod
    def from_params(cls, p: Params) -> LabConfig:
        budget = p.herd_budget_per_s
        if budget is not None and budget < 0:
            raise ConfigError(f"parameter 'herd_budget_per_s' must be >= 0 or None, got {budget}")
        time_budget = p.time_budget_s
        if time_budget is not None and time_budget < 0:
            raise ConfigError(f"parameter 'time_budget_s' must be >= 0 or None, got {time_budget}")
        return cls(
            backend=p.backend,
            quick=p.quick,
            seed=p.seed,
            strategies=_names(p.strategies, "strategies"),
            repetitions=p.repetitions,
            time_budget_s=float(time_budget) if time_budget else None,
            outage_s=tuple(float(x) for x in _numbers(p.outage_s, "outage_s")),
            client_counts=_numbers(p.client_counts, "client_counts", integer=True),
            herd_strategies=_names(p.herd_strategies, "herd_strategies"),
            herd_outage_s=float(p.herd_outage_s),
            hang_s=float(p.hang_s),
            connect_timeout=float(p.connect_timeout),
            deadline=float(p.deadline),
            ready_boots=p.ready_boots,
            attempt_weight_s=float(p.attempt_weight_s),
            sim_clients=p.sim_clients,
            worst_case_samples=p.worst_case_samples,
            herd_budget_per_s=float(budget) if budget else None,
        )

    def server_settings(self, **gucs: Any) -> ServerSettings:
        return ServerSettings(
            backend=self.backend, server_settings={**FAST_SERVER_SETTINGS, **gucs}
        )

    def hang_specs(self) -> list[experiments.ClientSpec]:
        """With and without a connect timeout, for naive and the review's backoff."""
        specs = []
        for name in ("naive", "review"):
            specs.append(
                experiments.ClientSpec(
                    strategy=name,
                    connect_timeout=None,
                    deadline=self.deadline,
                    label=f"{name} / no timeout",
                )
            )
            specs.append(
                experiments.ClientSpec(
                    strategy=name,
                    connect_timeout=self.connect_timeout,
                    deadline=self.deadline,
                    label=f"{name} / {self.connect_timeout:g} s",
                )
            )
        if "grpc" in self.strategies:
            specs.append(
                experiments.ClientSpec(
                    strategy="grpc",
                    connect_timeout=None,
                    deadline=self.deadline,
                    label="grpc / own (>= 20 s)",
                )
            )
        return specs


def _connect_time(runs: pd.DataFrame, worst: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: cold-start medians plus the analytic give-up totals (for the report)."""
    cold = runs[runs["scenario"] == "cold_start"]
    table = (
        cold.groupby("label")
        .agg(
            runs=("connected", "size"),
            connected=("connected", "sum"),
            time_to_connect_median_s=("time_to_connect_s", "median"),
            time_to_connect_max_s=("time_to_connect_s", "max"),
            overshoot_median_s=("overshoot_s", "median"),
            attempts_median=("attempts", "median"),
        )
        .reset_index()
        .rename(columns={"label": "strategy"})
    )
    pivot = worst.pivot_table(index="strategy", columns="scenario", values="total_max")
    median = worst.pivot_table(index="strategy", columns="scenario", values="total_median")
    for scenario in ("refused", "hang"):
        if scenario in pivot.columns:
            table[f"worst_case_{scenario}_max_s"] = table["strategy"].map(pivot[scenario])
            table[f"worst_case_{scenario}_median_s"] = table["strategy"].map(median[scenario])
    return table


def _headline(claim: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Analytic worst cases (exact: n=0, labelled analytic) and measured cold-start medians
    with their n and 95 % intervals."""
    H = headlines.Headline
    items: list[Any] = []
    refused = claim[claim["scenario"] == "refused"].set_index("strategy")
    for variant, name in HEADLINE_LABELS.items():
        if name in refused.index:
            label = (
                "fixed 500 ms x 30 retries"
                if name == "naive"
                else "review backoff (100 ms x2, cap 5 s, 10 tries, +25% jitter)"
            )
            items.append(
                H(
                    metric="connection_time",
                    variant=variant,
                    value=float(refused.loc[name, "sleep_max_exact_s"]),
                    unit="s",
                    label=f"{label}: worst case before giving up (server down, analytic)",
                )
            )
    cold = runs[runs["scenario"] == "cold_start"]
    for variant, name in HEADLINE_LABELS.items():
        mine = cold[cold["label"] == name]
        for metric, column, text in (
            ("cold_start_time_to_connect", "time_to_connect_s", "median time to connect"),
            ("cold_start_overshoot", "overshoot_s", "median connected minus server ready"),
        ):
            est = _measured(mine[column], 0) if len(mine) else None
            if est is None or math.isnan(est.value):
                continue
            items.append(
                H(
                    metric=metric,
                    variant=variant,
                    value=est.value,
                    unit="s",
                    label=f"{name}: {text} during a cold start (measured)",
                    n=est.n,
                    ci_low=est.low,
                    ci_high=est.high,
                )
            )
    return headlines.headline_frame(items)


def _sim_compare(
    herd_frames: dict[str, pd.DataFrame],
    calibration: dict[str, float],
    cfg: LabConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate every real herd run with calibrated settings; summaries and rates side by side."""
    real = herd_frames["herd"]
    real_labels: list[str] = []
    attempts = herd_frames["herd_attempts"]
    rows, rates = [], []
    for _, r in real.iterrows():
        if r.get("budget_per_s") is not None and not pd.isna(r.get("budget_per_s")):
            continue  # the model has no retry budget
        first = attempts[
            (attempts["label"] == r["label"])
            & (attempts["n_clients"] == r["n_clients"])
            & (attempts["attempt"] == 1)
        ]
        spread = float(first["start"].max() - first["start"].min()) if len(first) else 0.0
        # Failed attempts before the server was ready: instant refusals on the local
        # backend, slower through Docker's port proxy; the model uses their median.
        run_attempts = attempts[
            (attempts["label"] == r["label"]) & (attempts["n_clients"] == r["n_clients"])
        ]
        ready_after = float(r["ready_after_event_s"] or 0.0)
        before_ready = run_attempts[run_attempts["t_event_s"] < ready_after]
        early = before_ready[before_ready["outcome"] == "error"]
        refused = float(early["duration_s"].median()) if len(early) else calibration["refused_s"]
        # Through Docker's port proxy, attempts made while PostgreSQL boots are not refused:
        # they wait for it. The window starts at the earliest such attempt after the restart.
        waited = before_ready[
            (before_ready["outcome"] != "error") & (before_ready["t_event_s"] >= 0)
        ]
        hang = ready_after - float(waited["t_event_s"].min()) if len(waited) else 0.0
        settings = SimSettings.calibrated(
            {**calibration, "refused_s": refused},
            n_clients=int(r["n_clients"]),
            outage_s=float(r["outage_s"]),
            boot_s=ready_after or 0.05,
            hang_s=hang,
            max_connections=int(r["max_connections"]) - 1,  # the sampler holds one
            backlog=min(4096, 2 * int(r["max_connections"])),  # PostgreSQL's listen() backlog
            connect_timeout=r["connect_timeout_s"],
            deadline=cfg.deadline,
            start_spread_s=spread,
        )
        sim = simulate(r["strategy"], settings, seed=cfg.seed)
        real_labels.append(str(r["label"]))
        s = sim.summary()
        for key in herd.SIM_METRICS:
            rows.append(
                {
                    "label": r["label"],
                    "strategy": r["strategy"],
                    "n_clients": int(r["n_clients"]),
                    "metric": key,
                    "real": float(r[key]),
                    "sim": float(s[key]),
                }
            )
        starts, counts = sim.rate()
        rates.append(
            pd.DataFrame(
                {
                    "label": r["label"],
                    "n_clients": int(r["n_clients"]),
                    "source": "sim",
                    "t_bin_s": starts,
                    "attempts": counts,
                }
            )
        )
    real_rates = herd.rate_frame(attempts[attempts["label"].isin(set(real_labels))])
    real_rates["source"] = "real"
    return pd.DataFrame(rows), pd.concat([real_rates, *rates], ignore_index=True)


def _round_overheads(result: experiments.ScenarioResult, seconds: float) -> list[float]:
    """Per run: wall time beyond the slowest client (server start, probe, restart)."""
    runs = result.runs
    if runs.empty:
        return []
    per_rep = runs.groupby("rep")["time_to_connect_s"].max().fillna(0.0)
    each = (seconds - float(per_rep.sum())) / len(per_rep)
    return [max(0.0, each)] * len(per_rep)


def _fit(cfg: LabConfig, ready: np.ndarray, costs: model.AttemptCosts) -> model.Fit:
    return model.fit(
        ready,
        costs=costs,
        weight_attempts=cfg.attempt_weight_s,
        connect_timeout=cfg.connect_timeout,
        deadline=cfg.deadline,  # max_attempts from the deadline: long outages still stop
        n=MODEL_CLIENTS,
        rng=cfg.seed,
        label=FITTED,
    )


def proxy_hangs(attempts: pd.DataFrame, runs: pd.DataFrame) -> bool:
    """Whether attempts made before the server was ready hung instead of failing at once.

    Docker's port proxy accepts the connection and holds it while PostgreSQL
    boots; on the local backend an attempt is refused at once, and an attempt
    that merely beat the readiness probe (by up to one poll) connects quickly.
    So: some attempt started after the event and before ready, did not fail,
    and took at least :data:`HANG_MIN_S`.
    """
    needed = {"t_event_s", "duration_s", "outcome"}
    if attempts.empty or not needed <= set(attempts.columns):
        return False
    keys = [c for c in ("scenario", "rep", "label", "param_s") if c in attempts and c in runs]
    ready = runs[[*keys, "ready_after_event_s"]].drop_duplicates(keys)
    df = attempts.merge(ready, on=keys, how="inner")
    hung = df[
        (df["t_event_s"] >= 0)
        & (df["t_event_s"] < df["ready_after_event_s"])
        & (df["outcome"] != "error")
        & (df["duration_s"] >= HANG_MIN_S)
    ]
    return not hung.empty


def measured_costs(attempts: pd.DataFrame, runs: pd.DataFrame, *, cold: bool) -> model.AttemptCosts:
    """Per-attempt costs for the model from a scenario's attempts.

    Without hung attempts (:func:`proxy_hangs`) there is no hang window. With
    them, a cold start is Docker-style (every attempt during the boot hangs:
    the proxy is up from the launch), an outage keeps the measured window.
    """
    costs = model.estimate_costs(attempts, runs)
    if not proxy_hangs(attempts, runs):
        return dataclasses.replace(costs, hang_window_s=0.0)
    if cold:
        return model.AttemptCosts.docker(refused_s=costs.refused_s, success_s=costs.success_s)
    return costs


def run_lab(
    cfg: LabConfig, *, progress: Progress = print
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Run every scenario; return (frames, server description for the metadata)."""
    frames: dict[str, pd.DataFrame] = {}
    described: dict[str, Any] = {}
    t_lab = time.perf_counter()

    def say(message: str) -> None:
        progress(f"[{time.perf_counter() - t_lab:6.1f} s] {message}")

    say("analytic worst case ...")
    frames["worst_case"] = analysis.worst_case_table(
        cfg.strategies,
        connect_timeout=cfg.connect_timeout,
        samples=cfg.worst_case_samples,
        seed=cfg.seed,
    )
    frames["review_claim"] = analysis.review_claim(
        connect_timeout=cfg.connect_timeout, samples=cfg.worst_case_samples, seed=cfg.seed
    )
    named = experiments.specs_for(
        cfg.strategies, connect_timeout=cfg.connect_timeout, deadline=cfg.deadline
    )

    def keep(server: Any) -> None:
        if not described:
            described.update(server.describe())

    limit = max(cfg.client_counts) + 20
    lab_settings = cfg.server_settings(max_connections=limit, **LOG_CONNECTION_SETTINGS)
    # Fresh boots set up and timed exactly as the cold start's (a new container on docker:
    # restarting one is several times faster than booting a new one, 0.2 s vs 1.2 s here).
    say(f"ready times: {cfg.ready_boots} fresh boots ...")
    boot_ready = readiness.ready_time_samples(
        cfg.ready_boots, settings=cfg.server_settings(), fresh=True
    )
    with create_server(lab_settings) as server:
        part_started = time.monotonic()
        runs: list[pd.DataFrame] = []
        attempts: list[pd.DataFrame] = []
        budget_rows: list[dict[str, Any]] = []
        overheads: dict[adaptive.Key, list[float]] = {}

        def first_round(key: adaptive.Key, result: experiments.ScenarioResult, t: float) -> None:
            seconds = time.monotonic() - t
            runs.append(result.runs)
            attempts.append(result.attempts)
            overheads[key] = _round_overheads(result, seconds)
            labels = list(dict.fromkeys(result.runs["label"])) if not result.runs.empty else []
            budget_rows.append(
                adaptive.budget_row(
                    0, key, labels, seconds, time.monotonic() - part_started, cfg.time_budget_s
                )
            )

        for length in cfg.outage_s:
            say(f"outage {length:g} s x {cfg.repetitions} ...")
            t = time.monotonic()
            out = experiments.outage(
                server, named, outage_s=[length], reps=cfg.repetitions, seed=cfg.seed
            )
            first_round(("outage", length), out, t)
        outage_attempts = pd.concat(attempts, ignore_index=True)
        outage_runs = pd.concat(runs, ignore_index=True)
        # An attempt during a boot fails at once on both backends (local: refused; docker:
        # the proxy closes it while the new container's port is shut), unlike an attempt
        # during a restart of a running container, which the proxy may hold.
        costs = dataclasses.replace(
            model.estimate_costs(outage_attempts, outage_runs), hang_window_s=0.0
        )
        say(f"fitting a schedule to {len(boot_ready)} boots ...")
        fitted = _fit(cfg, boot_ready, costs)
        cold_specs = experiments.specs_for(
            {**{name: name for name in cfg.strategies}, FITTED: fitted.strategy},
            connect_timeout=cfg.connect_timeout,
            deadline=cfg.deadline,
        )
        say(f"cold start x {cfg.repetitions} (with the fitted schedule) ...")
        t = time.monotonic()
        cold = experiments.cold_start(
            cfg.server_settings(), cold_specs, reps=cfg.repetitions, seed=cfg.seed, on_server=keep
        )
        first_round(("cold_start", None), cold, t)

        next_rep = {key: cfg.repetitions for key in overheads}
        by_label = {s.label: s for s in cold_specs}

        def run_round(key: adaptive.Key, labels: Sequence[str], rnd: int) -> pd.DataFrame:
            scenario, length = key
            specs = [by_label[label] for label in labels]
            say(
                f"extra round {rnd}: {scenario} {'' if length is None else f'{length:g} s '}"
                f"[{', '.join(labels)}]"
            )
            first = next_rep[key]
            next_rep[key] += 1
            if scenario == "cold_start":
                result = experiments.cold_start(
                    cfg.server_settings(), specs, reps=1, seed=cfg.seed, first_rep=first
                )
            else:
                assert length is not None
                result = experiments.outage(
                    server, specs, outage_s=[length], reps=1, seed=cfg.seed, first_rep=first
                )
            attempts.append(result.attempts)
            return result.runs

        all_runs = pd.concat(runs, ignore_index=True)
        all_runs, extra, stop = adaptive.spend_budget(
            all_runs,
            evidence.comparisons_of(all_runs, fitted=FITTED),
            run_round,
            budget_s=cfg.time_budget_s,
            spent_s=time.monotonic() - part_started,
            overheads=overheads,
            seed=cfg.seed,
        )
        say(f"budget: {len(extra)} extra runs, stopped: {stop}")
        frames["budget"] = adaptive.budget_frame([*budget_rows, *extra], stop)
        runs = [all_runs]
        say(f"hang {cfg.hang_s} s ...")
        hung = experiments.hang(server, cfg.hang_specs(), hang_s=cfg.hang_s, seed=cfg.seed)
        runs.append(hung.runs)
        attempts.append(hung.attempts)
        say("calibration ...")
        calibration = herd.calibrate(server, burst=min(100, limit - 10), seed=cfg.seed)
        say(f"herd {cfg.herd_strategies} x {cfg.client_counts} clients ...")
        herd_frames = herd.herd_sweep(
            server,
            cfg.herd_strategies,
            cfg.client_counts,
            outage_s=cfg.herd_outage_s,
            connect_timeout=cfg.connect_timeout,
            deadline=cfg.deadline,
            seed=cfg.seed,
            budget_runs=[("naive", max(cfg.client_counts), cfg.herd_budget_per_s)]
            if cfg.herd_budget_per_s is not None and "naive" in cfg.herd_strategies
            else [],
        )

    frames["runs"] = pd.concat(runs, ignore_index=True)
    frames["attempts"] = pd.concat(attempts, ignore_index=True)
    frames["summary"] = experiments.summarize(
        frames["runs"], by=("scenario", "param_s", "label"), seed=cfg.seed
    )
    frames["connect_time"] = _connect_time(frames["runs"], frames["worst_case"])
    frames["verdicts"] = evidence.verdict_frame(frames["runs"], fitted=FITTED, seed=cfg.seed)
    say("model: predicted vs measured ...")
    frames.update(_model_frames(cfg, frames["runs"], frames["attempts"], boot_ready, fitted))
    frames["herd"] = herd_frames["herd"]
    client_rates = herd.rate_frame(herd_frames["herd_attempts"])
    client_rates["source"] = "client"
    server_rates = herd.rate_frame(herd_frames["herd_server_attempts"])
    server_rates["source"] = "server_log"
    frames["herd_rates"] = pd.concat([client_rates, server_rates], ignore_index=True)
    frames["herd_backends"] = herd_frames["herd_backends"]
    frames["calibration"] = pd.DataFrame([calibration])

    say("simulation vs real herd ...")
    frames["sim_vs_real"], frames["sim_rates"] = _sim_compare(herd_frames, calibration, cfg)
    say(f"simulation of {cfg.sim_clients} clients ...")
    sim_rows = []
    # The lab's connect timeout, and gRPC's MIN_CONNECT_TIMEOUT for every strategy.
    for timeout in dict.fromkeys([cfg.connect_timeout, SIM_LONG_TIMEOUT_S]):
        for name in cfg.strategies:
            settings = SimSettings.calibrated(
                calibration,
                n_clients=cfg.sim_clients,
                outage_s=cfg.herd_outage_s,
                connect_timeout=timeout,
                deadline=cfg.deadline,
                start_spread_s=0.1,
            )
            sim_rows.append(simulate(name, settings, seed=cfg.seed).summary())
    frames["simulation"] = pd.DataFrame(sim_rows)
    frames["headline"] = _headline(frames["review_claim"], frames["runs"])
    frames["samples"] = evidence.samples_frame(frames["runs"], HEADLINE_LABELS)
    say("lab done")
    return frames, described


# -- the model in the lab -------------------------------------------------------------


def _measured(values: pd.Series, seed: int) -> Estimate:
    return quantile_interval(values.dropna().to_numpy(dtype=float), 0.5, seed=seed)


def agreement_rows(
    predicted: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    scenario: str,
    param_s: float | None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Predicted vs measured medians (overshoot, attempts) per label, with intervals.

    ``agreement``: the predicted median lies within the measured median's 95 %
    interval, widened by the measurement's resolution (the probe polls every
    10 ms, so overshoot by one poll; attempts exactly). ``ratio`` is measured
    over predicted, its interval the measured interval over the prediction.
    """
    sel = evidence.scenario_runs(runs, scenario, param_s)
    rows = []
    for p in predicted.itertuples():
        mine = sel[sel["label"] == p.strategy]
        for metric, column, tolerance in (
            ("overshoot_median_s", "overshoot_s", PROBE_INTERVAL_S),
            ("attempts_median", "attempts", 0.0),
        ):
            key = "median_overshoot" if column == "overshoot_s" else "median_attempts"
            value = float(getattr(p, key))
            est = (
                _measured(mine[column], seed)
                if len(mine)
                else Estimate(math.nan, math.nan, math.nan, 0)
            )
            inside = est.low - tolerance <= value <= est.high + tolerance
            scale = value if value else math.nan
            rows.append(
                {
                    "scenario": scenario,
                    "param_s": param_s if param_s is not None else math.nan,
                    "label": p.strategy,
                    "metric": metric,
                    "predicted": value,
                    "predicted_low": float(getattr(p, f"{key}_low")),
                    "predicted_high": float(getattr(p, f"{key}_high")),
                    "predicted_success_rate": float(p.success_rate),
                    "measured": est.value,
                    "measured_low": est.low,
                    "measured_high": est.high,
                    "n": est.n,
                    "ratio": est.value / scale,
                    "ratio_low": est.low / scale,
                    "ratio_high": est.high / scale,
                    "agreement": bool(est.n > 0 and inside),
                }
            )
    return rows


def _model_frames(
    cfg: LabConfig,
    runs: pd.DataFrame,
    attempts: pd.DataFrame,
    boot_ready: np.ndarray,
    fitted: model.Fit,
) -> dict[str, pd.DataFrame]:
    """``ready_times``, ``model`` (predictions), ``model_vs_real`` and ``fitted``."""
    cold_ready = model.ready_times_from_runs(runs, "cold_start")
    outage_runs = runs[runs["scenario"] == "outage"]
    restart_ready = model.ready_times_from_runs(runs, "outage")
    ready_frame = pd.concat(
        [
            pd.DataFrame({"source": "boot", "ready_s": boot_ready}),
            pd.DataFrame({"source": "cold_start", "ready_s": cold_ready}),
            pd.DataFrame({"source": "outage_restart", "ready_s": restart_ready}),
        ],
        ignore_index=True,
    )
    common = {"connect_timeout": cfg.connect_timeout, "deadline": cfg.deadline, "n": MODEL_CLIENTS}
    strategies: dict[str, Any] = {name: get_strategy(name) for name in cfg.strategies}
    strategies[FITTED] = fitted.strategy
    cold_attempts = attempts[attempts["scenario"] == "cold_start"]
    costs = measured_costs(cold_attempts, runs, cold=True)
    ready = np.concatenate([boot_ready, cold_ready])
    predicted = [
        model.predict_many(strategies, ready, costs, seed=cfg.seed, **common).assign(
            scenario="cold_start", param_s=math.nan
        )
    ]
    rows = agreement_rows(predicted[0], runs, scenario="cold_start", param_s=None, seed=cfg.seed)
    outage_costs = measured_costs(attempts[attempts["scenario"] == "outage"], runs, cold=False)
    named = {name: strategies[name] for name in cfg.strategies}

    for length in sorted(set(outage_runs["param_s"].dropna())):
        # ready, counted from the client's first attempt: the outage, then a restart
        pred = model.predict_many(
            named, length + restart_ready, outage_costs, seed=cfg.seed, **common
        ).assign(scenario="outage", param_s=float(length))
        predicted.append(pred)
        rows += agreement_rows(pred, runs, scenario="outage", param_s=float(length), seed=cfg.seed)
    cold = runs[(runs["scenario"] == "cold_start") & (runs["label"] == FITTED)]
    o, a = _measured(cold["overshoot_s"], cfg.seed), _measured(cold["attempts"], cfg.seed)
    fit_row = {
        **fitted.summary(),
        "weight_attempts": fitted.weight_attempts,
        "evaluated": fitted.evaluated,
        "fit_ready_n": len(boot_ready),
        "refused_s": costs.refused_s,
        "success_s": costs.success_s,
        "hang_window_s": costs.hang_window_s,
        "measured_overshoot_median_s": o.value,
        "measured_overshoot_ci_low_s": o.low,
        "measured_overshoot_ci_high_s": o.high,
        "measured_attempts_median": a.value,
        "measured_attempts_ci_low": a.low,
        "measured_attempts_ci_high": a.high,
        "measured_n": o.n,
    }
    return {
        "ready_times": ready_frame,
        "model": pd.concat(predicted, ignore_index=True),
        "model_vs_real": pd.DataFrame(rows),
        "fitted": pd.DataFrame([fit_row]),
    }


# -- the lab contract -------------------------------------------------------------------


class RetryLab:
    """Connection retry: cold starts, outages, hangs and herds against real servers."""

    name = "retry"
    title = "Connection retry strategies"
    notebook = "01_connection_retry.ipynb"
    Params = Params

    def plan(self, params: Params) -> LabConfig:
        """The parameters with every ``None`` resolved: what a run measures."""
        return LabConfig.from_params(params)

    def server_settings(self, params: Params) -> None:
        return None  # the lab starts (and restarts) its own servers

    def run(self, params: Params, server: object, progress: Progress) -> Results:
        frames, described = run_lab(LabConfig.from_params(params), progress=progress)
        return Results(frames=frames, server=described)

    def headlines(self, results: Results) -> pd.DataFrame:
        return results["headline"]

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.retry import plots

        runs, summary = results["runs"], results["summary"]
        yield (
            "Worst case before giving up",
            plots.worst_case_bars(results["worst_case"], results["review_claim"]),
        )
        if (runs["scenario"] == "cold_start").any():
            yield "Cold start: overshoot ECDF", plots.overshoot_ecdf(runs, scenario="cold_start")
            yield (
                "Cold start: attempts vs overshoot",
                plots.pareto(summary, scenario="cold_start"),
            )
        model_vs_real = results.get("model_vs_real")
        if model_vs_real is not None and not model_vs_real.empty:
            yield (
                "Model vs real: median overshoot, predicted and measured (95 % intervals)",
                plots.model_vs_real(model_vs_real),
            )
        if (summary["scenario"] == "outage").any():
            yield "Outages: overshoot by length", plots.outage_sweep(summary)
        herd_table = results["herd"]
        if not herd_table.empty:
            top = int(herd_table["n_clients"].max())
            yield (
                f"Herd of {top}: attempts per 100 ms",
                plots.herd_rates(results["herd_rates"], n_clients=top, source="client"),
            )

    def conclusions(self, results: Results) -> str:
        return conclusions(results.frames)


LAB = RetryLab()
