"""The connection-retry lab behind ``notebooks/01_connection_retry.ipynb``.

:class:`Params` holds the notebook's parameters (their defaults and checks live
only there: ConfigError naming the parameter, before any server starts),
:func:`perfkit.retry.measure.run_lab` runs every scenario and :data:`LAB`
exposes it all through the lab contract (:mod:`perfkit.lab`).

Frames (saved as ``experiment="retry"``):
``worst_case``, ``review_claim``, ``runs``, ``attempts``, ``summary``,
``connect_time``, ``herd``, ``herd_rates``, ``herd_backends``, ``calibration``,
``sim_vs_real``, ``sim_rates``, ``simulation``, ``headline``; and ``verdicts``
(:mod:`perfkit.retry.evidence`), ``budget`` (:mod:`perfkit.retry.adaptive`),
``ready_times``, ``model``, ``model_vs_real``, ``fitted`` (the model and the fitted
schedule) and ``samples`` (per-run values behind the measured headlines).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from perfkit import validate
from perfkit.errors import ConfigError
from perfkit.lab import LabParams, Progress, Results, param
from perfkit.retry import measure
from perfkit.retry.conclusions import conclusions
from perfkit.retry.strategies import STRATEGIES, get_strategy

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.headlines import HeadlineSpec

ALL_STRATEGIES = tuple(STRATEGIES)
QUICK_STRATEGIES = ("naive", "exponential", "full_jitter", "review")
HERD_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter", "review", "grpc")
#: The lab's stages in the order it runs them (``stages`` picks some): the analytic worst
#: case (no server); fresh boots, a schedule fitted to them and the cold start; outages;
#: extra runs for undecided comparisons within ``time_budget_s``; the hang; the herd
#: (with the calibration and the simulation checked against it); the herd model checked
#: against real herds of several sizes, with a backoff recommended for a fleet (``fleet``);
#: the large
#: simulation.
STAGES = (
    "analytic",
    "cold_start",
    "outages",
    "budget",
    "hang",
    "herd",
    "fleet",
    "simulation",
)
#: The strategies the herd model is checked with (the issue's four named ones).
VALIDATION_STRATEGIES = ("naive", "exponential", "full_jitter", "decorrelated_jitter")


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
    fleet_sizes: tuple[int, ...] | None = param(
        None, "herd sizes, real vs the herd model", full=(100, 300), quick=(40,)
    )
    fleet_reps: int | None = param(None, "real herds per strategy and size", full=3, quick=2)
    fleet_strategies: tuple[str, ...] | None = param(
        None,
        "strategies checked",
        full=VALIDATION_STRATEGIES,
        quick=("naive", "full_jitter"),
    )
    cost_samples: int | None = param(None, "connects timed for the setup costs", full=200, quick=60)
    sim_clients: int = param(10_000, "clients in the large simulation")
    worst_case_samples: int | None = param(
        None, "jitter samples per strategy", full=2000, quick=300
    )
    herd_budget_per_s: float | None = param(
        None, "naive + shared token bucket, retries/s (0: off)", full=50.0, quick=0.0
    )
    interactive: bool = param(
        False, "what-if section: sliders (set True in JupyterLab); else a static figure"
    )

    STAGES: ClassVar[tuple[str, ...]] = STAGES
    OUTPUT_PARAMETERS: ClassVar[tuple[str, ...]] = (*LabParams.OUTPUT_PARAMETERS, "interactive")

    def check(self) -> None:
        if self.ran("budget") and not (self.ran("cold_start") or self.ran("outages")):
            raise ConfigError(
                "parameter 'stages': 'budget' spends extra runs on the cold start and outage "
                "comparisons; add 'cold_start' or 'outages'"
            )
        _names(self.strategies, "strategies")
        _names(self.herd_strategies, "herd_strategies")
        _names(self.fleet_strategies, "fleet_strategies")
        validate.numbers("parameter 'fleet_sizes'", self.fleet_sizes, integers=True, minimum=2)
        validate.numbers("parameter 'outage_s'", self.outage_s)
        validate.numbers("parameter 'client_counts'", self.client_counts, integers=True, minimum=1)
        for name in (
            "repetitions",
            "ready_boots",
            "sim_clients",
            "worst_case_samples",
            "fleet_reps",
            "cost_samples",
        ):
            validate.integer(f"parameter {name!r}", getattr(self, name), minimum=1)
        for name in ("connect_timeout", "deadline", "hang_s"):
            validate.number(f"parameter {name!r}", getattr(self, name), strict=True)
        for name in ("attempt_weight_s", "herd_outage_s", "time_budget_s", "herd_budget_per_s"):
            validate.number(f"parameter {name!r}", getattr(self, name))

    @property
    def time_budget(self) -> float | None:
        """``time_budget_s`` as the adaptive rounds take it: None (0) means fixed repetitions."""
        return float(self.time_budget_s) if self.time_budget_s else None

    @property
    def herd_token_rate(self) -> float | None:
        """``herd_budget_per_s`` as the herd takes it: None (0) means no token bucket run."""
        return float(self.herd_budget_per_s) if self.herd_budget_per_s else None


def _names(value: Sequence[Any], parameter: str) -> None:
    """ConfigError naming ``parameter`` unless ``value`` lists known strategy names."""
    if not value:
        raise ConfigError(f"parameter {parameter!r} must not be empty")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"parameter {parameter!r}: {item!r} is not a strategy name")
        try:
            get_strategy(item)
        except ConfigError as exc:
            raise ConfigError(f"parameter {parameter!r}: {exc}") from None


# -- the lab contract -------------------------------------------------------------------


class RetryLab:
    """Connection retry: cold starts, outages, hangs and herds against real servers."""

    name = "retry"
    title = "Connection retry strategies"
    notebook = "01_connection_retry.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> None:
        return None  # the lab starts (and restarts) its own servers

    def run(self, params: Params, server: object, progress: Progress) -> Results:
        frames, described = measure.run_lab(params, progress=progress)
        return Results(frames=frames, server=described)

    def headlines(self, results: Results) -> pd.DataFrame:
        from perfkit.headlines import with_better
        from perfkit.retry.analysis import SPEC

        return with_better(results["headline"], SPEC)  # runs saved before it had ``better``

    def headline_specs(self) -> Mapping[str, HeadlineSpec]:
        from perfkit.retry.analysis import SPEC

        return SPEC

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.retry import plots

        if results.get("worst_case") is not None:
            yield (
                "Worst case before giving up",
                plots.worst_case_bars(results["worst_case"], results["review_claim"]),
            )
        if results.get("runs") is None:  # no cold start, outage or hang in this run
            yield from self._herd_figures(results)
            return
        runs, summary = results["runs"], results["summary"]
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
        yield from self._herd_figures(results)

    def _herd_figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.retry import plots

        herd_table = results.get("herd")
        if herd_table is not None and not herd_table.empty:
            top = int(herd_table["n_clients"].max())
            yield (
                f"Herd of {top}: attempts per 100 ms",
                plots.herd_rates(results["herd_rates"], n_clients=top, source="client"),
            )
        check = results.get("validation")
        if check is not None and not check.empty:
            yield (
                "Herd model check: real vs simulated median reconnect after ready",
                plots.herd_model_check(check),
            )
        where = plots.where_time_went(results.frames)
        if where is not None:
            yield where

    def conclusions(self, results: Results) -> str:
        skipped = [stage for stage in STAGES if not results.ran(stage)]
        return conclusions(results.frames, not_measured=skipped)


LAB = RetryLab()
