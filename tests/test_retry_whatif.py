"""The retry notebook's what-if section: any schedule predicted from a run's ready times in well
under a second, as sliders (ipywidgets) or as a static table and figure without them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perfkit.errors import ConfigError
from perfkit.retry import AttemptCosts, DelayedExponential, FixedDelay, predict, whatif

BOOTS = np.random.default_rng(3).uniform(0.8, 1.2, 12)
COSTS = {"refused_s": 0.0004, "success_s": 0.004, "hang_window_s": 0.0}


def frames(fitted: bool = True) -> dict[str, pd.DataFrame]:
    """A retry run's frames as the what-if section reads them (ready times, fitted costs)."""
    ready = pd.DataFrame(
        {"source": ["boot"] * 6 + ["cold_start"] * 6 + ["outage_restart"], "ready_s": [*BOOTS, 9]}
    )
    out = {"ready_times": ready}
    if fitted:
        schedule = {"kind": "delayed_exponential", "first_delay": 0.7, "base": 0.05,
                    "multiplier": 1.0, "cap": 0.05}  # fmt: skip
        out["fitted"] = pd.DataFrame([{**schedule, **COSTS}])
    return out


def test_make_builds_each_family_from_its_knobs_retrying_until_the_deadline() -> None:
    assert whatif.make("fixed", delay=0.2) == FixedDelay(delay=0.2, max_attempts=None)
    delayed = whatif.make("delayed", first_delay=0.9)
    assert isinstance(delayed, DelayedExponential) and delayed.first_delay == 0.9
    for family in whatif.KNOBS:
        assert whatif.make(family).max_attempts is None


def test_a_cap_below_the_base_is_raised_to_it() -> None:
    assert whatif.make("exponential", base=0.5, cap=0.1).cap == 0.5


@pytest.mark.parametrize(("family", "knobs"), [("linear", {}), ("fixed", {"base": 0.1})])
def test_unknown_family_or_knob_is_a_config_error(family: str, knobs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"known|knobs"):
        whatif.make(family, **knobs)


def test_inputs_are_the_runs_cold_ready_times_and_measured_costs() -> None:
    w = whatif.WhatIf.from_frames(frames(), connect_timeout=2.0, deadline=60.0)
    assert np.array_equal(np.sort(w.ready_s), np.sort(BOOTS))  # outage restarts left out
    assert w.costs == AttemptCosts(**COSTS)


def test_a_run_without_ready_times_says_which_stage_makes_them() -> None:
    with pytest.raises(ConfigError, match="'cold_start' stage"):
        whatif.WhatIf.from_frames({}, connect_timeout=2.0, deadline=60.0)


def test_a_what_if_prediction_is_the_models_prediction() -> None:
    w = whatif.WhatIf.from_frames(frames(), connect_timeout=2.0, deadline=60.0)
    strategy = whatif.make("fixed", delay=0.1)
    mine = w.predict(strategy)
    model = predict(strategy, w.ready_s, w.costs, n=w.n, rng=w.seed)
    assert np.array_equal(mine.overshoot_s, model.overshoot_s)


def test_static_section_compares_the_fitted_schedule_with_named_ones() -> None:
    run = frames()
    candidates = whatif.static_candidates(run)
    assert list(candidates)[:4] == ["fitted", "naive", "review", "full_jitter"]
    w = whatif.WhatIf.from_frames(run, connect_timeout=2.0, deadline=60.0)
    table, fig = whatif.static(w, candidates)
    assert list(table["schedule"]) == list(candidates)
    assert table["settings"].iloc[0].startswith("delayed_exponential: first retry after 700 ms")
    assert len(fig.axes) == 2


def test_without_a_fitted_row_the_static_section_uses_default_costs() -> None:
    run = frames(fitted=False)
    assert "fitted" not in whatif.static_candidates(run)
    assert whatif.WhatIf.from_frames(run, connect_timeout=2.0, deadline=60.0).costs == (
        AttemptCosts()
    )


def test_moving_a_slider_re_predicts() -> None:
    pytest.importorskip("ipywidgets")
    w = whatif.WhatIf.from_frames(frames(), connect_timeout=2.0, deadline=60.0)
    calls: list[object] = []
    original = w.predict
    object.__setattr__(w, "predict", lambda s: calls.append(s) or original(s))
    box = whatif.widget(w)
    family, knobs, _ = box.children
    assert family.value == "delayed" and len(calls) == 1
    knobs.children[0].value = 0.3  # first_delay
    assert calls[-1] == whatif.make("delayed", first_delay=0.3)
    family.value = "fixed"
    assert [s.description for s in knobs.children] == ["delay"]
    assert calls[-1] == whatif.make("fixed")
