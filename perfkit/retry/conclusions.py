"""The retry lab's closing text, worded from a run's frames alone (verdicts, model, fit, budget)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perfkit.retry import evidence, timeprofile
from perfkit.retry.probe import PROBE_INTERVAL_S

if TYPE_CHECKING:
    pass


FITTED = "fitted"
#: The fitted schedule's goal on a cold start: median overshoot and attempts at most.
FIT_GOAL = (0.050, 15)


# -- the closing text -----------------------------------------------------------------


def _best(table: pd.DataFrame, column: str, *, label: str = "label") -> tuple[str, float]:
    valid = table.dropna(subset=[column])
    if valid.empty:
        return ("none", math.nan)
    row = valid.loc[valid[column].idxmin()]
    return str(row[label]), float(row[column])


def conclusions(frames: Mapping[str, pd.DataFrame], not_measured: Sequence[str] = ()) -> str:
    """Markdown conclusions computed from this run's frames.

    ``not_measured`` names the stages the run skipped (``stages``): they are listed as
    not measured in this run, and every line reads only the frames that are there.
    """
    lines = _claim_lines(frames) + _model_lines(frames)
    lines += _cold_start_lines(frames) + _fitted_lines(frames) + _outage_lines(frames)
    lines += _budget_lines(frames) + _hang_lines(frames) + _herd_lines(frames)
    lines += validation_lines(frames) + _simulation_lines(frames)
    if not_measured:
        lines.append(
            f"- Not measured in this run: {', '.join(not_measured)} (it ran only some stages; "
            "run them, or every stage, for their findings)."
        )
    where = timeprofile.sentence(frames)
    if where:
        lines.append(where)
    verdict = _verdict(frames)
    if verdict:
        lines.append("")
        lines.append("**Which strategy wins where (this run):** " + verdict)
    return "\n".join(lines)


def _scenario(frames: Mapping[str, pd.DataFrame], scenario: str) -> pd.DataFrame:
    """The ``summary`` rows of ``scenario`` (none when the run did not measure it)."""
    summary = frames.get("summary")
    if summary is None or summary.empty:
        return pd.DataFrame(columns=["scenario", "param_s", "label"])
    return summary[summary["scenario"] == scenario]


def _table(frames: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """Frame ``name``, empty when its stage did not run."""
    frame = frames.get(name)
    return frame if frame is not None else pd.DataFrame()


def _claim_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The review's claim against the analytic worst cases of its two loops."""
    lines: list[str] = []
    if _table(frames, "review_claim").empty:
        return lines
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
    return lines


def _cold_start_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    cold = _scenario(frames, "cold_start")
    if cold.empty:
        return []
    named = cold[cold["label"] != FITTED]
    return [
        "- **Cold start** (measured; median overshoot = connected minus actually ready, "
        "[95 % interval], median attempts, n runs): "
        + _per_label(named)
        + " "
        + _verdict_texts(frames.get("verdicts"), "cold_start", None, evidence.ALL)
    ]


def _outage_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    lines = []
    outage = _scenario(frames, "outage")
    for length, group in outage.groupby("param_s"):
        failed = group[group["success_rate"] < 1]
        gave = f" Gave up in some runs: {', '.join(failed['label'])}." if not failed.empty else ""
        lines.append(
            f"- **Outage {length:g} s**: "
            + _per_label(group)
            + " "
            + _verdict_texts(frames.get("verdicts"), "outage", float(length), evidence.ALL)
            + gave
        )
    return lines


def _hang_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    hang = _scenario(frames, "hang")
    if hang.empty:
        return []
    parts = [
        f"{r.label}: {r.attempts_median:g} attempts, overshoot {r.overshoot_median_s * 1000:.0f} ms"
        for r in hang.itertuples()
    ]
    return [
        "- **Hang** (server frozen, then resumed): " + "; ".join(parts) + ". A frozen "
        "local server still completes the TCP handshake, so an attempt without a timeout "
        "simply finishes after the resume; its cost shows when the server never comes "
        "back: one attempt then blocks for psycopg's default 130 s instead of the "
        "configured timeout."
    ]


def _herd_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    herd_table = _table(frames, "herd")
    if herd_table.empty:
        return []
    top = herd_table[herd_table["n_clients"] == herd_table["n_clients"].max()]
    calm, rate = _best(top, "peak_rate_after_restart_per_100ms", label="label")
    worst = top.loc[top["peak_rate_after_restart_per_100ms"].idxmax()]
    fast, fast_s = _best(top, "all_connected_after_ready_s", label="label")
    return [
        f"- **Herd of {int(top['n_clients'].iloc[0])}**: peak attempts per 100 ms after "
        f"the restart: {worst['label']} {int(worst['peak_rate_after_restart_per_100ms'])}, "
        f"{calm} {rate:.0f} (lowest); all connected soonest with {fast} "
        f"({fast_s:.2f} s after ready); peak backends "
        f"{int(top['peak_backends'].max())} of max_connections "
        f"{int(top['max_connections'].iloc[0])}; 'too many clients' errors: "
        f"{int(top['too_many_clients'].sum())}."
    ]


def _simulation_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    sim = _table(frames, "simulation")
    if sim.empty:
        return []
    n = int(sim["n_clients"].iloc[0])
    checked = sim["validated_up_to"].iloc[0] if "validated_up_to" in sim else None
    if checked is None or pd.isna(checked):
        flag = "**not checked** against real herds in this run: a prediction, not a measurement"
    elif n > int(checked):
        flag = (
            f"**beyond the {int(checked):,} clients at which the model was shown to agree** "
            "with real herds: an extrapolation"
        )
    else:
        flag = f"within the {int(checked):,} clients at which the model agreed with real herds"
    lines = [
        f"- **Simulation of {n:,} clients** (contention model on the measured setup costs; "
        f"{flag}) took {sim['sim_elapsed_s'].sum():.2f} s for {len(sim)} runs "
        f"(max {sim['sim_elapsed_s'].max():.2f} s each)."
    ]
    for timeout, group in sim.groupby("connect_timeout_s"):
        lines.append(f"  - connect timeout {timeout:g} s: " + _sim_text(group))
    return lines


def _agreement_cell(cell: pd.DataFrame) -> str:
    """``naive 2.1 s vs 1.9 s sim`` per strategy of one size's median reconnect rows."""
    parts = []
    for r in cell.itertuples():
        mark = "" if r.agrees else " (disagrees)"
        parts.append(f"{r.strategy} {r.real:.2f} s real vs {r.sim:.2f} s sim{mark}")
    return "; ".join(parts)


def validation_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The model check (real vs simulated herds) and the fleet recommendation, measured."""
    from perfkit.retry.modelcheck import RECOMMENDED, validated_up_to

    table = _table(frames, "validation")
    if table.empty:
        return []
    named = table[table["strategy"] != RECOMMENDED]
    largest = validated_up_to(frames)
    herds = int(named["real_n"].max())
    coverage = float(named["coverage"].min())
    lines = [
        f"- **Herd model check** (contention model, constants measured on this server, "
        f"never fitted to the herds; {herds} real herd(s) per cell, intervals cover "
        f"{coverage:.0%}): "
        + (
            f"it agrees (median reconnect and timeouts within ±25 % or overlapping "
            f"intervals) for every checked strategy up to **{largest:,} clients**."
            if largest is not None
            else "it does **not** agree with the real herds at any checked size."
        )
    ]
    medians = named[named["metric"] == "median_connected_after_ready_s"]
    for size, cell in medians.groupby("n_clients"):
        lines.append(f"  - {int(size):,} clients, median reconnect: {_agreement_cell(cell)}.")
    rec = _table(frames, "fleet_recommendation")
    if not rec.empty:
        r = rec.iloc[0]
        measured = str(r.get("measured_sentence") or "")
        verdict = str(r.get("verdict") or "")
        lines.append(
            f"- **Backoff for a fleet**: {measured or r['sentence']}."
            + ("" if measured else " (Predicted by the model; not run for real.)")
            + (f" Time until all connected, measured: {verdict}" if verdict else "")
        )
    return lines


def _verdict_rows(
    verdicts: pd.DataFrame | None, scenario: str, param_s: float | None, candidates: str
) -> pd.DataFrame:
    if verdicts is None or verdicts.empty:
        return pd.DataFrame(columns=list(evidence.VERDICT_COLUMNS))
    sel = verdicts[(verdicts["scenario"] == scenario) & (verdicts["candidates"] == candidates)]
    if param_s is None:
        return sel[sel["param_s"].isna()]
    return sel[sel["param_s"] == param_s]


def _verdict_texts(
    verdicts: pd.DataFrame | None, scenario: str, param_s: float | None, candidates: str
) -> str:
    """The verdict sentences (overshoot, then attempts) of one comparison."""
    sel = _verdict_rows(verdicts, scenario, param_s, candidates)
    parts = []
    for r in sel.itertuples():
        what = "Overshoot" if r.metric == "overshoot_s" else "Attempts"
        parts.append(f"{what}: {r.text.rstrip('.')}.")
    return " ".join(parts)


def short_verdict(row: Any) -> str:
    """A verdict row in a few words: the winner, or who cannot be told apart and what would."""
    unit_ms = row.metric == "overshoot_s"
    if row.status == "separated":
        return f"**{row.winner}** (p={row.p_value:.2g} vs {row.runner_up}, n={row.n})"
    if row.status == "insufficient":
        return f"no verdict (too few runs: n={row.n})"
    more = (
        f"; about {int(row.n_to_separate)} runs each would separate them"
        if row.n_to_separate is not None and not pd.isna(row.n_to_separate)
        else "; no difference observed"
    )
    what = "overshoot" if unit_ms else "attempts"
    return (
        f"no winner: {row.best} and {row.runner_up} are indistinguishable in {what} "
        f"at n={row.n}{more}"
    )


def _verdict(frames: Mapping[str, pd.DataFrame]) -> str:
    """One paragraph: verdicts per scenario (a winner only if separated), herd, reliability."""
    single = pd.concat([_scenario(frames, "cold_start"), _scenario(frames, "outage")])
    if single.empty:
        return ""
    verdicts = frames.get("verdicts")
    parts = []
    scenarios: list[tuple[str, float | None, str]] = [("cold_start", None, "cold start")]
    outage = single[single["scenario"] == "outage"]
    scenarios += [("outage", float(x), f"{x:g} s outage") for x in sorted(set(outage["param_s"]))]
    for scenario, length, name in scenarios:
        rows = _verdict_rows(verdicts, scenario, length, evidence.ALL)
        over = rows[rows["metric"] == "overshoot_s"]
        if over.empty:
            continue
        text = f"{name}: soonest connected {short_verdict(over.iloc[0])}"
        work = rows[rows["metric"] == "attempts"]
        if not work.empty:
            text += f", fewest attempts {short_verdict(work.iloc[0])}"
        parts.append(text)
    fit_rows = _verdict_rows(verdicts, "cold_start", None, f"{FITTED} vs naive, review")
    fit_over = fit_rows[fit_rows["metric"] == "overshoot_s"]
    if not fit_over.empty:
        parts.append(f"fitted schedule vs naive and review: {short_verdict(fit_over.iloc[0])}")
    herd_table = _table(frames, "herd")
    if not herd_table.empty:
        top = herd_table[herd_table["n_clients"] == herd_table["n_clients"].max()]
        plain = top[top["label"] == top["strategy"]]
        if not plain.empty:
            calm = plain.loc[plain["peak_rate_after_restart_per_100ms"].idxmin()]
            loud = plain.loc[plain["peak_rate_after_restart_per_100ms"].idxmax()]
            parts.append(
                f"for a herd of {int(calm['n_clients'])}, **{calm['label']}** spreads the load "
                f"best ({int(calm['peak_rate_after_restart_per_100ms'])} attempts per 100 ms at "
                f"peak vs {int(loud['peak_rate_after_restart_per_100ms'])} for {loud['label']}; "
                "one run each)"
            )
        budgeted = top[top["label"] != top["strategy"]]
        for r in budgeted.itertuples():
            parts.append(
                f"a shared retry token bucket caps it harder ({r.label}: "
                f"{int(r.peak_rate_after_restart_per_100ms)} per 100 ms, all connected "
                f"{r.all_connected_after_ready_s:.2f} s after ready)"
            )
    success = single.groupby("label")["success_rate"].min()
    unreliable = success[success < 1].index.tolist()
    if unreliable:
        parts.append(
            "strategies whose attempts ran out before a long outage ended: "
            + ", ".join(unreliable)
            + " (their total sleep can be shorter than the outage; add a deadline-based stop)"
        )
    return "; ".join(parts) + "."


def _ms(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x * 1000:.0f}"


def _per_label(group: pd.DataFrame) -> str:
    """Each label's median overshoot [interval], median attempts and n, fastest first."""
    parts = []
    for r in group.sort_values("overshoot_median_s").itertuples():
        ci = (
            f" [{_ms(r.overshoot_ci_low_s)}, {_ms(r.overshoot_ci_high_s)}]"
            if hasattr(r, "overshoot_ci_low_s")
            else ""
        )
        n = f", n={r.n}" if hasattr(r, "n") else ""
        parts.append(f"{r.label} {_ms(r.overshoot_median_s)}{ci} ms/{r.attempts_median:g} att{n}")
    return "(" + "; ".join(parts) + ")."


def _model_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The model's cold-start ranking and how well the real runs agree with it."""
    mvr, ready = frames.get("model_vs_real"), frames.get("ready_times")
    if mvr is None or mvr.empty or ready is None:
        return []
    cold = mvr[(mvr["scenario"] == "cold_start") & (mvr["metric"] == "overshoot_median_s")]
    cold = cold.sort_values("predicted")
    fitted = frames.get("fitted")
    costs = ""
    if fitted is not None and not fitted.empty:
        f = fitted.iloc[0]
        hang = (
            ", every attempt during the boot held by the port proxy"
            if f["hang_window_s"] > 0
            else ""
        )
        costs = (
            f"; per attempt: refused {f['refused_s'] * 1000:.1f} ms, connect "
            f"{f['success_s'] * 1000:.1f} ms{hang}"
        )
    counts = ready["source"].value_counts()
    boots = ready[ready["source"].isin(["boot", "cold_start"])]["ready_s"]
    ranking = ", ".join(
        f"{r.label} {_ms(r.predicted)} ms" + (f"/{_attempts(mvr, r.label)} att")
        for r in cold.itertuples()
    )
    agree = cold[cold["agreement"]]
    off = cold[~cold["agreement"]]
    off_text = (
        "; off: "
        + ", ".join(
            f"{r.label} (predicted {_ms(r.predicted)} ms, measured {_ms(r.measured)} "
            f"[{_ms(r.measured_low)}, {_ms(r.measured_high)}] ms)"
            for r in off.itertuples()
        )
        if not off.empty
        else ""
    )
    outage = mvr[(mvr["scenario"] == "outage") & (mvr["metric"] == "overshoot_median_s")]
    outage_text = (
        f" Outages: {int(outage['agreement'].sum())} of {len(outage)} predicted medians agree."
        if not outage.empty
        else ""
    )
    return [
        f"- **The model ranks the cold start** by predicted median overshoot/attempts "
        f"(ready times of {int(counts.get('boot', 0))} fresh boots and "
        f"{int(counts.get('cold_start', 0))} cold starts, median "
        f"{_ms(float(boots.median()))} ms{costs}): {ranking}. The measured medians agree "
        f"(within their 95 % interval ± one {PROBE_INTERVAL_S * 1000:.0f} ms probe poll) for "
        f"{len(agree)} of {len(cold)} strategies{off_text}.{outage_text} The model's ranking "
        "does not move with a few noisy runs; the verdicts below say what the runs themselves "
        "can separate."
    ]


def _attempts(mvr: pd.DataFrame, label: str) -> str:
    row = mvr[
        (mvr["scenario"] == "cold_start")
        & (mvr["metric"] == "attempts_median")
        & (mvr["label"] == label)
    ]
    return "?" if row.empty else f"{float(row['predicted'].iloc[0]):g}"


def describe_schedule(row: Mapping[str, Any]) -> str:
    """A fitted schedule's settings in words (delays in ms)."""
    kind = row.get("kind", "")
    parts = []
    if "first_delay" in row and not pd.isna(row.get("first_delay")):
        parts.append(f"first retry after {float(row['first_delay']) * 1000:.1f} ms")
    if "base" in row and not pd.isna(row.get("base")):
        step = float(row["base"]) * 1000
        mult = float(row.get("multiplier", 1.0))
        if mult == 1.0:
            parts.append(f"then every {step:.1f} ms")
        else:
            parts.append(f"then {step:.1f} ms x{mult:g} up to {float(row['cap']) * 1000:.0f} ms")
    if "delay" in row and not pd.isna(row.get("delay")):
        parts.append(f"every {float(row['delay']) * 1000:.1f} ms")
    if not pd.isna(row.get("max_attempts")):
        parts.append(f"at most {int(row['max_attempts'])} attempts")
    return f"{kind}: " + ", ".join(parts)


def _fitted_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    fitted = frames.get("fitted")
    if fitted is None or fitted.empty:
        return []
    f = fitted.iloc[0]
    cold = _scenario(frames, "cold_start").set_index("label")
    others = []
    for name in ("naive", "review"):
        if name in cold.index:
            r = cold.loc[name]
            others.append(
                f"{name} {_ms(r['overshoot_median_s'])} [{_ms(r['overshoot_ci_low_s'])}, "
                f"{_ms(r['overshoot_ci_high_s'])}] ms with {r['attempts_median']:g} attempts"
            )
    goal_ms, goal_attempts = FIT_GOAL
    met = (
        f["measured_overshoot_median_s"] <= goal_ms
        and f["measured_attempts_median"] <= goal_attempts
    )
    verdicts = frames.get("verdicts")
    verdict = _verdict_texts(verdicts, "cold_start", None, f"{FITTED} vs naive, review")
    return [
        f"- **Fitted schedule** ({describe_schedule(f)}; fitted to {int(f['fit_ready_n'])} "
        f"fresh-boot ready times with {f['weight_attempts']:g} s of overshoot per attempt, "
        f"{int(f['evaluated'])} schedules tried; the deadline stops it in a long outage): "
        f"predicted median overshoot {_ms(f['median_overshoot'])} ms with "
        f"{f['median_attempts']:g} attempts; measured "
        f"{_ms(f['measured_overshoot_median_s'])} [{_ms(f['measured_overshoot_ci_low_s'])}, "
        f"{_ms(f['measured_overshoot_ci_high_s'])}] ms with "
        f"{f['measured_attempts_median']:g} [{f['measured_attempts_ci_low']:g}, "
        f"{f['measured_attempts_ci_high']:g}] attempts (n={int(f['measured_n'])}), vs "
        + "; ".join(others)
        + f". Goal (median <= {goal_ms * 1000:.0f} ms with <= {goal_attempts} attempts): "
        + ("**met**." if met else "**not met**.")
        + (f" {verdict}" if verdict else "")
    ]


def _budget_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    budget = frames.get("budget")
    if budget is None or budget.empty:
        return []
    first = budget[budget["round"] == 0]
    extra = budget[budget["round"] > 0]
    reason = str(budget["stop_reason"].iloc[0])
    spent = float(budget["spent_s"].max())
    if extra.empty:
        more = "no extra runs"
    else:
        per = extra.groupby(["scenario", "param_s"], dropna=False).size()
        where = ", ".join(
            f"{sc.replace('_', ' ')}{'' if pd.isna(p) else f' {p:g} s'}: {k}"
            for (sc, p), k in per.items()
        )
        more = f"{len(extra)} extra runs in {int(extra['round'].max())} rounds ({where})"
    limit = budget["budget_s"].iloc[0]
    of = "" if pd.isna(limit) else f" of the {limit:g} s budget"
    return [
        f"- **Repetitions**: a first round per setting ({len(first)} settings), then {more}; "
        f"{spent:.0f} s{of} for cold starts and outages. Stopped: **{reason}**."
    ]


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
