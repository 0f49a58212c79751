"""The PgBouncer lab's frames -> numbers (pure): the ``samples`` frame and the headlines.

Headlines compare naive = ``direct`` with improved = through the transaction-mode
PgBouncer: the median connect latency, the mean connect-per-request rate over 0.1 s
bins, the median peak of server backends after a restart (over storms) and the median
time a client was back after the server was ready.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from perfkit.headlines import RUN_COLUMN, HeadlineSpec, from_samples
from perfkit.lab import SAMPLE_COLUMNS, SAMPLES_FRAME
from perfkit.pgbouncer.measure import DIRECT, TRANSACTION

METRIC_LATENCY = "pgbouncer_connect_latency"
METRIC_RPS = "pgbouncer_connect_per_request_throughput"
METRIC_PEAK = "pgbouncer_storm_peak_backends"
METRIC_RECONNECT = "pgbouncer_storm_reconnect_after_ready"
#: headline variant -> the lab's variant behind it
HEADLINE_VARIANTS = {"naive": DIRECT, "improved": TRANSACTION}

#: metric -> (unit, the frame and its column the samples come from)
SAMPLE_SOURCES = {
    METRIC_LATENCY: ("ms", "connect", "ms"),
    METRIC_RPS: ("rps", "throughput_bins", "rps"),
    METRIC_PEAK: ("count", "storm", "peak_backends_after_restart"),
    METRIC_RECONNECT: ("ms", "storm_clients", "recovered_after_ready_ms"),
}

#: metric -> its statistic, label (prefixed with the lab's variant) and better direction
SPEC = {
    METRIC_LATENCY: HeadlineSpec(
        statistic="median", label="median connect + SELECT 1 + close", better="lower"
    ),
    METRIC_RPS: HeadlineSpec(
        statistic="mean",
        label="requests/s connecting per request (mean over 0.1 s bins)",
        better="higher",
    ),
    METRIC_PEAK: HeadlineSpec(
        statistic="median",
        label="peak server backends after a restart (median over storms)",
        better="lower",
    ),
    METRIC_RECONNECT: HeadlineSpec(
        statistic="median",
        label="client reconnected after the server was ready (median)",
        better="lower",
    ),
}


def values_of(frame: pd.DataFrame, column: str, variant: str) -> np.ndarray:
    """``column`` of the rows of ``variant``, NaNs dropped, as floats."""
    return frame.loc[frame["variant"] == variant, column].dropna().to_numpy(dtype=float)


def samples_frame(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The raw samples behind the headlines (naive = direct, improved = transaction mode),
    each with the repetition (``run``) it came from."""
    parts = []
    for variant, source in HEADLINE_VARIANTS.items():
        for metric, (unit, name, column) in SAMPLE_SOURCES.items():
            if name not in frames:  # its stage did not run
                continue
            frame = frames[name]
            rows = frame[(frame["variant"] == source) & frame[column].notna()]
            parts.append(
                pd.DataFrame(
                    {
                        "metric": metric,
                        "variant": variant,
                        "unit": unit,
                        "value": rows[column].astype(float),
                        # the repetition a sample came from (one connect/throughput run: 0)
                        RUN_COLUMN: rows["rep"] if "rep" in rows.columns else 0,
                    }
                )
            )
    if not parts:  # none of the stages behind the headlines ran
        return pd.DataFrame(columns=[*SAMPLE_COLUMNS, RUN_COLUMN])
    return pd.concat(parts, ignore_index=True)[[*SAMPLE_COLUMNS, RUN_COLUMN]]


def headlines(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The headline frame: per metric (in :data:`SPEC` order) naive then improved, labelled
    ``<direct|transaction>: <what>``."""
    samples = frames[SAMPLES_FRAME]
    ordered = pd.concat([samples[samples["metric"] == metric] for metric in SPEC])
    labels = {
        (metric, variant): f"{source}: {spec.label}"
        for metric, spec in SPEC.items()
        for variant, source in HEADLINE_VARIANTS.items()
    }
    return from_samples(ordered, SPEC, labels=labels)
