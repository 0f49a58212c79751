"""Pure functions from the profile frames to shares, sentences and the sampler's overhead.

The share of "sampled time" of an event is the fraction of the active client
backends seen in the samples that were waiting on it (``CPU``: active with no
wait event), the way active-session-history profiles count. Its interval is
a Wilson interval with n = the number of samples (ticks), not the number of
backends seen: backends in one sample are not independent, so the narrower
interval over backend observations would overstate what a run shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from perfkit.stats import Estimate, paired_shift_interval, wilson_interval

CPU = "CPU"
CLIENT_BACKEND = "client backend"
ACTIVE = ("active",)
SHARE_COLUMNS = ["variant", "event", "count", "samples", "share", "share_low", "share_high"]


def event_label(wait_event_type: str, wait_event: str, state: str = "active") -> str:
    """``Type:Event``, or :data:`CPU` for an active backend with no wait event; a backend
    in another state is labelled by it (``idle``, ``idle in transaction``, ``starting``:
    no state yet, e.g. authenticating), with its wait event when it is not the client's."""
    if state == "active":
        return CPU if not wait_event_type else f"{wait_event_type}:{wait_event}"
    label = state or "starting"
    if wait_event_type and wait_event_type != "Client":
        label += f" ({wait_event_type}:{wait_event})"
    return label


def time_shares(wait_profile: pd.DataFrame, states: Sequence[str] | None = ACTIVE) -> pd.DataFrame:
    """Per variant and event: client backend samples, their share and its interval.

    Only backends in ``states`` count (default: active ones; None: every state,
    each non-active state an event of its own: :func:`event_label`).
    ``samples`` is the number of sampling ticks of the variant (summed over its
    runs), ``count`` the backends seen on the event over them.
    """
    if wait_profile is None or wait_profile.empty:
        return pd.DataFrame(columns=SHARE_COLUMNS)
    df = wait_profile[wait_profile["backend_type"] == CLIENT_BACKEND]
    if states is not None:
        df = df[df["state"].isin(list(states))]
    ticks = _ticks(wait_profile)
    rows = []
    for variant, group in df.groupby("variant", sort=False):
        labels = [
            event_label(t, e, st)
            for t, e, st in zip(
                group["wait_event_type"], group["wait_event"], group["state"], strict=True
            )
        ]
        counts = group.assign(event=labels).groupby("event")["count"].sum()
        total = float(counts.sum())
        n = int(ticks.get(variant, 0))
        for event, count in counts.sort_values(ascending=False).items():
            share = count / total if total else math.nan
            est = _share_interval(share, n)
            rows.append(
                {
                    "variant": variant,
                    "event": event,
                    "count": int(count),
                    "samples": n,
                    "share": share,
                    "share_low": est.low,
                    "share_high": est.high,
                }
            )
    return pd.DataFrame(rows, columns=SHARE_COLUMNS)


def _ticks(wait_profile: pd.DataFrame) -> pd.Series:
    """Sampling ticks per variant: each run's ``samples`` once, summed over the runs."""
    run_cols = [c for c in wait_profile.columns if c not in _ROW_COLUMNS]
    runs = wait_profile.drop_duplicates(subset=run_cols)
    return runs.groupby("variant", sort=False)["samples"].sum()


_ROW_COLUMNS = {"wait_event_type", "wait_event", "state", "backend_type", "count"}


def _share_interval(share: float, n: int) -> Estimate:
    if n <= 0 or math.isnan(share):
        return Estimate(share, math.nan, math.nan, n)
    return wilson_interval(round(share * n), n)


def active_sessions(wait_profile: pd.DataFrame) -> pd.Series:
    """Mean active client backends per variant (average active sessions)."""
    shares = time_shares(wait_profile)
    if shares.empty:
        return pd.Series(dtype=float)
    per = shares.groupby("variant", sort=False)[["count", "samples"]].agg(
        {"count": "sum", "samples": "first"}
    )
    return per["count"] / per["samples"].replace(0, np.nan)


def dominant(shares: pd.DataFrame, variant: Any) -> pd.Series | None:
    """The variant's largest non-CPU event (its row of :func:`time_shares`), or None."""
    rows = shares[(shares["variant"] == variant) & (shares["event"] != CPU)]
    if rows.empty:
        return None
    return rows.sort_values("share", ascending=False).iloc[0]


def cpu_share(shares: pd.DataFrame, variant: Any) -> float:
    rows = shares[(shares["variant"] == variant) & (shares["event"] == CPU)]
    return float(rows["share"].sum()) if not rows.empty else 0.0


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def profile_sentence(
    wait_profile: pd.DataFrame,
    *,
    what: str = "variant",
    order: Sequence[Any] | None = None,
    throughput: Mapping[Any, float] | None = None,
    states: Sequence[str] | None = ACTIVE,
) -> str:
    """One Markdown paragraph: where the server's active time went, smallest to largest variant.

    ``throughput`` (per variant) lets it say whether the variants that wait
    more also do more; without it, only the shares are stated.
    """
    shares = time_shares(wait_profile, states)
    variants = [v for v in (order or shares["variant"].unique()) if v in set(shares["variant"])]
    if not variants:
        return "The server's sessions were never seen busy in the samples."
    first, last = variants[0], variants[-1]
    who = "active sessions" if states == ACTIVE else "client backends"
    parts = [_variant_phrase(shares, first, what, who)]
    if last != first:
        parts.append(_variant_phrase(shares, last, what, who))
    text = "; ".join(parts) + "."
    if throughput and last != first and first in throughput and last in throughput:
        wait0, wait1 = 1 - cpu_share(shares, first), 1 - cpu_share(shares, last)
        t0, t1 = throughput[first], throughput[last]
        gain = t1 / t0 - 1 if t0 else math.nan
        if wait1 > wait0 + 0.1 and not gain > 0.1:
            text += (
                f" From {what} {first} to {last} the waiting share rose from {_pct(wait0)} to "
                f"{_pct(wait1)} while throughput changed by {100 * gain:+.0f} %: the extra "
                "connections added waiting, not throughput."
            )
        else:
            text += (
                f" From {what} {first} to {last} the waiting share went from {_pct(wait0)} to "
                f"{_pct(wait1)}, throughput by {100 * gain:+.0f} %."
            )
    return text


def _variant_phrase(shares: pd.DataFrame, variant: Any, what: str, who: str) -> str:
    top = dominant(shares, variant)
    cpu = cpu_share(shares, variant)
    n = int(shares.loc[shares["variant"] == variant, "samples"].iloc[0])
    seen = int(shares.loc[shares["variant"] == variant, "count"].sum())
    head = f"at {what} {variant} the server's {who} spent {_pct(cpu)} of sampled time on CPU"
    if top is not None:
        head += (
            f" and {_pct(top['share'])} [{_pct(top['share_low'])}, {_pct(top['share_high'])}] "
            f"in `{top['event']}`"
        )
    return f"{head} (n = {n} samples, {seen} {who} seen)"


def overhead(pairs: pd.DataFrame) -> Estimate | None:
    """The sampler's cost: 1 - throughput(with) / throughput(without), with a 95 % interval.

    ``pairs`` has ``pair``, ``sampler`` (bool) and ``throughput_rps``. The ratio
    is exp of the paired Hodges–Lehmann shift of log throughput (exact
    signed-rank interval): needs 6 pairs or more. n = pairs.
    """
    if pairs is None or pairs.empty:
        return None
    wide = pairs.pivot_table(index="pair", columns="sampler", values="throughput_rps")
    if True not in wide or False not in wide:
        return None
    wide = wide.dropna()
    shift = paired_shift_interval(np.log(wide[False]), np.log(wide[True]))
    if shift is None:
        return None
    # overhead = 1 - ratio: the interval's ends swap.
    return Estimate(
        1 - math.exp(shift.value), 1 - math.exp(shift.high), 1 - math.exp(shift.low), len(wide)
    )


def overhead_sentence(pairs: pd.DataFrame, *, goal: float = 0.03) -> str:
    """The sampler's overhead in words, against ``goal``."""
    est = overhead(pairs)
    if est is None:
        return "The sampler's overhead was not measured (fewer than 6 interleaved pairs)."
    text = (
        f"Sampling `pg_stat_activity` cost {est.format(100, ' %')} of throughput "
        "(interleaved pairs with and without the sampler; paired Hodges–Lehmann, exact 95 % "
        "interval)"
    )
    if est.high <= goal:
        return text + f": within the {100 * goal:.0f} % goal."
    if est.low > goal:
        return text + f": above the {100 * goal:.0f} % goal."
    return text + f": the interval straddles the {100 * goal:.0f} % goal at this n."
