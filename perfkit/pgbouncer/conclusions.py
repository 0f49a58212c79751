"""The PgBouncer lab's closing Markdown: verdicts with n and intervals, and the published
numbers they compare with (one part per section of the notebook)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from perfkit.pgbouncer import timeprofile
from perfkit.pgbouncer.analysis import values_of
from perfkit.pgbouncer.measure import DIRECT, TRANSACTION, VARIANTS

#: Published references the conclusions compare with.
PGCAT_459 = {"direct_ms": 27.9, "pgbouncer_ms": 9.95}
CYBERTEC_TPS = {"connect_per_transaction": 67.5, "pooled": 15_423.0}
PAIR = (DIRECT, TRANSACTION)


def verdict_line(
    samples: Mapping[str, np.ndarray], what: str, unit: str, *, lower_is_better: bool = True
) -> str:
    """One bullet: which variant wins ``what`` (median if lower is better, else mean)."""
    from perfkit.verdicts import decide

    present = {k: v for k, v in samples.items() if len(v)}
    if len(present) < 2:
        return f"- **{what}**: not enough variants measured to compare ({', '.join(present)})."
    verdict = decide(
        present,
        lower_is_better=lower_is_better,
        statistic="median" if lower_is_better else "mean",
    )
    return f"- **{what}**: {verdict.text(unit=unit)}."


def latency_part(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """Connect + SELECT 1 + close: direct vs PgBouncer, all three, and pgcat #459's numbers."""
    from perfkit.stats import quantile_interval

    if "connect" not in frames:
        return []
    latency = {v: values_of(frames["connect"], "ms", v) for v in VARIANTS}
    what = "Connect + SELECT 1 + close, direct vs PgBouncer"
    lines = [
        verdict_line({v: latency[v] for v in PAIR}, what, "ms"),
        verdict_line(latency, "The same, all three variants", "ms"),
    ]
    med = {v: quantile_interval(latency[v]).value for v in VARIANTS if len(latency[v])}
    if DIRECT in med and TRANSACTION in med:
        lines.append(
            f"  Direct / PgBouncer (transaction) = {med[DIRECT] / med[TRANSACTION]:.2f}x; "
            f"pgcat issue #459 reported {PGCAT_459['direct_ms']} ms direct vs "
            f"{PGCAT_459['pgbouncer_ms']} ms through PgBouncer "
            f"({PGCAT_459['direct_ms'] / PGCAT_459['pgbouncer_ms']:.1f}x). A direct connect "
            "forks a backend and runs its authentication; through PgBouncer the client "
            "authenticates at PgBouncer and reuses an open server connection."
        )
    return lines


def throughput_part(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """Connecting per request: the verdicts, Cybertec's numbers and the best direct pool."""
    if "throughput" not in frames:
        return []
    rates = {v: values_of(frames["throughput_bins"], "rps", v) for v in VARIANTS}
    threads = int(frames["throughput"]["threads"].iloc[0])
    what = f"Connecting per request ({threads} threads, requests/s per 0.1 s bin)"
    lines = [
        verdict_line({v: rates[v] for v in PAIR}, what, "rps", lower_is_better=False),
        verdict_line(rates, "The same, all three variants", "rps", lower_is_better=False),
    ]
    tput = frames["throughput"].set_index("variant")
    if DIRECT not in tput.index or TRANSACTION not in tput.index:
        return lines
    direct_rps = tput.loc[DIRECT, "rps"]
    ratio = tput.loc[TRANSACTION, "rps"] / max(direct_rps, 1e-9)
    lines.append(
        f"  {direct_rps:,.0f} rps direct vs {tput.loc[TRANSACTION, 'rps']:,.0f} "
        f"through PgBouncer ({ratio:.1f}x). Cybertec measured "
        f"{CYBERTEC_TPS['connect_per_transaction']} "
        f"tps connecting per transaction vs {CYBERTEC_TPS['pooled']:,.0f} pooled "
        f"({CYBERTEC_TPS['pooled'] / CYBERTEC_TPS['connect_per_transaction']:.0f}x). "
        "That compares with a pool that never reconnects; here every request still opens "
        "a client connection (to PgBouncer), so the gain is what PgBouncer saves on the "
        "server side only."
    )
    pool = frames.get("pool", pd.DataFrame())
    pooled = pool[pool["variant"] == DIRECT] if not pool.empty else pool
    if not pooled.empty:
        best = pooled.loc[pooled["rps"].idxmax()]
        lines.append(
            f"  An application pool without reconnects (psycopg_pool direct, "
            f"{int(best['workers'])} workers): {best['rps']:,.0f} rps, "
            f"{best['rps'] / max(direct_rps, 1e-9):,.0f}x connecting per "
            "request directly (Cybertec's ratio above is for pgbench on its hardware)."
        )
    return lines


def storm_part(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The reconnect storm: peaks per variant, whether PgBouncer absorbs it, recovery, errors."""
    storm = frames.get("storm", pd.DataFrame())
    if storm.empty:
        return []
    by = storm.groupby("variant")
    peak = by["peak_backends_after_restart"].median()
    rate = by["server_peak_attempts_per_s"].median()
    client_rate = by["client_peak_attempts_per_s"].median()
    n_clients = int(storm["n_clients"].iloc[0])
    reps = int(by.size().min())
    lines = [
        f"- **Reconnect storm** ({n_clients} clients, {storm['outage_s'].iloc[0]:g} s outage, "
        f"{storm['retry_delay_ms'].iloc[0]:g} ms fixed retry delay, {reps} storm(s) each): "
        + "; ".join(
            f"{v}: peak {peak[v]:.0f} server backends after the restart, "
            f"peak {rate[v]:,.0f} connections/s received by the server, "
            f"{client_rate[v]:,.0f} client attempts/s"
            for v in peak.index
        )
        + "."
    ]
    if DIRECT in peak.index and TRANSACTION in peak.index:
        absorbs = peak[TRANSACTION] < peak[DIRECT] and (
            math.isnan(rate[TRANSACTION]) or rate[TRANSACTION] <= rate[DIRECT]
        )
        word = "absorbs" if absorbs else "does not absorb"
        lines.append(
            f"  PgBouncer {word} the storm: {peak[TRANSACTION]:.0f} vs {peak[DIRECT]:.0f} "
            "peak backends at the server after the restart (through PgBouncer its pool, "
            "not the number of clients, bounds how many server connections reopen)."
        )
    clients = frames["storm_clients"]
    recovered = {v: values_of(clients, "recovered_after_ready_ms", v) for v in peak.index}
    lines.append(verdict_line(recovered, "Client back after the server was ready", "ms"))
    lost = by["lost"].sum()
    retry = storm.get("server_login_retry_s", pd.Series([math.nan])).iloc[0]
    lines.append(
        "  Clients that saw an error: "
        + ", ".join(f"{v} {int(lost[v])} of {n_clients * reps}" for v in lost.index)
        + ". While its server logins fail, PgBouncer answers queries with an error "
        "(an idle client's query waits instead only until the next login attempt), so "
        "the clients behind it retry too, but against PgBouncer, not the server; and it "
        f"tries the server again only every server_login_retry (here {retry:g} s; "
        "PgBouncer's default is 15 s), which is what its clients' recovery time shows."
    )
    return lines


def pool_part(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """The application pool, direct vs in front of PgBouncer, per worker count."""
    pool = frames.get("pool", pd.DataFrame())
    if pool.empty:
        return []
    pool_bins = frames["pool_bins"]
    lines = [
        f"- **Application pool** (psycopg_pool, {int(pool['pool_size'].iloc[0])} "
        "connections), direct vs in front of PgBouncer:"
    ]
    for workers, group in pool.groupby("workers"):
        g = group.set_index("variant")
        parts = [
            f"{v} {g.loc[v, 'rps']:,.0f} rps, p99 request "
            f"{g.loc[v, 'request_p99_ms']:.2f} ms [{g.loc[v, 'request_p99_ms_low']:.2f}, "
            f"{g.loc[v, 'request_p99_ms_high']:.2f}]"
            for v in g.index
            if "request_p99_ms" in g.columns
        ]
        wb = pool_bins[pool_bins["workers"] == workers]
        verdict = verdict_line(
            {v: values_of(wb, "rps", v) for v in g.index},
            f"{workers} workers, throughput",
            "rps",
            lower_is_better=False,
        )
        lines.append(f"  - {workers} workers: " + "; ".join(parts) + ".")
        lines.append("  " + verdict)
    return lines


def modes_part(frames: Mapping[str, pd.DataFrame]) -> list[str]:
    """Session vs transaction mode: server connections busy and open for the same clients."""
    modes = frames.get("modes", pd.DataFrame())
    if modes.empty:
        return []
    m = modes.set_index("variant")
    return [
        f"- **Session vs transaction mode** ({int(modes['clients'].iloc[0])} clients, "
        f"{modes['think_ms'].iloc[0]:g} ms between queries): "
        + "; ".join(
            f"{v}: {m.loc[v, 'sv_active_mean']:.1f} server connections busy on average, "
            f"{m.loc[v, 'server_connections_peak']:.0f} open at the peak, "
            f"{m.loc[v, 'rps']:,.0f} rps"
            for v in m.index
        )
        + ". Session mode ties a server connection to each client for its whole session; "
        "transaction mode only for the length of a transaction (the connections it opened "
        "for a burst stay open, idle, until server_idle_timeout)."
    ]


def conclusions(frames: Mapping[str, pd.DataFrame], not_measured: Sequence[str] = ()) -> str:
    """The closing Markdown: verdicts with n and intervals, and the published numbers.

    ``not_measured``: the stages the run skipped, listed as not measured in this run.
    """
    lines = ["### PgBouncer in front of one server", ""]
    for part in (latency_part, throughput_part, storm_part, pool_part, modes_part):
        lines += part(frames)
    if not_measured:
        lines.append(f"- Not measured in this run: {', '.join(not_measured)}.")
    where = timeprofile.sentence(frames)
    if where:
        lines += ["", where]
    return "\n".join(lines)
