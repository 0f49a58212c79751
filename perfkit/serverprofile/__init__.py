"""Where a lab's server time goes: wait events sampled from ``pg_stat_activity``,
``pg_stat_statements`` and cumulative counter deltas per variant (``profiler``),
the sampler itself (``sampler``), snapshot readers (``statements``, ``counters``),
pure analysis (``analysis``), the sampler's measured overhead (``overhead``) and
the "where the time went" figure (``plots``)."""

from perfkit._exports import lazy

__all__ = ["Profiler", "WaitSampler"]

__getattr__, __dir__ = lazy(
    __name__,
    {"Profiler": "perfkit.serverprofile.profiler", "WaitSampler": "perfkit.serverprofile.sampler"},
    globals(),
)
