"""The streaming lab behind notebooks/04_streaming.ipynb: its parameters, run and results.

Frames of a run: ``runs`` and ``memory`` (:func:`perfkit.streaming.measure.run_streaming`),
``summary`` (:func:`~perfkit.streaming.analysis.compare`), ``samples``
(:func:`~perfkit.streaming.analysis.samples_frame`) and ``conclusions`` (one row: the
:func:`~perfkit.streaming.analysis.findings` and ``batch_size``; the name is kept so that
runs saved before still read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from perfkit.errors import ConfigError
from perfkit.headlines import HeadlineSpec, from_samples
from perfkit.lab import LabParams, Results, param
from perfkit.streaming.analysis import SPEC, compare, findings, headline_labels, samples_frame
from perfkit.streaming.conclusions import conclusions
from perfkit.streaming.measure import run_streaming
from perfkit.streaming.settings import (
    FULL_ROWS,
    METHODS,
    QUICK_ROWS,
    StreamSettings,
    check_methods,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perfkit.lab import Progress
    from perfkit.postgres import PostgresServer, ServerSettings

#: The frame holding the findings (one row), under its historical name.
FINDINGS_FRAME = "conclusions"


@dataclass(frozen=True, kw_only=True)
class Params(LabParams):
    """The streaming notebook's parameters: the only place their defaults and help live."""

    quick: bool = param(False, "CI: 50k rows instead of 1M")
    seed: int = param(1, "recorded only: the data is deterministic")
    rows: int | None = param(None, "rows in the result", full=FULL_ROWS, quick=QUICK_ROWS)
    batch_size: int = param(5_000, "rows per fetchmany / FETCH / chunk")
    methods: tuple[str, ...] | None = param(None, "ways to read the result", full=METHODS)
    repeats: int = param(1, "measurements per method")

    def check(self) -> None:
        self.settings()
        check_methods(self.methods)
        if self.repeats < 1:
            raise ConfigError(f"parameter 'repeats' must be an int >= 1, got {self.repeats!r}")

    def settings(self) -> StreamSettings:
        return StreamSettings(rows=self.rows, batch_size=self.batch_size)


class StreamingLab:
    """Streaming rows vs loading them all: peak memory and wall time per method."""

    name = "streaming"
    title = "Streaming large results"
    notebook = "04_streaming.ipynb"
    Params = Params

    def server_settings(self, params: Params) -> ServerSettings:
        from perfkit.postgres import ServerSettings

        return ServerSettings(backend=params.backend)

    def run(self, params: Params, server: PostgresServer | None, progress: Progress) -> Results:
        assert server is not None  # server_settings() asks for one
        settings, methods = params.settings(), tuple(params.methods)
        frames = run_streaming(
            server.dsn,
            settings,
            methods=methods,
            repeats=params.repeats,
            progress=lambda m, traced, r: progress(f"{m} traced={traced} repeat={r}"),
        )
        frames["summary"] = compare(frames["runs"])
        frames["samples"] = samples_frame(frames["runs"], frames["summary"])
        found = findings(frames["summary"], settings.rows)
        found["batch_size"] = settings.batch_size
        frames[FINDINGS_FRAME] = pd.DataFrame([found])
        return Results(frames=frames, server=server.describe())

    def headlines(self, results: Results) -> pd.DataFrame:
        samples, rows = results.samples, int(results[FINDINGS_FRAME]["rows"].iloc[0])
        return from_samples(samples, SPEC, labels=headline_labels(samples, rows))

    def headline_specs(self) -> Mapping[str, HeadlineSpec]:
        return SPEC

    def figures(self, results: Results) -> Iterator[tuple[str, Figure]]:
        from perfkit.streaming import plots

        yield "Memory over time", plots.plot_memory(results["memory"])
        yield "Peak memory by method", plots.plot_peaks(results["summary"])

    def conclusions(self, results: Results) -> str:
        found = results[FINDINGS_FRAME].iloc[0].to_dict()
        methods = list(results["summary"]["method"])
        return conclusions(found, methods, int(found.get("batch_size", 0)))


LAB = StreamingLab()
