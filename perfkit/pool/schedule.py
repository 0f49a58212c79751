"""What each worker does next: a seeded, pure choice of query and think time.

Kept apart from the runners so it can be tested without a server or sleeping:
one :class:`WorkerPlan` per worker, seeded from the workload seed and the
worker index, yields ``(query, think_seconds)`` pairs. Its ``client`` is the
worker's script state (:class:`perfkit.workload.ClientState`: the variables'
own generator, so script draws do not change which queries are picked).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from perfkit.pool.settings import Query, Workload
from perfkit.workload import ClientState


@dataclass
class WorkerPlan:
    """Deterministic stream of (query, think time) for one worker."""

    workload: Workload
    worker: int
    rng: random.Random = field(init=False)
    client: ClientState = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"perfkit-pool:{self.workload.seed}:{self.worker}")
        self.client = ClientState(
            seed=self.workload.seed, client_id=self.worker, defined=dict(self.workload.variables)
        )

    def next(self) -> tuple[Query, float]:
        """The next query to run and how long to think after it (seconds)."""
        mix = self.workload.mix
        query = self.rng.choices(mix, weights=[q.weight for q in mix])[0]
        mean = self.workload.think_time
        think = self.rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        return query, think
