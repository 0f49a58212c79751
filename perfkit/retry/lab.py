"""The connection-retry lab behind ``notebooks/01_connection_retry.ipynb``.

:class:`Params` holds the notebook's parameters (their defaults live only there),
:meth:`LabConfig.from_params` resolves them into the plan (ConfigError naming the
parameter, before any server starts), :func:`run_lab` runs every scenario and
:data:`LAB` exposes it all through the lab contract (:mod:`perfkit.lab`).

Frames (saved as ``experiment="retry"``; columns in ``/work/notes/retry.md``):
``worst_case``, ``review_claim``, ``runs``, ``attempts``, ``summary``,
``connect_time``, ``herd``, ``herd_rates``, ``herd_backends``, ``calibration``,
``sim_vs_real``, ``sim_rates``, ``simulation``, ``headline``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit import headlines, validate
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Progress, Results, param
from perfkit.postgres import FAST_SERVER_SETTINGS, ServerSettings, create_server
from perfkit.retry import analysis, experiments, herd
from perfkit.retry.probe import LOG_CONNECTION_SETTINGS
from perfkit.retry.simulate import SimSettings, simulate
from perfkit.retry.strategies import STRATEGIES, get_strategy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ALL_STRATEGIES = tuple(STRATEGIES)
QUICK_STRATEGIES = ("naive", "exponential", "full_jitter", "review")
SIM_LONG_TIMEOUT_S = 20.0
HERD_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter", "review", "grpc")


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The retry notebook's parameters: the only place their defaults and help live."""

    strategies: tuple[str, ...] | None = param(
        None, "names from perfkit.retry.STRATEGIES", full=ALL_STRATEGIES, quick=QUICK_STRATEGIES
    )
    repetitions: int | None = param(None, "cold starts and outages per setting", full=4, quick=1)
    outage_s: tuple[float, ...] | None = param(
        None, "outage lengths in s", full=(1.0, 5.0, 10.0), quick=(1.0,)
    )
    client_counts: tuple[int, ...] | None = param(
        None, "herd sizes", full=(10, 50, 100), quick=(20,)
    )
    herd_strategies: tuple[str, ...] | None = param(
        None, "strategies in the herd", full=HERD_STRATEGIES, quick=("naive", "full_jitter")
    )
    herd_outage_s: float | None = param(
        None, "outage before the herd reconnects, s", full=1.0, quick=0.5
    )
    hang_s: float | None = param(None, "how long the server stays frozen, s", full=5.0, quick=2.5)
    connect_timeout: float = param(2.0, "per-attempt connect timeout, s (libpq: whole s, min 2)")
    deadline: float = param(60.0, "hard limit on one client's retrying, in s")
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
    outage_s: tuple[float, ...]
    client_counts: tuple[int, ...]
    herd_strategies: tuple[str, ...]
    herd_outage_s: float
    hang_s: float
    connect_timeout: float
    deadline: float
    sim_clients: int
    worst_case_samples: int
    herd_budget_per_s: float | None

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise ConfigError(f"parameter 'repetitions' must be >= 1, got {self.repetitions!r}")
        for name in ("connect_timeout", "deadline", "hang_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"parameter {name!r} must be > 0, got {getattr(self, name)!r}")
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
        budget = p.value("herd_budget_per_s")
        if budget is not None and budget < 0:
            raise ConfigError(f"parameter 'herd_budget_per_s' must be >= 0 or None, got {budget}")
        return cls(
            backend=p.backend,
            quick=p.quick,
            seed=p.seed,
            strategies=_names(p.value("strategies"), "strategies"),
            repetitions=p.value("repetitions"),
            outage_s=tuple(float(x) for x in _numbers(p.value("outage_s"), "outage_s")),
            client_counts=_numbers(p.value("client_counts"), "client_counts", integer=True),
            herd_strategies=_names(p.value("herd_strategies"), "herd_strategies"),
            herd_outage_s=float(p.value("herd_outage_s")),
            hang_s=float(p.value("hang_s")),
            connect_timeout=float(p.connect_timeout),
            deadline=float(p.deadline),
            sim_clients=p.sim_clients,
            worst_case_samples=p.value("worst_case_samples"),
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
        cold.groupby("strategy")
        .agg(
            runs=("connected", "size"),
            connected=("connected", "sum"),
            time_to_connect_median_s=("time_to_connect_s", "median"),
            time_to_connect_max_s=("time_to_connect_s", "max"),
            overshoot_median_s=("overshoot_s", "median"),
            attempts_median=("attempts", "median"),
        )
        .reset_index()
    )
    pivot = worst.pivot_table(index="strategy", columns="scenario", values="total_max")
    median = worst.pivot_table(index="strategy", columns="scenario", values="total_median")
    for scenario in ("refused", "hang"):
        if scenario in pivot.columns:
            table[f"worst_case_{scenario}_max_s"] = table["strategy"].map(pivot[scenario])
            table[f"worst_case_{scenario}_median_s"] = table["strategy"].map(median[scenario])
    return table


def _headline(connect_time: pd.DataFrame, claim: pd.DataFrame) -> pd.DataFrame:
    H = headlines.Headline
    items: list[Any] = []
    refused = claim[claim["scenario"] == "refused"].set_index("strategy")
    for variant, name in (("naive", "naive"), ("improved", "review")):
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
    by = connect_time.set_index("strategy")
    for variant, name in (("naive", "naive"), ("improved", "review")):
        if name in by.index and not math.isnan(by.loc[name, "time_to_connect_median_s"]):
            items.append(
                H(
                    metric="cold_start_time_to_connect",
                    variant=variant,
                    value=float(by.loc[name, "time_to_connect_median_s"]),
                    unit="s",
                    label=f"{name}: median time to connect during a cold start (measured)",
                )
            )
            items.append(
                H(
                    metric="cold_start_overshoot",
                    variant=variant,
                    value=float(by.loc[name, "overshoot_median_s"]),
                    unit="s",
                    label=f"{name}: median connected minus server ready (measured)",
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
        for key in (
            "connected",
            "attempts_after_ready",
            "too_many_clients",
            "attempts_after_restart",
            "peak_rate_after_restart_per_100ms",
            "all_connected_after_ready_s",
            "median_connected_after_ready_s",
        ):
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

    specs = experiments.specs_for(
        cfg.strategies, connect_timeout=cfg.connect_timeout, deadline=cfg.deadline
    )
    say(f"cold start x {cfg.repetitions} ...")

    def keep(server: Any) -> None:
        if not described:
            described.update(server.describe())

    cold = experiments.cold_start(
        cfg.server_settings(), specs, reps=cfg.repetitions, seed=cfg.seed, on_server=keep
    )
    runs, attempts = [cold.runs], [cold.attempts]

    limit = max(cfg.client_counts) + 20
    lab_settings = cfg.server_settings(max_connections=limit, **LOG_CONNECTION_SETTINGS)
    with create_server(lab_settings) as server:
        say(f"outage {cfg.outage_s} s x {cfg.repetitions} ...")
        out = experiments.outage(
            server, specs, outage_s=cfg.outage_s, reps=cfg.repetitions, seed=cfg.seed
        )
        runs.append(out.runs)
        attempts.append(out.attempts)
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
    frames["summary"] = experiments.summarize(frames["runs"], by=("scenario", "param_s", "label"))
    frames["connect_time"] = _connect_time(frames["runs"], frames["worst_case"])
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
    frames["headline"] = _headline(frames["connect_time"], frames["review_claim"])
    say("lab done")
    return frames, described


# -- the closing text -----------------------------------------------------------------


def _best(table: pd.DataFrame, column: str, *, label: str = "label") -> tuple[str, float]:
    valid = table.dropna(subset=[column])
    if valid.empty:
        return ("none", math.nan)
    row = valid.loc[valid[column].idxmin()]
    return str(row[label]), float(row[column])


def conclusions(frames: Mapping[str, pd.DataFrame]) -> str:
    """Markdown conclusions computed from this run's frames."""
    lines: list[str] = []
    claim = frames["review_claim"].set_index(["strategy", "scenario"])
    if ("review", "refused") in claim.index:
        r = claim.loc[("review", "refused")]
        h = claim.loc[("review", "hang")]
        lines.append(
            f"- **The review's claim does not hold.** Its backoff (10 tries, 100 ms x2, cap 5 s, "
            f"+0..25 %) sleeps {r['sleep_without_jitter_s']:.1f} s before jitter and up to "
            f"{r['sleep_max_exact_s']:.2f} s with it before giving up on a dead server, "
            f"{r['claim_ratio']:.0f}x the claimed 0.5 s; with a {h['connect_timeout_s']:g} s "
            f"connect timeout per attempt a hanging server costs up to "
            f"{h['total_max_exact_s']:.1f} s."
        )
    if ("naive", "refused") in claim.index:
        n = claim.loc[("naive", "refused")]
        nh = claim.loc[("naive", "hang")]
        lines.append(
            f"- The naive loop's worst case is {n['sleep_max_exact_s']:.1f} s of sleep "
            f"({n['attempts']} attempts) when refused, {nh['total_max_exact_s']:.1f} s when "
            "every attempt hangs until its timeout."
        )
    summary = frames["summary"]
    cold = summary[summary["scenario"] == "cold_start"]
    if not cold.empty:
        best, value = _best(cold, "overshoot_median_s")
        fewest, attempts = _best(cold, "attempts_median")
        lines.append(
            f"- **Cold start**: smallest median overshoot (connected minus actually ready): "
            f"**{best}** ({value * 1000:.0f} ms); fewest attempts: **{fewest}** "
            f"({attempts:g}). " + _per_label(cold)
        )
    outage = summary[summary["scenario"] == "outage"]
    for length, group in outage.groupby("param_s"):
        best, value = _best(group, "overshoot_median_s")
        failed = group[group["success_rate"] < 1]
        gave = f" Gave up in some runs: {', '.join(failed['label'])}." if not failed.empty else ""
        lines.append(
            f"- **Outage {length:g} s**: smallest median overshoot **{best}** "
            f"({value * 1000:.0f} ms). " + _per_label(group) + gave
        )
    hang = summary[summary["scenario"] == "hang"]
    if not hang.empty:
        parts = [
            f"{r.label}: {r.attempts_median:g} attempts, overshoot "
            f"{r.overshoot_median_s * 1000:.0f} ms"
            for r in hang.itertuples()
        ]
        lines.append(
            "- **Hang** (server frozen, then resumed): " + "; ".join(parts) + ". A frozen "
            "local server still completes the TCP handshake, so an attempt without a timeout "
            "simply finishes after the resume; its cost shows when the server never comes "
            "back: one attempt then blocks for psycopg's default 130 s instead of the "
            "configured timeout."
        )
    herd_table = frames["herd"]
    if not herd_table.empty:
        top = herd_table[herd_table["n_clients"] == herd_table["n_clients"].max()]
        calm, rate = _best(top, "peak_rate_after_restart_per_100ms", label="label")
        worst = top.loc[top["peak_rate_after_restart_per_100ms"].idxmax()]
        fast, fast_s = _best(top, "all_connected_after_ready_s", label="label")
        lines.append(
            f"- **Herd of {int(top['n_clients'].iloc[0])}**: peak attempts per 100 ms after "
            f"the restart: {worst['label']} {int(worst['peak_rate_after_restart_per_100ms'])}, "
            f"{calm} {rate:.0f} (lowest); all connected soonest with {fast} "
            f"({fast_s:.2f} s after ready); peak backends "
            f"{int(top['peak_backends'].max())} of max_connections "
            f"{int(top['max_connections'].iloc[0])}; 'too many clients' errors: "
            f"{int(top['too_many_clients'].sum())}."
        )
    sim = frames["simulation"]
    if not sim.empty:
        lines.append(
            f"- **Simulation of {int(sim['n_clients'].iloc[0]):,} clients** (one server, "
            f"calibrated accept capacity, unlimited max_connections, backlog 4096) took "
            f"{sim['sim_elapsed_s'].sum():.2f} s for {len(sim)} runs "
            f"(max {sim['sim_elapsed_s'].max():.2f} s each)."
        )
        for timeout, group in sim.groupby("connect_timeout_s"):
            lines.append(f"  - connect timeout {timeout:g} s: " + _sim_text(group))
    verdict = _verdict(frames)
    if verdict:
        lines.append("")
        lines.append("**Which strategy wins where (this run):** " + verdict)
    return "\n".join(lines)


def _verdict(frames: Mapping[str, pd.DataFrame]) -> str:
    """One paragraph: latency, work, herd load and reliability winners."""
    summary = frames["summary"]
    single = summary[summary["scenario"].isin(["cold_start", "outage"])]
    if single.empty:
        return ""
    by = single.groupby("label").agg(
        overshoot=("overshoot_median_s", "mean"),
        attempts=("attempts_median", "mean"),
        success=("success_rate", "min"),
    )
    fastest = by["overshoot"].idxmin()
    cheapest = by["attempts"].idxmin()
    parts = [
        f"for one client waiting on a restart, **{fastest}** reconnects soonest (mean of the "
        f"median overshoots {by.loc[fastest, 'overshoot'] * 1000:.0f} ms, with "
        f"{by.loc[fastest, 'attempts']:.1f} attempts on average), **{cheapest}** does the least "
        f"work ({by.loc[cheapest, 'attempts']:.1f} attempts, overshoot "
        f"{by.loc[cheapest, 'overshoot'] * 1000:.0f} ms)"
    ]
    herd_table = frames["herd"]
    if not herd_table.empty:
        top = herd_table[herd_table["n_clients"] == herd_table["n_clients"].max()]
        plain = top[top["label"] == top["strategy"]]
        if not plain.empty:
            calm = plain.loc[plain["peak_rate_after_restart_per_100ms"].idxmin()]
            loud = plain.loc[plain["peak_rate_after_restart_per_100ms"].idxmax()]
            parts.append(
                f"for a herd of {int(calm['n_clients'])}, **{calm['label']}** spreads the load "
                f"best ({int(calm['peak_rate_after_restart_per_100ms'])} attempts per 100 ms at "
                f"peak vs {int(loud['peak_rate_after_restart_per_100ms'])} for {loud['label']})"
            )
        budgeted = top[top["label"] != top["strategy"]]
        for r in budgeted.itertuples():
            parts.append(
                f"a shared retry budget caps it harder ({r.label}: "
                f"{int(r.peak_rate_after_restart_per_100ms)} per 100 ms, all connected "
                f"{r.all_connected_after_ready_s:.2f} s after ready)"
            )
    unreliable = by[by["success"] < 1].index.tolist()
    if unreliable:
        parts.append(
            "strategies whose attempts ran out before a long outage ended: "
            + ", ".join(unreliable)
            + " (their total sleep can be shorter than the outage; add a deadline-based stop)"
        )
    return "; ".join(parts) + "."


def _per_label(group: pd.DataFrame) -> str:
    parts = [
        f"{r.label} {r.overshoot_median_s * 1000:.0f} ms/{r.attempts_median:g} att"
        for r in group.sort_values("overshoot_median_s").itertuples()
    ]
    return "(" + ", ".join(parts) + ")"


def _sim_text(sim: pd.DataFrame) -> str:
    ok = sim[sim["gave_up"] == 0]
    parts = [
        f"{r.strategy}: peak {r.peak_rate_after_restart_per_100ms:,} attempts/100 ms, "
        f"{r.connected:,} connected, {r.timeouts:,} timeouts"
        for r in sim.itertuples()
    ]
    all_in = (
        f" Every client connected only with: {', '.join(ok['strategy'])}."
        if not ok.empty
        else " No strategy connected every client."
    )
    return "; ".join(parts) + "." + all_in


def quantiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return {"min": math.nan, "median": math.nan, "max": math.nan}
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


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
