"""The retry lab's herd-model check: its tables, its flags and the model's listed assumptions."""

from __future__ import annotations

import pandas as pd

from perfkit.retry import modelcheck

COSTS = {
    "backend": "local",
    "cores": 2.0,
    "server_cpu_per_connect_s": 0.0033,
    "postmaster_cpu_per_connect_s": 0.0004,
    "client_cpu_per_attempt_s": 0.0023,
    "connect_s": 0.0043,
    "refused_s": 0.00013,
}


def _agreement_row(strategy: str, n: int, metric: str, agrees: bool) -> dict[str, object]:
    return {"strategy": strategy, "n_clients": n, "metric": metric, "agrees": agrees}


def test_assumptions_are_the_contention_models_numbered_list_in_markdown() -> None:
    found = modelcheck.assumptions()
    assert len(found) >= 8
    assert found[0].startswith("**One CPU pool.**")
    assert not any("``" in text or ":class:" in text for text in found)


def test_validated_up_to_is_the_largest_size_where_every_named_strategy_agrees() -> None:
    rows = []
    for n, ok in ((100, True), (300, True), (1000, False)):
        for s in ("naive", "full_jitter"):
            for metric in ("median_connected_after_ready_s", "timeouts"):
                rows.append(_agreement_row(s, n, metric, ok or s == "full_jitter"))
    assert modelcheck.validated_up_to({"validation": pd.DataFrame(rows)}) == 300


def test_the_recommendation_disagreeing_does_not_lower_the_validated_size() -> None:
    rows = [
        _agreement_row("naive", 300, "median_connected_after_ready_s", True),
        _agreement_row("naive", 300, "timeouts", True),
        _agreement_row(modelcheck.RECOMMENDED, 300, "timeouts", False),
    ]
    assert modelcheck.validated_up_to({"validation": pd.DataFrame(rows)}) == 300


def test_no_check_means_no_validated_size() -> None:
    assert modelcheck.validated_up_to({}) is None


def test_sizes_beyond_the_validated_one_are_flagged() -> None:
    sim = pd.DataFrame({"n_clients": [300, 10_000]})
    flagged = modelcheck.flag_beyond(sim, 300)
    assert flagged["beyond_validated"].tolist() == [False, True]
    assert modelcheck.flag_beyond(sim, None)["beyond_validated"].tolist() == [True, True]


def test_large_simulation_uses_the_contention_model_at_both_timeouts() -> None:
    frame = modelcheck.large_simulation(
        pd.DataFrame([COSTS]),
        ["naive", "full_jitter"],
        n_clients=2000,
        outage_s=1.0,
        connect_timeout=2.0,
        deadline=60.0,
        seed=1,
        validated_up_to=300,
    )
    assert sorted(set(frame["connect_timeout_s"])) == [2.0, modelcheck.LONG_TIMEOUT_S]
    assert set(frame["model"]) == {"contention"}
    assert frame["beyond_validated"].all() and (frame["validated_up_to"] == 300).all()
    assert (frame["server_cpu_s"] > 0).all()
