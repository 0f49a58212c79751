"""How busy the machine was while a run measured: recorded with every lab run.

A shared machine's other work slows a whole run at once, so a run made under
load is a different replicate from one made on a quiet machine. Around each
lab run perfkit records the load average before it started (nothing of the
run is running yet), the CPU time the whole machine spent busy during it, the
part spent by this process and its children (the notebook kernel, local
servers; a container's server runs under the Docker daemon and counts as
other work), steal time, the CPU frequency where readable and the core count.

A run is *loaded* when other processes took at least :data:`LOADED_SHARE` of
the machine's CPU during it (half a core on 2 cores). The load average before
it is recorded but decides only for records without that share: it counts the
work that just ended, which in ``report --runs`` is perfkit's own previous lab
(measured: four back-to-back quick reports on an otherwise quiet machine had
1-minute loads of 1.5-2.0 before each, while other processes took 0.7-9 % of
the CPU during them; beside a one-core busy loop they took 50 %).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = [
    "LOADED_PER_CORE",
    "LOADED_SHARE",
    "Snapshot",
    "combine",
    "differences",
    "is_loaded",
    "of_run",
    "record",
    "snapshot",
]

#: Load per core before a run that marks it loaded, for records without ``other_cpu_share``.
LOADED_PER_CORE = 0.5
#: Share of the machine's CPU taken by other processes during a run that marks it loaded.
LOADED_SHARE = 0.25


@dataclass(frozen=True)
class Snapshot:
    """Machine and process-tree CPU counters at one moment."""

    monotonic: float
    busy_s: float
    steal_s: float
    own_s: float
    load_1m: float


def _own_cpu_s() -> float:
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += t.user + t.system
        if proc is me:
            total += t.children_user + t.children_system  # children already waited for
    return total


def snapshot() -> Snapshot:
    """The counters now."""
    cpu = psutil.cpu_times()
    idle = cpu.idle + getattr(cpu, "iowait", 0.0)
    total = sum(cpu._asdict().values())
    return Snapshot(
        monotonic=time.monotonic(),
        busy_s=total - idle,
        steal_s=float(getattr(cpu, "steal", 0.0)),
        own_s=_own_cpu_s(),
        load_1m=float(os.getloadavg()[0]),
    )


def record(start: Snapshot, end: Snapshot | None = None) -> dict[str, Any]:
    """What happened on the machine between ``start`` and ``end`` (default: now)."""
    end = end or snapshot()
    cores = psutil.cpu_count() or 1
    wall = max(end.monotonic - start.monotonic, 1e-9)
    busy = max(end.busy_s - start.busy_s, 0.0)
    own = max(end.own_s - start.own_s, 0.0)
    other = max(busy - own, 0.0)
    freq = None
    try:
        current = psutil.cpu_freq()
        freq = round(float(current.current), 1) if current else None
    except (NotImplementedError, FileNotFoundError, OSError):
        pass
    out: dict[str, Any] = {
        "cores": cores,
        "wall_s": round(wall, 3),
        "load_1m_before": round(start.load_1m, 2),
        "load_1m_after": round(end.load_1m, 2),
        "busy_cpu_s": round(busy, 3),
        "own_cpu_s": round(own, 3),
        "other_cpu_s": round(other, 3),
        "other_cpu_share": round(other / (wall * cores), 4),
        "steal_s": round(max(end.steal_s - start.steal_s, 0.0), 3),
        "cpu_freq_mhz": freq,
    }
    out["loaded"] = is_loaded(out)
    return out


def is_loaded(noise: Mapping[str, Any]) -> bool:
    """Whether a recorded run was made under load (see the module docstring)."""
    share = noise.get("other_cpu_share")
    if share is not None:
        return float(share) >= LOADED_SHARE
    cores = float(noise.get("cores") or 1)
    return float(noise.get("load_1m_before") or 0.0) / cores >= LOADED_PER_CORE


def combine(records: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One record for a run made of several (a report of its labs' runs): the worst of each."""
    known = [r for r in records if r]
    if not known:
        return None
    return {
        "cores": max(int(r.get("cores") or 1) for r in known),
        "wall_s": round(sum(float(r.get("wall_s") or 0.0) for r in known), 3),
        "load_1m_before": max(float(r.get("load_1m_before") or 0.0) for r in known),
        "other_cpu_share": max(float(r.get("other_cpu_share") or 0.0) for r in known),
        "steal_s": round(sum(float(r.get("steal_s") or 0.0) for r in known), 3),
        "loaded": any(is_loaded(r) for r in known),
        "runs": len(known),
    }


def of_run(metadata: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The noise record a saved run's metadata holds (None for runs from before it existed)."""
    extra = metadata.get("extra")
    found = extra.get("noise") if isinstance(extra, Mapping) else None
    return found if isinstance(found, Mapping) else None


def differences(
    side_a: Sequence[Mapping[str, Any] | None], side_b: Sequence[Mapping[str, Any] | None]
) -> list[str]:
    """Warnings when the two sides' runs were made under different machine conditions."""
    out = []

    def loaded(side: Sequence[Mapping[str, Any] | None]) -> tuple[int, int]:
        known = [n for n in side if n]
        return sum(is_loaded(n) for n in known), len(known)

    (la, na), (lb, nb) = loaded(side_a), loaded(side_b)
    if na < len(side_a) or nb < len(side_b):
        out.append(
            f"machine load was not recorded for {len(side_a) - na} run(s) of A and "
            f"{len(side_b) - nb} of B (made by an older perfkit)"
        )
    if na and nb and (la / na > 0) != (lb / nb > 0):
        out.append(
            f"runs made under load: {la} of {na} on side A, {lb} of {nb} on side B; "
            "interleave A and B so that load falls on both"
        )
    cores = {n.get("cores") for n in [*side_a, *side_b] if n}
    if len(cores) > 1:
        out.append(f"the runs saw different core counts: {sorted(cores)}")
    return out
