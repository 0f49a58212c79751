"""The pool lab's conclusions: the closing Markdown, worded from a run's findings and frames.

The findings are built by :func:`perfkit.pool.analysis.findings`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from perfkit.pool import timeprofile
from perfkit.pool.openloop_conclusions import CLOSED_HEADING, open_loop_lines
from perfkit.pool.reference import ratio_estimate
from perfkit.stats import Estimate


def _num(x: float, digits: int = 0) -> str:
    return "n/a" if not isinstance(x, int | float) or math.isnan(x) else f"{x:,.{digits}f}"


def _interval(value: float, low: float, high: float, n: int, digits: int = 0) -> str:
    """``value [low, high] (n=N)`` for the text (no interval from a single sample)."""
    if int(n) < 2:
        return f"{_num(value, digits)} (n={int(n)}, no interval)"
    return f"{_num(value, digits)} [{_num(low, digits)}, {_num(high, digits)}] (n={int(n)})"


def _knee_text(c: Mapping[str, Any]) -> str | None:
    if "knee_client_cpu_pct" not in c or pd.isna(c["knee_client_cpu_pct"]):
        return None
    bound = bool(c.get("knee_client_bound"))
    verdict = (
        "client-bound: the Python client, not the pool or the server, set that ceiling"
        if bound
        else "below the client-bound threshold; a Python client can still limit throughput "
        "without a full core (GIL hand-offs between threads): the processes sweep and "
        "pgbench below tell"
    )
    return (
        f"At the knee (the peak) the client used "
        f"{_interval(c['knee_client_cpu_pct'], c['knee_client_cpu_low'], c['knee_client_cpu_high'], c['knee_client_cpu_n'])} "  # noqa: E501
        f"% of one core and the server {_num(c.get('knee_server_cpu_pct', math.nan))} % "
        f"({c['cores']} cores; client-bound means >= {c.get('client_bound_pct', 80):.0f} %): "
        f"{verdict}. "
        f"{c.get('client_bound_runs', 0)} of {c.get('size_runs', 0)} size-sweep runs were "
        "client-bound (marked in the throughput plot)."
    )


def _pgbench_text(compare: pd.DataFrame) -> str:
    parts = []
    for _, r in compare.iterrows():
        n = min(int(r["pool_n"]), int(r["pgbench_n"]))
        parts.append(
            f"{int(r['connections'])} connections: pool (size {int(r['pool_size'])}) "
            f"{_interval(r['pool_rps'], r['pool_low'], r['pool_high'], r['pool_n'])} req/s vs "
            f"pgbench {_interval(r['pgbench_rps'], r['pgbench_low'], r['pgbench_high'], r['pgbench_n'])}"  # noqa: E501
            f" tps, ratio {_interval(r['ratio'], r['ratio_low'], r['ratio_high'], n, 2)}"
            + (
                f": they agree within {r['gap_pct']:.0f} % (the interval holds 1)"
                if r["agree"]
                else f": {r['gap_pct']:.0f} % {'below' if r['ratio'] < 1 else 'above'} pgbench"
            )
        )
    agree = compare[compare["agree"].astype(bool)]
    if len(agree) == len(compare):
        head = f"Pool and pgbench agree within {compare['gap_pct'].max():.0f} % at every count."
    elif agree.empty:
        worst = compare.loc[compare["gap_pct"].idxmax()]
        head = (
            f"Pool and pgbench differ at every count; the largest gap is "
            f"{worst['gap_pct']:.0f} % at {int(worst['connections'])} connections."
        )
    else:
        counts = ", ".join(str(int(x)) for x in agree["connections"])
        head = (
            f"Pool and pgbench agree within {agree['gap_pct'].max():.0f} % at {counts} "
            "connections, not at the others."
        )
    return (
        "pgbench (C, outside this process) at the same numbers of concurrent clients, "
        "throughput as the mean over 0.1 s (pool) / 0.2 s (pgbench) bins with 95 % "
        "intervals: " + "; ".join(parts) + ". " + head
    )


def _multiproc_text(mp: pd.DataFrame, pgbench: pd.DataFrame | None) -> str:
    parts = [
        f"{int(r['processes'])} x (pool {int(r['pool_size'])}, {int(r['threads_per_process'])} "
        f"threads) = {int(r['total_connections'])} connections: "
        f"{_interval(r['throughput_mean_rps'], r['throughput_low'], r['throughput_high'], r['throughput_n'])} "  # noqa: E501
        f"req/s, client CPU {_num(r['client_cpu_pct'])} %"
        + (" (over max_connections!)" if r["over_max_connections"] else "")
        for _, r in mp.iterrows()
    ]
    text = "Several processes (each its own pool): " + "; ".join(parts) + "."
    one = mp[mp["processes"] == 1]
    if not one.empty and len(mp) > 1:
        top = mp.loc[mp["throughput_mean_rps"].idxmax()]
        if int(top["processes"]) != 1:
            r = ratio_estimate(_mp_estimate(top), _mp_estimate(one.iloc[0]))
            text += (
                f" {int(top['processes'])} processes reached "
                f"{_interval(r.value, r.low, r.high, r.n, 2)} x one process's throughput."
            )
    if pgbench is not None and not pgbench.empty:
        bench = pgbench[~pgbench["connect"].astype(bool)]
        text += f" pgbench's best: {_num(bench['throughput_rps'].max())} tps."
    text += (
        f" max_connections {int(mp['max_connections'].iloc[0])}; every request a success or "
        f"an error: {bool(mp['requests_add_up'].all())}; connections left: "
        f"{int(mp['leaked'].sum())}."
    )
    return text


def _mp_estimate(row: pd.Series) -> Estimate:
    return Estimate(
        float(row["throughput_mean_rps"]),
        float(row["throughput_low"]),
        float(row["throughput_high"]),
        int(row["throughput_n"]),
    )


def _long_outage_text(lo: pd.DataFrame) -> str:
    parts = []
    for _, r in lo.iterrows():
        what = (
            f"first success {r['first_ok_after_up_s']:.2f} s after the server was back"
            if r["recovered"]
            else f"no success within {r['watch_s']:g} s of the server being back"
        )
        parts.append(
            f"{r['mode']}, reconnect_timeout {r['reconnect_timeout_s']:g} s, "
            f"down {r['outage_s']:g} s: {what}"
        )
    return (
        f"Long outages (server down for seconds; one run each, n=1): {'; '.join(parts)}. "
        f"{int(lo['recovered'].sum())} of {len(lo)} settings recovered."
    )


def _size_lines(c: Mapping[str, Any]) -> list[str]:
    """The peak, the rule of thumb and no pool."""
    lines = [
        f"Peak throughput: {c['peak_throughput_rps']:,.0f} req/s with a pool of "
        f"{c['peak_pool_size']} ({c['peak_workers']} workers, {c['cores']} cores). "
        f"The (cores*2)+1 rule says {c['rule_of_thumb_size']}"
        + (
            f", which reached {c['rule_size_throughput_rps']:,.0f} req/s at that worker count."
            if "rule_size_throughput_rps" in c and pd.notna(c["rule_size_throughput_rps"])
            else "."
        )
    ]
    if "no_pool_throughput_rps" in c and pd.notna(c["no_pool_throughput_rps"]):
        ratio = c["peak_throughput_rps"] / c["no_pool_throughput_rps"]
        lines.append(
            f"No pool (connect per request): {c['no_pool_throughput_rps']:,.0f} req/s, "
            f"{ratio:,.0f}x below the best pool."
        )
    return lines


def _presets_text(c: Mapping[str, Any]) -> str:
    return (
        f"At {c['preset_workers']} workers - review preset (max 5, min 1, timeout 3 s, "
        f"check): {c['review_throughput_rps']:,.0f} req/s, p99 acquire wait "
        f"{c['review_wait_p99_ms']:.2f} ms; psycopg defaults (fixed 4): "
        f"{c['defaults_throughput_rps']:,.0f} req/s, p99 {c['defaults_wait_p99_ms']:.2f} ms; "
        f"best found (fixed {c['best_max_size']}): {c['best_throughput_rps']:,.0f} req/s, "
        f"p99 {c['best_wait_p99_ms']:.2f} ms."
    )


def _spike_text(c: Mapping[str, Any]) -> str | None:
    spikes = sorted(
        int(k.removeprefix("spike_min").removesuffix("_wait_max_ms"))
        for k in c
        if k.startswith("spike_min") and k.endswith("_wait_max_ms")
    )
    if not spikes:
        return None
    parts = [
        f"min_size={m}: full after {c.get(f'spike_min{m}_time_to_max_s', float('nan')):.2f} s, "
        f"worst wait {c[f'spike_min{m}_wait_max_ms']:.0f} ms"
        for m in spikes
    ]
    return "Cold burst (spike test): " + "; ".join(parts) + "."


def _checkout_text(c: Mapping[str, Any]) -> str:
    us = {
        k: c[f"checkout_{k}_ms"] * 1000
        for k in ("check_p50", "nocheck_p50", "check_p99", "nocheck_p99")
    }
    return (
        f"check_connection makes a checkout cost p50 {us['check_p50']:.0f} µs instead of "
        f"{us['nocheck_p50']:.1f} µs (p99 {us['check_p99']:.0f} vs {us['nocheck_p99']:.1f} µs)."
    )


def _recovery_lines(c: Mapping[str, Any]) -> list[str]:
    lines = []
    if "recovery_terminate_nocheck_query_errors" in c:
        lines.append(
            "After pg_terminate_backend: "
            f"{c['recovery_terminate_nocheck_query_errors']} failed queries without check, "
            f"{c['recovery_terminate_check_query_errors']} with check (only in-flight queries "
            "can still fail)."
        )
    if "recovery_restart_nocheck_s" in c:
        lines.append(
            "Server restart (take down, 0.5 s, bring up): no request completed for "
            f"{c['recovery_restart_nocheck_gap_s']:.2f} s without check "
            f"({c['recovery_restart_nocheck_query_errors']} failed queries) and "
            f"{c['recovery_restart_check_gap_s']:.2f} s with check "
            f"({c['recovery_restart_check_query_errors']} failed queries); meanwhile requests "
            "block in getconn (up to the 3 s acquire timeout). Once the server "
            "was ready again the first request succeeded after "
            f"{c['recovery_restart_nocheck_after_up_s']:.2f} s / "
            f"{c['recovery_restart_check_after_up_s']:.2f} s."
        )
    return lines


def _reference_lines(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """pgbench, the processes sweep and the long outages, where the run has them."""
    lines = []
    compare = frames.get("pgbench_compare")
    if compare is not None and not compare.empty:
        lines.append(_pgbench_text(compare))
    mp = frames.get("multiproc")
    if mp is not None and not mp.empty:
        lines.append(_multiproc_text(mp, frames.get("pgbench")))
    lo = frames.get("long_outage")
    if lo is not None and not lo.empty:
        lines.append(_long_outage_text(lo))
    where = timeprofile.sentence(frames)
    if where:
        lines.append(where)
    return lines


def _workload_text(workload: pd.DataFrame) -> str:
    """What the runs ran: the scripts with their weights, and where the load went."""
    scripts = ", ".join(f"`{r.script}` ({int(r.weight)})" for r in workload.itertuples())
    where = workload["schema"].iloc[0] if "schema" in workload else ""
    place = f", in the run's own schema (dropped afterwards): {where}" if where else ""
    return f"- **Workload** (closed loop): the scripts {scripts} by weight{place}."


def conclusions(
    findings: Mapping[str, Any], frames: Mapping[str, pd.DataFrame] | None = None
) -> str:
    """The closing text (Markdown), worded from the run's findings (and the frames:
    pgbench comparison, processes sweep and long outages, when given)."""
    c, frames = findings, frames or {}
    lines = [CLOSED_HEADING, *_size_lines(c)]
    if "review_throughput_rps" in c:
        lines.append(_presets_text(c))
    spike = _spike_text(c)
    if spike:
        lines.append(spike)
    if "checkout_check_p50_ms" in c:
        lines.append(_checkout_text(c))
    lines += _recovery_lines(c)
    knee = _knee_text(c)
    if knee:
        lines.insert(2, knee)
    lines += _reference_lines(frames)
    if (workload := frames.get("workload")) is not None and not workload.empty:
        lines.insert(0, _workload_text(workload))
    lines.append(
        f"Bookkeeping: {c['requests_total']:,} requests, each a success or an error: "
        f"{c['requests_add_up']}; connections left on the server after the runs: "
        f"{c['leaked_total']}."
    )
    lines += open_loop_lines(frames)
    return "\n".join(lines)
