"""What if: a schedule's predicted cold start from a run's measured ready times, in a second.

The model (:func:`perfkit.retry.model.predict`) needs only the ready times a
lab run saved (``frames["ready_times"]``) and the attempt costs it measured
(``frames["fitted"]``), so any schedule can be tried without a server.
:class:`WhatIf` holds those inputs; :func:`make` builds a schedule of one
family from its knobs (:data:`KNOBS`); :func:`show` draws the notebook's
section: sliders (ipywidgets) when asked for, else a static table and figure
of a few schedules (papermill, HTML, no widget frontend).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit import tables
from perfkit.errors import ConfigError
from perfkit.retry.model import AttemptCosts, Prediction, predict, schedule_text
from perfkit.retry.strategies import (
    CappedExponential,
    DelayedExponential,
    FixedDelay,
    FullJitter,
    Strategy,
    get_strategy,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Knob:
    """One setting of a schedule family: seconds (or a factor), its range and default."""

    name: str
    default: float
    low: float
    high: float
    log: bool = True  # a log slider (delays); multipliers and first delays are linear


_BASE = Knob("base", 0.1, 0.005, 2.0)
_MULT = Knob("multiplier", 2.0, 1.0, 4.0, log=False)
_CAP = Knob("cap", 5.0, 0.05, 20.0)
#: Each family's knobs, as :func:`make` takes them.
KNOBS: dict[str, tuple[Knob, ...]] = {
    "fixed": (Knob("delay", 0.5, 0.005, 2.0),),
    "exponential": (_BASE, _MULT, _CAP),
    "full_jitter": (_BASE, _MULT, _CAP),
    "delayed": (Knob("first_delay", 1.0, 0.0, 5.0, log=False), Knob("base", 0.05, 0.005, 2.0),
                Knob("multiplier", 1.0, 1.0, 4.0, log=False), _CAP),
}  # fmt: skip
_CLASSES: dict[str, type[Strategy]] = {
    "fixed": FixedDelay,
    "exponential": CappedExponential,
    "full_jitter": FullJitter,
    "delayed": DelayedExponential,
}
_FAMILY_OF_KIND = {cls.kind: family for family, cls in _CLASSES.items()}
#: Named schedules the static section compares with the fitted one.
STATIC_NAMED = ("naive", "review", "full_jitter")
#: Families whose default knobs the static section shows (the others are named above).
STATIC_FAMILIES = ("exponential", "delayed")
#: Clients per what-if prediction: a 95 % interval of a few ms, in well under a second.
WHATIF_CLIENTS = 4000


def make(family: str, **knobs: float) -> Strategy:
    """A schedule of ``family`` (:data:`KNOBS`) that retries until the deadline stops it.

    Missing knobs take their defaults; a cap below the base is raised to it.
    """
    if family not in KNOBS:
        raise ConfigError(f"unknown schedule family {family!r}; known: {', '.join(KNOBS)}")
    names = {k.name for k in KNOBS[family]}
    unknown = set(knobs) - names
    if unknown:
        raise ConfigError(f"{family} has no knob {sorted(unknown)}; its knobs: {sorted(names)}")
    values = {k.name: float(knobs.get(k.name, k.default)) for k in KNOBS[family]}
    if "cap" in values:
        values["cap"] = max(values["cap"], values["base"])
    return _CLASSES[family](max_attempts=None, **values)


@dataclass(frozen=True, kw_only=True)
class WhatIf:
    """A run's measured inputs to the model: ready times (s) and attempt costs."""

    ready_s: np.ndarray
    costs: AttemptCosts
    connect_timeout: float | None = 2.0
    deadline: float | None = 60.0
    n: int = WHATIF_CLIENTS
    seed: int = 0

    @classmethod
    def from_frames(
        cls, frames: Mapping[str, pd.DataFrame], *, connect_timeout: float, deadline: float
    ) -> WhatIf:
        """From a retry run's ``ready_times`` (boots and cold starts) and ``fitted`` costs."""
        ready = frames.get("ready_times")
        if ready is None or ready.empty:
            raise ConfigError(
                "this run has no ready times: run the 'cold_start' stage (or load a run that did)"
            )
        cold = ready[ready["source"].isin(["boot", "cold_start"])]["ready_s"].dropna()
        fitted = frames.get("fitted")
        costs = AttemptCosts()
        if fitted is not None and not fitted.empty:
            row = fitted.iloc[0]
            costs = AttemptCosts(
                refused_s=float(row["refused_s"]),
                success_s=float(row["success_s"]),
                hang_window_s=float(row["hang_window_s"]),
            )
        return cls(
            ready_s=cold.to_numpy(dtype=float),
            costs=costs,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )

    def predict(self, strategy: Strategy | str) -> Prediction:
        """The model's cold start for ``strategy`` (same seed: candidates share the boots)."""
        return predict(
            strategy,
            self.ready_s,
            self.costs,
            connect_timeout=self.connect_timeout,
            deadline=self.deadline,
            n=self.n,
            rng=self.seed,
        )

    def table(self, candidates: Mapping[str, Strategy | str]) -> pd.DataFrame:
        """One row per candidate: schedule, median / p90 overshoot (ms), attempts, connected."""
        rows = []
        for label, strategy in candidates.items():
            p = self.predict(strategy)
            strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
            rows.append(
                {
                    "schedule": label,
                    "settings": f"{strat.kind}: {schedule_text(strat)}",
                    "overshoot median (ms)": _ms(p.median_overshoot.value),
                    "95 % interval (ms)": f"[{_ms(p.median_overshoot.low)}, "
                    f"{_ms(p.median_overshoot.high)}]",
                    "overshoot p90 (ms)": _ms(p.p90_overshoot.value),
                    "attempts median": p.median_attempts.value,
                    "attempts p90": p.p90_attempts.value,
                    "connected": f"{p.success_rate:.1%}",
                }
            )
        return pd.DataFrame(rows)


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def static_candidates(frames: Mapping[str, pd.DataFrame]) -> dict[str, Strategy | str]:
    """The fitted schedule of the run (when it has one), a few named ones and each family's
    default, for the static section."""
    out: dict[str, Strategy | str] = {}
    fitted = frames.get("fitted")
    if fitted is not None and not fitted.empty:
        row = fitted.iloc[0]
        family = _FAMILY_OF_KIND.get(str(row["kind"]))
        if family is not None:
            knobs = {k.name: float(row[k.name]) for k in KNOBS[family] if k.name in row}
            out["fitted"] = make(family, **knobs)
    out.update({name: name for name in STATIC_NAMED})
    out.update({f"{family} (defaults)": make(family) for family in STATIC_FAMILIES})
    return out


def figure(
    whatif: WhatIf, predictions: Mapping[str, Prediction], *, scatter: bool = True
) -> Figure:
    """Measured ready times against each schedule's predicted connect times (ECDFs), and (with
    ``scatter``) each schedule's median overshoot against its median attempts."""
    import matplotlib.pyplot as plt

    if scatter:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    else:  # the sliders' figure: one panel, redrawn on every change
        fig, left = plt.subplots(figsize=(7, 3.4))
    ready = np.sort(whatif.ready_s)
    left.step(ready, np.arange(1, ready.size + 1) / ready.size, where="post", color="k",
              lw=2, label=f"server ready (measured, n={ready.size})")  # fmt: skip
    for label, p in predictions.items():
        done = np.sort((p.ready_s + p.overshoot_s)[p.connected])
        if done.size:
            left.step(done, np.arange(1, done.size + 1) / p.n, where="post", label=label)
        if not scatter:
            continue
        over, att = p.median_overshoot, p.median_attempts
        right.errorbar(
            att.value,
            over.value * 1000,
            yerr=[[(over.value - over.low) * 1000], [(over.high - over.value) * 1000]],
            fmt="o",
            capsize=3,
            label=label,
        )
    left.set_xlabel("seconds from launch")
    left.set_ylabel("fraction of clients / boots")
    left.set_title("connected (predicted) vs ready (measured)")
    left.legend(fontsize=7, loc="lower right")
    if not scatter:
        return fig
    right.set_xlabel("median attempts (predicted)")
    right.set_ylabel("median overshoot, ms (95 % interval)")
    right.set_title(f"predicted for {whatif.n:,} clients each")
    fig.tight_layout()
    return fig


def static(whatif: WhatIf, candidates: Mapping[str, Strategy | str]) -> tuple[pd.DataFrame, Any]:
    """The table and figure of ``candidates`` (the section without widgets)."""
    predictions = {label: whatif.predict(s) for label, s in candidates.items()}
    return whatif.table(candidates), figure(whatif, predictions)


def widget(whatif: WhatIf, reference: Mapping[str, Strategy | str] | None = None) -> Any:
    """Sliders for a family's knobs; each change re-predicts and redraws (ipywidgets).

    ``reference`` schedules (e.g. the run's fitted one) are predicted once and drawn
    next to the one the sliders set.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    fixed = {label: whatif.predict(s) for label, s in (reference or {}).items()}
    family = w.Dropdown(options=list(KNOBS), value="delayed", description="family")
    knobs = w.VBox()
    out = w.Output()

    def sliders(name: str) -> list[Any]:
        made = []
        for k in KNOBS[name]:
            kind = w.FloatLogSlider if k.log else w.FloatSlider
            extra = (
                {"base": 10, "min": math.log10(k.low), "max": math.log10(k.high), "step": 0.02}
                if k.log
                else {"min": k.low, "max": k.high, "step": 0.01}
            )
            made.append(kind(value=k.default, description=k.name, readout_format=".3g", **extra))
        return made

    def redraw(*_: Any) -> None:
        values = {s.description: s.value for s in knobs.children}
        strategy = make(family.value, **values)
        with out:
            out.clear_output(wait=True)
            p = whatif.predict(strategy)
            print(f"{family.value}: {schedule_text(strategy)}")
            print("\n".join(p.summary().splitlines()[1:]))
            fig = figure(whatif, {**fixed, family.value: p}, scatter=False)
            display(fig)
            plt.close(fig)

    def on_family(change: Any) -> None:
        knobs.children = sliders(change["new"])
        for s in knobs.children:
            s.observe(redraw, names="value")
        redraw()

    family.observe(on_family, names="value")
    on_family({"new": family.value})
    return w.VBox([family, knobs, out])


def show(
    frames: Mapping[str, pd.DataFrame],
    *,
    interactive: bool,
    connect_timeout: float,
    deadline: float,
) -> None:
    """The notebook's what-if section: sliders when ``interactive`` (and ipywidgets is
    installed), else the static table and figure. Says why when there is nothing to show."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    try:
        whatif = WhatIf.from_frames(frames, connect_timeout=connect_timeout, deadline=deadline)
    except ConfigError as exc:
        print(f"what-if: not available ({exc})")
        return
    candidates = static_candidates(frames)
    if interactive:
        try:
            fitted = {"fitted": candidates["fitted"]} if "fitted" in candidates else None
            display(widget(whatif, fitted))
            return
        except ImportError:
            print("what-if: ipywidgets is not installed (pip install 'ipywidgets>=8'); static")
    table, fig = static(whatif, candidates)
    display(tables.table(table))
    display(fig)
    plt.close(fig)
