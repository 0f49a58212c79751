"""Cheap measurements of when a booting server becomes ready, without retrying clients.

:func:`ready_time_samples` boots one server ``k`` times and returns each boot's
ready time in seconds, for :func:`perfkit.retry.model.predict` and
:func:`perfkit.retry.model.fit_schedule`. Readiness is seen by the same
:class:`~perfkit.retry.probe.ReadinessProbe` (connect + ``SELECT 1`` every
10 ms) the cold-start experiment uses, so the numbers are comparable with
its ``ready_after_event_s`` column.
"""

from __future__ import annotations

import time

import numpy as np

from perfkit import validate
from perfkit.errors import ServerStartError
from perfkit.postgres import PostgresServer, ServerSettings, create_server
from perfkit.retry.probe import ReadinessProbe


def _probe_ready(server: PostgresServer, event_at: float) -> float:
    probe = ReadinessProbe(server.dsn).start()
    try:
        ready_at = probe.wait()
    finally:
        probe.stop()
    if ready_at is None:
        raise ServerStartError(f"{server!r} was not ready after {probe.timeout:g} s")
    return ready_at - event_at


def restart_ready_times(server: PostgresServer, k: int) -> np.ndarray:
    """Ready times (s) of ``k`` restarts of a running ``server`` (left running afterwards).

    Time 0 is just before the server is brought up again (``take_down`` /
    ``bring_up``): on Docker a restart of the same container, no new one.
    """
    validate.integer("restart_ready_times k", k, minimum=1)
    out: list[float] = []
    try:
        for _ in range(k):
            server.take_down()
            event_at = time.monotonic()
            server.bring_up(wait=False)
            out.append(_probe_ready(server, event_at))
    finally:
        if not server.is_ready():
            server.bring_up(wait=True)
    return np.asarray(out)


def ready_time_samples(
    k: int = 20, *, settings: ServerSettings | None = None, fresh: bool = False
) -> np.ndarray:
    """Ready times (s) of ``k`` boots of a server; a local one unless ``settings`` say otherwise.

    ``fresh=False`` (cheap): one server, stopped and started again ``k`` times
    (``take_down`` / ``bring_up``); time 0 is just before the server process is
    launched again. ``fresh=True``: a new server per boot (initdb, or a new
    container), time 0 when ``start(wait=False)`` returned, exactly as
    :func:`perfkit.retry.experiments.cold_start` measures it.
    """
    validate.integer("ready_time_samples k", k, minimum=1)
    settings = settings if settings is not None else ServerSettings(backend="local")
    out: list[float] = []
    if fresh:
        for _ in range(k):
            server = create_server(settings)
            try:
                server.start(wait=False)
                out.append(_probe_ready(server, time.monotonic()))
            finally:
                server.stop()
        return np.asarray(out)
    server = create_server(settings).start(wait=True)
    try:
        return restart_ready_times(server, k)
    finally:
        server.stop()
