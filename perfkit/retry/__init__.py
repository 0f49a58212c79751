"""Connection retry: strategies, the retrying connect, worst-case analysis and experiments.

- :mod:`perfkit.retry.strategies`: pure, seedable delay schedules and the
  ``STRATEGIES`` registry (``get_strategy(name)``);
- :mod:`perfkit.retry.token_bucket`: a thread-safe retry token bucket shared by many clients;
- :mod:`perfkit.retry.planner`: stop conditions and the deadline, as a pure state machine;
- :mod:`perfkit.retry.connect`: ``connect_with_retry`` / ``async_connect_with_retry``
  returning the connection and a trace of every attempt;
- :mod:`perfkit.retry.analysis`: worst-case totals, exact bounds and sampled spread, and
  the lab's frames computed from its runs (headlines, model vs real, herd vs simulation);
- :mod:`perfkit.retry.tenacity_adapter`: ``as_tenacity_wait`` / ``as_tenacity_stop``;
- :mod:`perfkit.retry.probe`: readiness probe, backend sampler, server-log attempt counts;
- :mod:`perfkit.retry.experiments`: cold start, outage and hang on a real server;
- :mod:`perfkit.retry.model`: cold-start overshoot predicted from measured ready times
  (``predict``) and a schedule fitted to them (``fit_schedule``);
- :mod:`perfkit.retry.whatif`: any schedule predicted from a saved run's ready times (the
  notebook's what-if section: sliders, or a static table and figure);
- :mod:`perfkit.retry.readiness`: ``ready_time_samples``, boots without retrying clients;
- :mod:`perfkit.retry.herd`: N clients reconnecting at once, and the simulation's calibration;
- :mod:`perfkit.retry.bigherd`: 1,000 connected clients losing the server, vs the simulation;
- :mod:`perfkit.retry.lab` (Params, ``LAB``), :mod:`perfkit.retry.measure` (the runs against
  servers), :mod:`perfkit.retry.conclusions` and :mod:`perfkit.retry.plots`: the notebook's lab.
"""

from perfkit.errors import RetryError
from perfkit.retry.connect import async_connect_with_retry, connect_with_retry
from perfkit.retry.model import AttemptCosts, Fit, Prediction, fit, fit_schedule, predict
from perfkit.retry.planner import GiveUp, RetryPlanner
from perfkit.retry.readiness import ready_time_samples
from perfkit.retry.strategies import (
    STRATEGIES,
    AdditiveJitter,
    CappedExponential,
    DecorrelatedJitter,
    DelayedExponential,
    EqualJitter,
    FixedDelay,
    FullJitter,
    GrpcBackoff,
    PollyDecorrelatedJitterV2,
    Strategy,
    get_strategy,
    strategy_name,
)
from perfkit.retry.token_bucket import RetryTokenBucket
from perfkit.retry.trace import Attempt, Trace

__all__ = [
    "STRATEGIES",
    "AdditiveJitter",
    "Attempt",
    "AttemptCosts",
    "CappedExponential",
    "DecorrelatedJitter",
    "DelayedExponential",
    "EqualJitter",
    "Fit",
    "FixedDelay",
    "FullJitter",
    "GiveUp",
    "GrpcBackoff",
    "PollyDecorrelatedJitterV2",
    "Prediction",
    "RetryError",
    "RetryPlanner",
    "RetryTokenBucket",
    "Strategy",
    "Trace",
    "async_connect_with_retry",
    "connect_with_retry",
    "fit",
    "fit_schedule",
    "get_strategy",
    "predict",
    "ready_time_samples",
    "strategy_name",
]
